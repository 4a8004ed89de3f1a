"""Cluster mode: respd as a one-node cluster, byte for byte against a real one-node Redis
Cluster, and through redis-py's RedisCluster (commands, pipelines, pub/sub, sharded pub/sub)."""

from __future__ import annotations

import random
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from server.commands.cluster import crc16, key_slot
from server.testing import RespdServer, serving
from tests.conftest import DEADLINE, wait_until

pytestmark = pytest.mark.timeout(60)

SYNC = b"__sync__"


# --- the hash slot ------------------------------------------------------------------

def test_crc16_is_xmodem() -> None:
    assert crc16(b"123456789") == 0x31C3  # the catalogue check value of CRC-16/XMODEM


@pytest.mark.parametrize(("key", "slot"), [
    (b"foo", 12182), (b"{user1000}.following", 3443), (b"{user1000}.followers", 3443),
    (b"a{}b", 13694), (b"{}", 15257), (b"", 0), (b"{a}{b}", 15495), (b"x{a}y", 15495),
    (b"{{a}}", key_slot(b"{a")), (b"a}{b", key_slot(b"a}{b")),
])
def test_key_slot_with_hash_tags(key: bytes, slot: int) -> None:
    assert key_slot(key) == slot


# --- servers: a real one-node cluster and respd in cluster mode ---------------------

def cluster_port() -> int:
    """A free port p (with p + 10000 free for the cluster bus) of five digits, so that
    the replies of two servers differ in neither length nor shape."""
    for _ in range(100):
        port = random.randint(10000, 55000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair")


def start_cluster_node(port: int, directory: Path) -> subprocess.Popen:
    """A redis-server in cluster mode on loopback, with no persistence."""
    binary = shutil.which("redis-server")
    assert binary is not None
    directory.mkdir()
    return subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-config-file", str(directory / "nodes.conf"), "--dir", str(directory),
         "--cluster-announce-ip", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=DEADLINE)


def answers(port: int) -> bool:
    try:
        return redis.Redis(port=port, protocol=2).ping()
    except redis.ConnectionError:
        return False


def cluster_ok(port: int) -> bool:
    return redis.Redis(port=port, protocol=2).cluster("info")["cluster_state"] == "ok"


@pytest.fixture(scope="module")
def redis_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real redis-server owning all 16384 slots; skipped when it is not installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = cluster_port()
    process = start_cluster_node(port, tmp_path_factory.mktemp("node") / "n")
    try:
        wait_until(lambda: answers(port), message="redis-server to start")
        redis.Redis(port=port, protocol=2).execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        wait_until(lambda: cluster_ok(port), message="the one-node cluster to be ok")
        yield port
    finally:
        stop(process)


@pytest.fixture(scope="module")
def respd_cluster() -> Iterator[RespdServer]:
    """respd in cluster mode, on a port shaped like the real node's."""
    with serving(cluster_enabled=True, port=cluster_port()) as server:
        yield server


# --- byte for byte against the real node --------------------------------------------

class Raw:
    """A raw connection: each command's whole output, up to a synchronising PING (or,
    inside MULTI, where PING would be queued, the one-line reply)."""

    def __init__(self, port: int, protocol: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.buffer = b""
        self.queuing = False  # inside MULTI
        if protocol == 3:
            self.command("HELLO", "3")

    def _read_through(self, ends: tuple[bytes, ...]) -> bytes:
        """What arrives before the first of ends; what follows stays for the next read
        (an invalidation sent after a whole pipeline, for example)."""
        while True:
            found = [(at, end) for end in ends if (at := self.buffer.find(end)) >= 0]
            if found:
                at, end = min(found)
                out, self.buffer = self.buffer[:at], self.buffer[at + len(end):]
                return out
            chunk = self.sock.recv(65536)
            assert chunk, f"closed after {self.buffer!r}"
            self.buffer += chunk

    def command(self, *args: str | bytes) -> bytes:
        """Send one command; its reply and whatever else arrived with it."""
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p)
                                                      for p in parts)
        name = parts[0].upper()
        if (self.queuing and name not in (b"EXEC", b"DISCARD")) or name == b"MULTI":
            self.sock.sendall(request)
            out = self._read_through((b"\r\n",)) + b"\r\n"
            self.queuing = self.queuing or out == b"+OK\r\n"
            return out
        self.queuing = False
        return self._synchronised(request)

    def drain(self) -> bytes:
        """What arrived unasked (pushes, messages) before a synchronising PING's reply."""
        return self._synchronised(b"")

    def _synchronised(self, request: bytes) -> bytes:
        self.sock.sendall(request + b"*2\r\n$4\r\nPING\r\n$8\r\n" + SYNC + b"\r\n")
        return self._read_through((b"$8\r\n" + SYNC + b"\r\n",
                                   b"*2\r\n$4\r\npong\r\n$8\r\n" + SYNC + b"\r\n"))

    def close(self) -> None:
        self.sock.close()


