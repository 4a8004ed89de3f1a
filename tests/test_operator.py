"""The operator's view: MONITOR, INFO commandstats/errorstats/latencystats, SLOWLOG, LATENCY,
CLIENT LIST flags, CONFIG RESETSTAT; against a real redis-server where the output can be
compared, and through redis-cli (monitor, --stat, --latency)."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from collections.abc import Iterator

import pytest
import redis

from server.commands.operator import Histogram, highest_equivalent
from tests.conftest import DEADLINE, real_redis
from tests.test_cluster import Raw

pytestmark = pytest.mark.timeout(60)

Step = tuple[str | bytes, ...]  # (connection name, command, arguments...)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[int]:
    """A real redis-server of this module's own (its statistics are reset by the tests)."""
    with real_redis() as port:
        yield port


def play(port: int, protocols: dict[str, int], steps: list[Step]) -> list[tuple]:
    """Run the steps; after each, what every connection received, with the parts that
    differ between two servers (times, durations, client addresses) normalised."""
    peers = {name: Raw(port, protocol) for name, protocol in protocols.items()}
    addresses = {b"127.0.0.1:%d" % peer.sock.getsockname()[1]: name.encode()
                 for name, peer in peers.items()}
    record = []
    for name, *args in steps:
        outputs = {name: peers[name].command(*args)}
        if args[0] == "HELLO":  # versions and ids differ; what is compared is the rest
            outputs[name] = b"<hello reply>"
        for other, peer in peers.items():
            if other != name and not peer.queuing:
                outputs[other] = peer.drain()
        record.append(((name, *args), {k: normalise(v, addresses) for k, v in outputs.items()}))
    for peer in peers.values():
        peer.close()
    return record


def normalise(data: bytes, addresses: dict[bytes, bytes]) -> bytes:
    data = re.sub(rb"\+\d{10}\.\d{6} \[", b"+<time> [", data)
    for address, name in addresses.items():
        data = data.replace(b"$%d\r\n%b\r\n" % (len(address), address), b"$<addr:%b>\r\n" % name)
        data = data.replace(address, b"<addr:%b>" % name)
    return data


def check(redis_port: int, respd_port: int, protocols: dict[str, int],
          steps: list[Step]) -> None:
    theirs = play(redis_port, protocols, steps)
    ours = play(respd_port, protocols, steps)
    for expected, got in zip(theirs, ours, strict=True):
        assert got == expected


MONITOR: list[Step] = [
    ("b", "FLUSHALL"), ("m", "MONITOR"),
    ("a", "SET", "k", "v"), ("a", "GET", "k"), ("a", "INCR", "k"), ("a", "GET"),
    ("a", "NOSUCH", "x"), ("a", "SET", b'q\x00"\'\\ \n\r\t\x07\x08\xff\xc3\xa9', "v w"),
    ("a", "ECHO", "é"), ("a", "SELECT", "2"), ("a", "SET", "z", "1"), ("a", "SELECT", "0"),
    ("a", "SELECT", "99"), ("a", "PING"), ("a", "CLIENT", "ID"), ("a", "CLIENT", "SETNAME", "x"),
    ("a", "CONFIG", "GET", "maxclients"), ("a", "DBSIZE"),
    ("a", "AUTH", "secret"), ("a", "AUTH", "user", "secret"),
    ("a", "HELLO", "2", "AUTH", "default", "secret"), ("a", "HELLO", "2", "SETNAME", "y"),
    ("a", "MULTI"), ("a", "SET", "t", "1"), ("a", "GET", "t"), ("a", "EXEC"),
    ("a", "MULTI"), ("a", "GET"), ("a", "EXEC"),
    ("a", "WATCH", "t"), ("a", "MULTI"), ("a", "MONITOR"), ("a", "EXEC"),
    ("a", "SUBSCRIBE", "ch"), ("a", "PING"), ("a", "UNSUBSCRIBE"),
    ("b", "PUBLISH", "ch", "m"), ("b", "FLUSHALL"),
    # what a monitor itself may do
    ("m", "GET", "k"), ("m", "SET", "k", "v"), ("m", "PUBLISH", "ch", "x"), ("m", "PING"),
    ("m", "ECHO", "hi"), ("m", "MONITOR"), ("m", "CLIENT", "ID"), ("m", "HELLO", "3"),
    ("m", "SUBSCRIBE", "ch"), ("m", "GET", "k"), ("m", "UNSUBSCRIBE", "ch"), ("m", "RESET"),
    ("a", "SET", "after", "reset"), ("m", "GET", "k"),
]


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_monitor_shows_what_redis_shows(redis_server: int, respd, protocol: int) -> None:
    ids = {"m": protocol, "a": protocol, "b": 2}
    monitor = [step for step in MONITOR if step[1:] != ("CLIENT", "ID")]
    check(redis_server, respd.port, ids, monitor)


