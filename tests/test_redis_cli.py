"""redis-cli against respd, as a subprocess, in RESP2 and with `-3` (RESP3).

The expected outputs are what redis-cli 7.0.15 prints for a real Redis 7. With its
stdout not a terminal redis-cli prints raw replies (one line per element) unless
told `--no-raw` or `--csv`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import DEADLINE, Child, wait_until

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed"),
]


@pytest.fixture(params=[[], ["-3"]], ids=["resp2", "resp3"])
def resp(request: pytest.FixtureRequest) -> list[str]:
    """redis-cli's protocol option: none (RESP2, no HELLO) or -3 (HELLO 3 first)."""
    return request.param


@pytest.fixture
def r(respd_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=respd_port)
    yield client
    client.close()


def cli(port: int, resp: list[str], *args: str, stdin: str | None = None) -> str:
    """Run redis-cli to completion and return its output."""
    done = subprocess.run(["redis-cli", "-p", str(port), *resp, *args], input=stdin,
                          capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


class Subscriber(Child):
    """`redis-cli ... subscribe` running in the background; its output read line by line."""

    def __init__(self, port: int, resp: list[str], *args: str) -> None:
        super().__init__(["redis-cli", "-p", str(port), *resp, *args])

    def expect(self, *lines: str) -> None:
        """The next lines printed are exactly these (each waited for within the deadline)."""
        for wanted in lines:
            assert self.next_line(f"redis-cli printed nothing; expected {wanted!r}") == wanted


@pytest.fixture
def subscribers() -> Iterator[list[Subscriber]]:
    started: list[Subscriber] = []
    yield started
    for sub in started:
        sub.stop()


def test_ping(respd_port: int, resp: list[str]) -> None:
    assert cli(respd_port, resp, "ping") == "PONG\n"
    assert cli(respd_port, resp, "PING", "hello world") == "hello world\n"


def test_echo(respd_port: int, resp: list[str]) -> None:
    assert cli(respd_port, resp, "echo", "hello") == "hello\n"
    assert cli(respd_port, resp, "--no-raw", "echo", "hello") == '"hello"\n'


def test_errors(respd_port: int, resp: list[str]) -> None:
    assert cli(respd_port, resp, "ping", "a", "b") == (
        "ERR wrong number of arguments for 'ping' command\n\n")
    assert cli(respd_port, resp, "nosuch", "x") == (
        "ERR unknown command 'nosuch', with args beginning with: 'x' \n\n")


def test_publish(respd_port: int, resp: list[str], r: redis.Redis) -> None:
    assert cli(respd_port, resp, "publish", "ch", "nobody") == "0\n"
    assert cli(respd_port, resp, "--no-raw", "publish", "ch", "nobody") == "(integer) 0\n"
    p = r.pubsub(ignore_subscribe_messages=True)
    try:
        p.subscribe("ch")
        p.psubscribe("c*")
        wait_until(lambda: r.pubsub_numpat() == 1 and r.pubsub_numsub("ch") == [(b"ch", 1)],
                   message="the subscriptions")
        assert cli(respd_port, resp, "publish", "ch", "from cli") == "2\n"
        received: list[dict] = []

        def both_arrived() -> bool:
            message = p.get_message(timeout=0.01)
            if message is not None:
                received.append(message)
            return len(received) == 2

        wait_until(both_arrived, message="the messages")
        assert [(m["type"], m["data"]) for m in received] == [
            ("message", b"from cli"), ("pmessage", b"from cli")]
    finally:
        p.close()


def test_csv(respd_port: int, resp: list[str]) -> None:
    assert cli(respd_port, resp, "--csv", "echo", 'say "hi"') == '"say \\"hi\\""\n'
    assert cli(respd_port, resp, "--csv", "pubsub", "numsub", "a", "b") == '"a",0,"b",0\n'
    assert cli(respd_port, resp, "--csv", "config", "get", "maxclients") == (
        '"maxclients","10000"\n')


def test_protocol_option(respd_port: int, resp: list[str]) -> None:
    """`-3` sends HELLO 3 first; without it redis-cli stays on RESP2."""
    fields = dict(word.split("=", 1) for word in cli(respd_port, resp, "client", "info").split())
    assert fields["resp"] == ("3" if resp else "2")


def test_database_option(respd_port: int, resp: list[str]) -> None:
    """`-n 2` sends SELECT 2 after connecting; redis-cli reports a failed SELECT."""
    fields = dict(word.split("=", 1)
                  for word in cli(respd_port, resp, "-n", "2", "client", "info").split())
    assert fields["db"] == "2"
    done = subprocess.run(["redis-cli", "-p", str(respd_port), *resp, "-n", "99", "ping"],
                          capture_output=True, text=True, timeout=DEADLINE, check=False)
    assert done.stderr == "SELECT 99 failed: ERR DB index is out of range\n"
    assert done.stdout == "PONG\n"


def test_hello_3_printed_as_a_map(respd_port: int) -> None:
    lines = cli(respd_port, ["-3"], "--no-raw", "hello").splitlines()
    assert lines[:3] == ['1# "server" => "redis"', '2# "version" => "7.4.0"',
                         '3# "proto" => (integer) 3']
    assert lines[4:] == ['5# "mode" => "standalone"', '6# "role" => "master"',
                         '7# "modules" => (empty array)']


def test_info_server(respd_port: int, resp: list[str]) -> None:
    lines = cli(respd_port, resp, "info", "server").splitlines()
    assert lines[0] == "# Server"
    fields = dict(line.split(":", 1) for line in lines[1:] if line)
    assert fields["redis_version"] == "7.4.0"
    assert fields["redis_mode"] == "standalone"
    assert fields["tcp_port"] == str(respd_port)


def test_client_list(respd_port: int, resp: list[str], r: redis.Redis) -> None:
    r.client_setname("watcher")
    lines = cli(respd_port, resp, "client", "list").splitlines()
    assert len(lines) == 2
    fields = [dict(word.split("=", 1) for word in line.split()) for line in lines]
    watcher, me = sorted(fields, key=lambda f: f["name"], reverse=True)
    assert watcher["name"] == "watcher"
    assert watcher["lib-name"] == "redis-py"
    assert me["cmd"] == "client|list"
    assert me["resp"] == ("3" if resp else "2")


def test_commands_from_stdin(respd_port: int, resp: list[str]) -> None:
    """With no command given, redis-cli runs each line of its standard input."""
    out = cli(respd_port, resp, stdin="ping\necho hi\npublish x y\nclient getname\n")
    assert out == "PONG\nhi\n0\n\n"


def test_subscribe_mode(respd_port: int, resp: list[str], r: redis.Redis,
                        subscribers: list[Subscriber]) -> None:
    sub = Subscriber(respd_port, resp, "subscribe", "ch", "other")
    subscribers.append(sub)
    sub.expect("subscribe", "ch", "1", "subscribe", "other", "2")
    assert r.publish("ch", "hello world") == 1
    sub.expect("message", "ch", "hello world")
    assert r.publish("other", "second") == 1
    sub.expect("message", "other", "second")
    sub.stop()
    wait_until(lambda: r.pubsub_numsub("ch", "other") == [(b"ch", 0), (b"other", 0)],
               message="the stopped redis-cli's subscriptions to go")


def test_psubscribe_mode(respd_port: int, resp: list[str], r: redis.Redis,
                         subscribers: list[Subscriber]) -> None:
    sub = Subscriber(respd_port, resp, "psubscribe", "news.*", "*.alert")
    subscribers.append(sub)
    sub.expect("psubscribe", "news.*", "1", "psubscribe", "*.alert", "2")
    assert r.publish("news.alert", "both") == 2
    sub.expect("pmessage", "news.*", "news.alert", "both",
               "pmessage", "*.alert", "news.alert", "both")
    assert r.publish("news.sport", "one") == 1
    sub.expect("pmessage", "news.*", "news.sport", "one")
    sub.stop()
    wait_until(lambda: r.pubsub_numpat() == 0, message="the stopped redis-cli's patterns to go")


def test_ssubscribe_mode(respd_port: int, resp: list[str], r: redis.Redis,
                         subscribers: list[Subscriber]) -> None:
    sub = Subscriber(respd_port, resp, "ssubscribe", "orders")
    subscribers.append(sub)
    sub.expect("ssubscribe", "orders", "1")
    assert r.spublish("orders", "o-1") == 1
    sub.expect("smessage", "orders", "o-1")


def test_subscribe_mode_formats(respd_port: int, resp: list[str], r: redis.Redis,
                                subscribers: list[Subscriber]) -> None:
    csv = Subscriber(respd_port, resp, "--csv", "subscribe", "ch")
    subscribers.append(csv)
    csv.expect("Reading messages... (press Ctrl-C to quit)", '"subscribe","ch",1')
    plain = Subscriber(respd_port, resp, "--no-raw", "psubscribe", "c*")
    subscribers.append(plain)
    plain.expect("Reading messages... (press Ctrl-C to quit)",
                 '1) "psubscribe"', '2) "c*"', "3) (integer) 1")
    assert r.publish("ch", "a b") == 2
    csv.expect('"message","ch","a b"')
    plain.expect('1) "pmessage"', '2) "c*"', '3) "ch"', '4) "a b"')