def normalise(data: bytes, node_id: bytes, port: int) -> bytes:
    """Hide what differs between two nodes (id, ports) keeping every length the same."""
    data = data.replace(node_id, b"I" * 40)
    return re.sub(rb"\b(%d|%d)\b" % (port, port + 10000), lambda m: b"P" * len(m[0]), data)


CLUSTER_STEPS: list[tuple[str | bytes, ...]] = [
    ("CLUSTER", "INFO"), ("CLUSTER", "MYID"), ("CLUSTER", "SLOTS"), ("CLUSTER", "SHARDS"),
    ("CLUSTER", "NODES"), ("CLUSTER", "LINKS"),
    ("CLUSTER", "KEYSLOT", "foo"), ("CLUSTER", "KEYSLOT", "{user1000}.following"),
    ("CLUSTER", "KEYSLOT", "a{}b"), ("CLUSTER", "KEYSLOT", b"\xff{\x00}"),
    ("CLUSTER", "KEYSLOT"), ("CLUSTER", "KEYSLOT", "a", "b"), ("CLUSTER", "SLOTS", "x"),
    ("CLUSTER", "NOSUCH"), ("CLUSTER",),
    ("CLUSTER", "COUNTKEYSINSLOT", "12182"), ("SET", "foo", "1"),
    ("CLUSTER", "COUNTKEYSINSLOT", "12182"), ("CLUSTER", "COUNTKEYSINSLOT", "16384"),
    ("CLUSTER", "COUNTKEYSINSLOT", "-1"), ("CLUSTER", "COUNTKEYSINSLOT", "x"),
    ("CLUSTER", "GETKEYSINSLOT", "12182", "10"), ("CLUSTER", "GETKEYSINSLOT", "12182", "0"),
    ("CLUSTER", "GETKEYSINSLOT", "12182", "-1"), ("CLUSTER", "GETKEYSINSLOT", "16384", "1"),
    ("CLUSTER", "GETKEYSINSLOT", "x", "1"), ("CLUSTER", "GETKEYSINSLOT", "1", "x"),
    ("CLUSTER", "REPLICAS", "nosuchnode"), ("CLUSTER", "SLAVES", "nosuchnode"),
    ("READONLY",), ("READWRITE",), ("ASKING",), ("READONLY", "x"),
    ("SELECT", "0"), ("SELECT", "1"), ("MOVE", "foo", "1"), ("SWAPDB", "0", "1"),
    ("COPY", "foo", "{foo}2", "DB", "1"), ("DEL", "foo"),
    ("INFO", "cluster"),
]