def test_monitor_flag_and_dropping_a_monitor(respd) -> None:
    m = respd.client(protocol=2)
    m_id = m.client_id()
    m.execute_command("MONITOR")
    r = respd.client(protocol=2)
    assert [c["flags"] for c in r.client_list() if c["id"] == str(m_id)] == ["O"]
    assert respd.drop_clients([m_id]) == 1
    r.set("k", "v")  # nobody to feed: the server forgot the monitor


# --- INFO commandstats / errorstats ---------------------------------------------------

STATS_STEPS: list[Step] = [
    ("a", "CONFIG", "RESETSTAT"), ("a", "SET", "s", "x"), ("a", "GET", "s"), ("a", "GET"),
    ("a", "INCR", "s"), ("a", "NOSUCH"), ("a", "HELLO", "4"), ("a", "CLIENT", "NOSUCH"),
    ("a", "MULTI"), ("a", "INCR", "s"), ("a", "GET", "s"), ("a", "EXEC"),
    ("a", "MULTI"), ("a", "GET"), ("a", "EXEC"), ("a", "EXEC"), ("a", "DISCARD"),
    ("a", "SUBSCRIBE", "c"), ("a", "GET", "s"), ("a", "UNSUBSCRIBE", "c"),
    ("a", "CONFIG", "SET", "maxmemory", "1"), ("a", "SET", "big", "x"),
    ("a", "CONFIG", "SET", "maxmemory", "0"),
]


def _stats(port: int, section: str) -> list[str]:
    """INFO section lines with durations hidden, sorted (Redis lists them in hash order)."""
    client = Raw(port, 2)
    text = client.command("INFO", section).decode()
    client.close()
    lines = [re.sub(r"usec=\d+,usec_per_call=[\d.]+", "usec=X", line)
             for line in text.split("\r\n")[2:] if line and "_info:" not in line]
    return sorted(lines)


@pytest.mark.parametrize("section", ["commandstats", "errorstats"])
def test_command_and_error_counts_match_redis(redis_server: int, respd, section: str) -> None:
    for port in (redis_server, respd.port):
        play(port, {"a": 2}, STATS_STEPS)
    assert _stats(respd.port, section) == _stats(redis_server, section)


def test_protocol_errors_are_counted_like_redis(redis_server: int, respd) -> None:
    """A protocol error is an error reply too: errorstat_ERR and total_error_replies."""
    for port in (redis_server, respd.port):
        reset = Raw(port, 2)
        reset.command("CONFIG", "RESETSTAT")
        reset.close()
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
            sock.sendall(b"*abc\r\n")
            assert sock.recv(100) == b"-ERR Protocol error: invalid multibulk length\r\n"
    assert _stats(respd.port, "errorstats") == _stats(redis_server, "errorstats") == [
        "errorstat_ERR:count=1"]


def test_total_error_replies_and_resetstat(respd) -> None:
    r = respd.client(protocol=2)
    for _ in range(2):
        with pytest.raises(redis.ResponseError):
            r.execute_command("NOSUCH")
    assert r.info("stats")["total_error_replies"] == 2
    assert r.info("errorstats") == {"errorstat_ERR": {"count": 2}}
    r.config_resetstat()
    assert r.info("errorstats") == {}
    assert set(r.info("commandstats")) == {"cmdstat_config|resetstat", "cmdstat_info"}


# --- durations: latency-tracking, histograms, SLOWLOG, latency events ------------------

def test_histogram_matches_redis_hdr_buckets() -> None:
    assert highest_equivalent(5000) == 5023  # 5 us reads as 5.023 in Redis
    assert highest_equivalent(10_000) == 10_047
    assert highest_equivalent(200) == 200  # exact below 256 ns
    histogram = Histogram()
    for ns in (5000, 5010, 10_000, 65_000):
        histogram.record(ns)
    assert histogram.percentile(50) == 5023
    assert histogram.percentile(99) == highest_equivalent(65_000)
    assert histogram.cumulative_usec() == [(8, 2), (16, 3), (66, 4)]
    late = Histogram()
    late.record(10**12)  # over a second counts as a second
    assert late.percentile(100) == highest_equivalent(10**9)