CROSSSLOT_STEPS: list[tuple[str | bytes, ...]] = [
    ("MGET", "a", "b"), ("MGET", "{a}1", "{a}2"), ("MGET", "a", "a"),
    ("MSET", "a", "1", "b", "2"), ("MSET", "{t}a", "1", "{t}b", "2"),
    ("MSETNX", "a", "1", "b", "2"),
    ("DEL", "a", "b"), ("DEL", "{t}a", "{t}b"), ("UNLINK", "a", "b"), ("EXISTS", "a", "b"),
    ("TOUCH", "a", "b"), ("RENAME", "a", "b"), ("RENAMENX", "{t}a", "b"), ("COPY", "a", "b"),
    ("WATCH", "a", "b"), ("WATCH", "{t}a", "{t}b"), ("UNWATCH",),
    ("GET", "a", "b"),  # arity comes first
    ("MULTI",), ("SET", "a", "1"), ("SET", "b", "2"), ("EXEC",), ("MULTI",), ("DISCARD",),
    ("MULTI",), ("MGET", "a", "b"), ("GET", "a"), ("EXEC",),
    ("MULTI",), ("SET", "{t}a", "1"), ("GET", "{t}b"), ("EXEC",),
    ("SSUBSCRIBE", "a", "b"), ("SUNSUBSCRIBE", "a", "b"), ("SPUBLISH", "a", "m"),
    ("SSUBSCRIBE", "{t}a", "{t}b"), ("SUNSUBSCRIBE", "{t}b", "{t}a"), ("SUNSUBSCRIBE",),
    ("SUBSCRIBE", "a", "b"), ("MGET", "a", "b"), ("GET", "a"), ("UNSUBSCRIBE", "a", "b"),
    ("PUBLISH", "a", "m"), ("DEL", "{t}a", "{t}b"),
]


@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
@pytest.mark.parametrize("steps", [CLUSTER_STEPS, CROSSSLOT_STEPS], ids=["cluster", "crossslot"])
def test_same_bytes_as_a_real_cluster_node(redis_node: int, respd_cluster: RespdServer,
                                           protocol: int, steps: list[tuple]) -> None:
    outputs = []
    for port in (redis_node, respd_cluster.port):
        client = Raw(port, protocol)
        node_id = client.command("CLUSTER", "MYID").split(b"\r\n")[1]
        outputs.append([normalise(client.command(*step), node_id, port) for step in steps])
        client.close()
    for step, theirs, ours in zip(steps, *outputs, strict=True):
        assert (step, ours) == (step, theirs)


def test_hello_and_info_say_cluster(respd_cluster: RespdServer) -> None:
    r = redis.Redis.from_url(respd_cluster.url, protocol=3)
    assert r.execute_command("HELLO", "3")[b"mode"] == b"cluster"
    assert r.info("server")["redis_mode"] == "cluster"
    assert r.info("cluster") == {"cluster_enabled": 1}
    r.close()


def test_help_lists_what_respd_implements(respd_cluster: RespdServer) -> None:
    r = redis.Redis.from_url(respd_cluster.url, protocol=2)
    lines = [line.decode() for line in r.execute_command("CLUSTER", "HELP")]
    assert lines[0] == "CLUSTER <subcommand> [<arg> [value] [opt] ...]. Subcommands are:"
    assert lines[-2:] == ["HELP", "    Prints this help."]
    listed = {line.split()[0].lower() for line in lines[1:-2] if not line.startswith(" ")}
    implemented = {name.decode().partition("|")[2] for name in r.command_list()
                   if name.startswith(b"cluster|")}
    assert listed == implemented - {"help", "slaves"}  # SLAVES: REPLICAS's old name
    r.close()


# --- standalone mode ------------------------------------------------------------------

STANDALONE_STEPS: list[tuple[str, ...]] = [
    ("CLUSTER", "INFO"), ("CLUSTER", "HELP"), ("CLUSTER", "KEYSLOT", "foo"),
    ("CLUSTER", "MYID"), ("CLUSTER", "NOSUCH"), ("READONLY",), ("READWRITE",), ("ASKING",),
    ("MGET", "a", "b"), ("SSUBSCRIBE", "a", "b"), ("SUNSUBSCRIBE",),
]


def test_standalone_refuses_cluster_commands_like_redis(redis_port: int, respd_port: int) -> None:
    outputs = [[Raw(port, 2).command(*step) for step in STANDALONE_STEPS]
               for port in (redis_port, respd_port)]
    for step, theirs, ours in zip(STANDALONE_STEPS, *outputs, strict=True):
        assert (step, ours) == (step, theirs)


# --- redis-py's RedisCluster ----------------------------------------------------------