def test_durations_are_measured_only_when_asked(respd) -> None:
    r = respd.client(protocol=2)
    assert r.config_get("latency-tracking") == {"latency-tracking": "no"}
    r.set("a", "1")
    assert r.info("commandstats")["cmdstat_set"]["usec"] == 0
    assert r.info("latencystats") == {}
    assert r.execute_command("LATENCY", "HISTOGRAM") == []
    r.config_set("latency-tracking", "yes")
    r.set("a", "2")
    r.get("a")
    stats = r.info("commandstats")["cmdstat_set"]
    assert stats["calls"] == 2
    assert stats["usec"] > 0
    assert re.fullmatch(r"p50=\d+\.\d{3},p99=\d+\.\d{3},p99\.9=\d+\.\d{3}",
                        _latency_line(r, "get"))
    name, histogram = r.execute_command("LATENCY", "HISTOGRAM", "set", "nosuch")
    assert (name, histogram[:2]) == (b"set", [b"calls", 1])
    r.config_set("latency-tracking-info-percentiles", "50 99.9")
    assert _latency_line(r, "get").startswith("p50=")
    assert ",p99.9=" in _latency_line(r, "get")


def _latency_line(r: redis.Redis, name: str) -> str:
    client = Raw(r.connection_pool.connection_kwargs["port"], 2)
    text = client.command("INFO", "latencystats").decode()
    client.close()
    for line in text.split("\r\n"):
        if line.startswith(f"latency_percentiles_usec_{name}:"):
            return line.split(":", 1)[1]
    raise AssertionError(f"no latencystats line for {name}: {text!r}")


def test_slowlog(respd) -> None:
    r = respd.client(protocol=2, client_name="slowpoke")
    r.config_set("latency-tracking", "yes")
    r.config_set("slowlog-log-slower-than", 0)
    r.set("k", "v")
    with pytest.raises(redis.RedisError):
        r.execute_command("AUTH", "secret")
    r.mset({str(i): str(i) for i in range(20)})
    r.set("big", "x" * 200)
    pipe = r.pipeline()
    pipe.get("k")
    pipe.execute()
    entries = r.slowlog_get(-1)
    commands = [e["command"] for e in entries]
    mset = (b"MSET 0 0 1 1 2 2 3 3 4 4 5 5 6 6 7 7 8 8 9 9 10 10 11 11 12 12 13 13 14 14 "
            b"... (10 more arguments)")
    assert commands[:4] == [b"GET k", b"MULTI",  # a redis-py pipeline is a transaction
                            b"SET big " + b"x" * 128 + b"... (72 more bytes)", mset]
    assert b"AUTH (redacted)" in commands  # (redis-py retried it on a new connection)
    assert [e["client_name"] for e in entries[:2]] == [b"slowpoke"] * 2
    assert b"MULTI" in commands and b"EXEC" not in commands  # EXEC is never logged
    assert entries[0]["id"] == len(entries) - 1
    assert r.slowlog_len() == len(entries) + 1  # and SLOWLOG GET, logged after it ran
    assert len(r.slowlog_get()) == 10
    assert r.slowlog_get(0) == []
    for bad in ("-2", "x"):
        with pytest.raises(redis.ResponseError, match="count should be greater than or equal"):
            r.execute_command("SLOWLOG", "GET", bad)
    r.config_set("slowlog-max-len", 3)
    assert r.slowlog_len() == 3
    assert r.slowlog_reset()
    assert r.slowlog_len() == 1  # SLOWLOG RESET itself, logged after it ran


SLOWLOG_ERRORS: list[Step] = [
    ("a", "SLOWLOG", "GET", "-2"), ("a", "SLOWLOG", "GET", "x"), ("a", "SLOWLOG", "GET", "1", "2"),
    ("a", "SLOWLOG"), ("a", "SLOWLOG", "NOSUCH"), ("a", "SLOWLOG", "LEN", "x"),
    ("a", "SLOWLOG", "HELP"), ("a", "SLOWLOG", "RESET"),
    ("a", "LATENCY", "LATEST"), ("a", "LATENCY", "HISTORY"), ("a", "LATENCY", "HISTORY", "command"),
    ("a", "LATENCY", "RESET"), ("a", "LATENCY", "RESET", "nosuch"), ("a", "LATENCY", "DOCTOR"),
    ("a", "CONFIG", "SET", "latency-monitor-threshold", "100"), ("a", "LATENCY", "DOCTOR"),
    ("a", "CONFIG", "SET", "latency-monitor-threshold", "0"),
    ("a", "LATENCY", "HISTOGRAM", "nosuch"),
    ("a", "CONFIG", "SET", "slowlog-log-slower-than", "-2"),
    ("a", "CONFIG", "SET", "latency-tracking", "maybe"),
    ("a", "CONFIG", "SET", "latency-tracking-info-percentiles", "abc"),
    ("a", "CONFIG", "SET", "latency-tracking-info-percentiles", "101"),
    ("a", "CONFIG", "GET", "slowlog-log-slower-than"), ("a", "CONFIG", "GET", "slowlog-max-len"),
    ("a", "CONFIG", "GET", "latency-monitor-threshold"),
    ("a", "CONFIG", "GET", "latency-tracking-info-percentiles"),
]


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_slowlog_and_latency_replies_match_redis(redis_server: int, respd, protocol: int) -> None:
    check(redis_server, respd.port, {"a": protocol}, SLOWLOG_ERRORS)