@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def cluster_client(request: pytest.FixtureRequest,
                   respd_cluster: RespdServer) -> Iterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=respd_cluster.port, protocol=request.param)
    yield client
    client.close()


def test_redis_cluster_discovers_one_node(cluster_client: RedisCluster,
                                          respd_cluster: RespdServer) -> None:
    nodes = cluster_client.get_nodes()
    assert [(n.host, n.port, n.server_type) for n in nodes] == [
        ("127.0.0.1", respd_cluster.port, "primary")]
    assert cluster_client.keyslot("{user1000}.following") == 3443
    assert cluster_client.cluster_keyslot("foo") == 12182


def test_redis_cluster_commands_and_pipelines(cluster_client: RedisCluster) -> None:
    r = cluster_client
    r.set("rc:a", "1")
    r.mset({"{rc}x": "1", "{rc}y": "2"})
    assert r.mget("{rc}x", "{rc}y") == [b"1", b"2"]
    assert r.mget_nonatomic("rc:a", "{rc}x") == [b"1", b"1"]
    with pytest.raises(redis.exceptions.RedisClusterException, match="same key slot"):
        r.mget("rc:a", "{rc}x")  # redis-py refuses it before sending
    node = r.get_default_node().redis_connection  # sends what RedisCluster would refuse
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):
        node.execute_command("MGET", "rc:a", "{rc}x")
    pipe = r.pipeline()
    pipe.incr("rc:a").get("rc:a").delete("rc:a")
    assert pipe.execute() == [2, b"2", 1]
    assert r.delete("rc:a", "{rc}x", "{rc}y") == 2  # split by slot by redis-py
    assert r.get("{rc}x") is None


def test_redis_cluster_pubsub(cluster_client: RedisCluster,
                              respd_cluster: RespdServer) -> None:
    p = cluster_client.pubsub()
    p.subscribe("rc-news")
    respd_cluster.wait_for_subscribers("rc-news")
    assert cluster_client.publish("rc-news", "hello") == 1
    message = p.get_message(timeout=DEADLINE)
    while message is not None and message["type"] == "subscribe":
        message = p.get_message(timeout=DEADLINE)
    assert message is not None, "timed out waiting for the message"
    assert (message["channel"], message["data"]) == (b"rc-news", b"hello")
    p.close()


def test_redis_cluster_sharded_pubsub(cluster_client: RedisCluster,
                                      respd_cluster: RespdServer) -> None:
    p = cluster_client.pubsub()
    p.ssubscribe("{orders}eu", "{orders}us")
    respd_cluster.wait_for_subscribers("{orders}us", shard=True)
    assert cluster_client.spublish("{orders}eu", "one") == 1
    assert cluster_client.spublish("{orders}us", "two") == 1
    received = []
    while len(received) < 2:
        message = p.get_sharded_message(timeout=DEADLINE)
        assert message is not None, "timed out waiting for a sharded message"
        if message["type"] == "smessage":
            received.append((message["channel"], message["data"]))
    assert received == [(b"{orders}eu", b"one"), (b"{orders}us", b"two")]
    node = cluster_client.get_default_node().redis_connection
    with pytest.raises(redis.exceptions.ClusterCrossSlotError):
        node.execute_command("SSUBSCRIBE", "a", "b")
    p.close()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_in_cluster_mode(respd_cluster: RespdServer) -> None:
    port = str(respd_cluster.port)

    def cli(*args: str) -> str:
        return subprocess.run(["redis-cli", *args], capture_output=True, text=True,
                              timeout=DEADLINE, check=True).stdout

    assert cli("-c", "-p", port, "SET", "{cli}a", "1") == "OK\n"
    assert cli("-c", "-p", port, "MGET", "{cli}a", "{cli}b") == "1\n\n"
    check = cli("--cluster", "check", f"127.0.0.1:{port}")
    assert "[OK] All nodes agree about slots configuration." in check
    assert "[OK] All 16384 slots covered." in check
    assert cli("-c", "-p", port, "DEL", "{cli}a") == "1\n"