def test_latency_monitor_events(respd) -> None:
    r = respd.client(protocol=2)
    r.config_set("latency-monitor-threshold", 1)
    assert r.execute_command("LATENCY", "LATEST") == []
    assert r.execute_command("LATENCY", "DOCTOR").startswith(b"Dave, no latency spike")
    # 50 000 keys in one MSET take more than a millisecond in Python.
    r.mset({f"key:{i}": "v" for i in range(50_000)})
    latest = r.execute_command("LATENCY", "LATEST")
    assert [event[0] for event in latest] == [b"command"]
    _, when, last, worst = latest[0]
    assert last >= 1 and worst >= last
    assert r.execute_command("LATENCY", "HISTORY", "command") == [[when, last]]
    report = r.execute_command("LATENCY", "DOCTOR").decode()
    assert report.startswith("Dave, I have observed latency spikes in this Redis instance.")
    assert "1. command: 1 latency spikes (average " in report
    assert ("- Your current Slow Log configuration only logs events that are slower than your "
            "configured latency monitor threshold. Please use 'CONFIG SET "
            "slowlog-log-slower-than 1000'.") in report
    assert r.execute_command("LATENCY", "RESET", "command", "nosuch") == 1
    assert r.execute_command("LATENCY", "LATEST") == []


# --- CLIENT LIST flags ------------------------------------------------------------------

def test_client_list_flags(respd) -> None:
    r = respd.client(protocol=2)
    other = respd.client(protocol=2)
    conn = r.connection_pool.get_connection()
    conn.send_command("CLIENT", "ID")
    client_id = str(conn.read_response())
    for request in (("WATCH", "w"), ("MULTI",)):
        conn.send_command(*request)
        assert conn.read_response() == b"OK"
        other.set("w", "changed")
    flags = {c["id"]: c["flags"] for c in other.client_list()}
    assert flags[client_id] == "xd"  # in MULTI, a watched key changed
    conn.send_command("DISCARD")
    assert conn.read_response() == b"OK"
    r.connection_pool.release(conn)


# --- redis-cli ------------------------------------------------------------------------

needs_redis_cli = pytest.mark.skipif(shutil.which("redis-cli") is None,
                                     reason="redis-cli is not installed")


@needs_redis_cli
def test_redis_cli_monitor(respd) -> None:
    cli = subprocess.Popen(["stdbuf", "-oL", "redis-cli", "-p", str(respd.port), "monitor"],
                           stdout=subprocess.PIPE, text=True)
    try:
        assert cli.stdout.readline() == "OK\n"
        r = respd.client(protocol=2)
        r.set("watched", "value")
        line = cli.stdout.readline()
        while '"SET"' not in line:  # the client's handshake comes first
            line = cli.stdout.readline()
        assert re.fullmatch(r'\d+\.\d{6} \[0 127\.0\.0\.1:\d+\] "SET" "watched" "value"\n',
                            line), line
    finally:
        cli.terminate()
        cli.wait(timeout=DEADLINE)


@needs_redis_cli
def test_redis_cli_stat(respd) -> None:
    r = respd.client(protocol=2)
    r.mset({"a": "1", "b": "2"})
    cli = subprocess.Popen(["stdbuf", "-oL", "redis-cli", "-p", str(respd.port), "--stat",
                            "-i", "0.1"], stdout=subprocess.PIPE, text=True)
    try:
        assert cli.stdout.readline().startswith("------- data ------")
        assert cli.stdout.readline().split() == ["keys", "mem", "clients", "blocked",
                                                 "requests", "connections"]
        keys, _, clients, blocked, *_ = cli.stdout.readline().split()
        assert (keys, clients, blocked) == ("2", "2", "0")
    finally:
        cli.terminate()
        cli.wait(timeout=DEADLINE)


@needs_redis_cli
def test_redis_cli_latency(respd) -> None:
    out = subprocess.run(["redis-cli", "-p", str(respd.port), "--latency", "--raw", "-i", "0.1"],
                         capture_output=True, text=True, timeout=DEADLINE, check=True).stdout
    low, high, average, samples = out.split()
    assert int(low) <= float(average) <= int(high)
    assert int(samples) > 0
