"""Running respd: inside a trio program, in a thread of a sync program, and as a command."""

from __future__ import annotations

import functools
import os
import random
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.serve import VERSION, Server, StartupError, running, serve
from tests.conftest import DEADLINE, Child, wait_until

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


def no_retry() -> Retry:
    """For a client that should see a closed server at once rather than retry."""
    return Retry(NoBackoff(), 0)


def refuses(host: str, port: int) -> bool:
    """Whether nothing listens on host:port any more."""
    try:
        with socket.create_connection((host, port), timeout=DEADLINE):
            return False
    except ConnectionRefusedError:
        return True


def round_trip(url: str, protocol: int = 3) -> None:
    """A redis-py client works: PING, and a message through SUBSCRIBE and PUBLISH."""
    r = redis.Redis.from_url(url, protocol=protocol)
    p = r.pubsub(ignore_subscribe_messages=True)
    try:
        assert r.ping() is True
        p.subscribe("greetings")
        wait_until(lambda: r.pubsub_numsub("greetings") == [(b"greetings", 1)],
                   message="the subscription")
        assert r.publish("greetings", "hello") == 1
        end = time.monotonic() + DEADLINE
        message = None
        while message is None and time.monotonic() < end:
            message = p.get_message(timeout=0.1)
        assert message is not None, "timed out waiting for the message"
        assert message["data"] == b"hello"
    finally:
        p.close()
        r.close()


# --- serve() in a trio program ----------------------------------------------------

@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_serve_in_a_trio_program(protocol: int) -> None:
    """`nursery.start(serve, ...)` gives the bound Server; cancelling stops it."""
    found: dict[str, object] = {}

    async def main() -> None:
        with trio.fail_after(DEADLINE):
            await use_a_server()

    async def use_a_server() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(functools.partial(serve, port=0, bind=["127.0.0.1"]))
            assert isinstance(server, Server)
            found["port"] = server.port
            assert server.port > 0
            assert server.url == f"redis://127.0.0.1:{server.port}"
            await trio.to_thread.run_sync(round_trip, server.url, protocol)
            nursery.cancel_scope.cancel()

    trio.run(main)
    assert refuses("127.0.0.1", found["port"])


def test_cancelling_serve_closes_the_clients() -> None:
    async def main() -> redis.Redis:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                server = await nursery.start(functools.partial(serve, port=0,
                                                               bind=["127.0.0.1"]))
                r = redis.Redis(port=server.port, retry=no_retry())
                assert await trio.to_thread.run_sync(r.ping) is True
                nursery.cancel_scope.cancel()
        return r

    r = trio.run(main)
    assert refuses("127.0.0.1", r.connection_pool.connection_kwargs["port"])
    with pytest.raises(redis.ConnectionError):
        r.ping()  # its connection was closed by the server, and nothing listens now
    r.close()


def test_shutdown_command_ends_serve() -> None:
    """SHUTDOWN from a client ends serve() by itself, with no reply to the client."""

    def shut_down(port: int) -> None:
        r = redis.Redis(port=port, retry=no_retry())
        r.shutdown(nosave=True)  # raises unless the server closes the connection
        r.close()

    async def main() -> None:
        with trio.fail_after(DEADLINE):
            async with trio.open_nursery() as nursery:
                server = await nursery.start(functools.partial(serve, port=0,
                                                               bind=["127.0.0.1"]))
                await trio.to_thread.run_sync(shut_down, server.port)
        assert refuses("127.0.0.1", server.port)

    trio.run(main)


def test_serve_reports_an_address_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        async def main() -> None:
            async with trio.open_nursery() as nursery:
                with pytest.raises(StartupError) as raised:
                    await nursery.start(functools.partial(serve, port=port,
                                                          bind=["127.0.0.1"]))
                assert f"127.0.0.1:{port}" in str(raised.value)

        trio.run(main)


# --- running() in a sync program --------------------------------------------------

@pytest.mark.parametrize("protocol", [2, 3], ids=["resp2", "resp3"])
def test_running_yields_a_url_and_stops_on_exit(protocol: int) -> None:
    with running(port=0, bind=["127.0.0.1"]) as url:
        parsed = urlparse(url)
        assert (parsed.scheme, parsed.hostname) == ("redis", "127.0.0.1")
        round_trip(url, protocol)
        client = redis.Redis.from_url(url, protocol=protocol, retry=no_retry())
        assert client.ping() is True
    assert refuses("127.0.0.1", parsed.port)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    client.close()


def test_running_twice_gives_two_servers() -> None:
    with running(port=0, bind=["127.0.0.1"]) as first, \
            running(port=0, bind=["127.0.0.1"]) as second:
        assert first != second
        one, two = redis.Redis.from_url(first), redis.Redis.from_url(second)
        p = one.pubsub()
        p.subscribe("ch")
        wait_until(lambda: one.pubsub_numsub("ch") == [(b"ch", 1)], message="subscription")
        assert two.publish("ch", "elsewhere") == 0  # separate hubs
        assert one.publish("ch", "here") == 1
        p.close()
        one.close()
        two.close()


def test_running_raises_when_the_port_is_taken() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError, match=rf"127\.0\.0\.1:{port}"), \
                running(port=port, bind=["127.0.0.1"]):
            pass


# --- the command ------------------------------------------------------------------

class Command(Child):
    """`python -m server ...` running, its output (stdout and stderr) read line by line."""

    def __init__(self, *args: str) -> None:
        super().__init__([sys.executable, "-m", "server", *args], cwd=ROOT,
                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self.output: list[str] = []

    def wait_for(self, pattern: str) -> re.Match[str]:
        """Read lines until one matches, within the deadline."""
        while True:
            line = self.next_line(f"no line matching {pattern!r} in {self.output}")
            if line is None:
                raise AssertionError(f"exited before printing {pattern!r}: {self.output}")
            self.output.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def finish(self) -> tuple[int, list[str]]:
        """Wait for the exit; the exit code and every line printed."""
        code = self.proc.wait(DEADLINE)
        self.reader.join(DEADLINE)
        while (line := self.lines.get_nowait()) is not None:
            self.output.append(line)
        return code, self.output


@pytest.fixture
def commands() -> Iterator[list[Command]]:
    started: list[Command] = []
    yield started
    for command in started:
        command.stop(kill=True)


def start(commands: list[Command], *args: str) -> Command:
    command = Command(*args)
    commands.append(command)
    return command


LISTENING = r"respd listening on (redis://\S+)$"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_command_serves_and_exits_on_a_signal(commands: list[Command],
                                              signum: signal.Signals) -> None:
    command = start(commands, "--port", "0", "--bind", "127.0.0.1")
    url = command.wait_for(LISTENING).group(1)
    port = urlparse(url).port
    assert url == f"redis://127.0.0.1:{port}"
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(7) == b"+PONG\r\n"
    round_trip(url)
    command.proc.send_signal(signum)
    code, output = command.finish()
    assert code == 0
    assert any(f"Received {signum.name} scheduling shutdown" in line for line in output)
    assert "bye" in output[-1]
    assert not any("Traceback" in line for line in output)


def test_command_delivers_then_closes_subscribers_on_sigterm(commands: list[Command]) -> None:
    command = start(commands, "--port", "0", "--bind", "127.0.0.1")
    url = command.wait_for(LISTENING).group(1)
    r = redis.Redis.from_url(url, retry=no_retry())
    p = r.pubsub(ignore_subscribe_messages=True)
    try:
        p.subscribe("ch")
        wait_until(lambda: r.pubsub_numsub("ch") == [(b"ch", 1)], message="the subscription")
        assert r.publish("ch", "last words") == 1
        command.proc.send_signal(signal.SIGTERM)
        assert command.finish()[0] == 0
        message = None
        while message is None:  # the server has exited: the data is already here
            message = p.get_message(timeout=DEADLINE)
        assert message["data"] == b"last words"
        with pytest.raises(redis.ConnectionError):
            while True:  # then the end of the connection
                p.get_message(timeout=DEADLINE)
    finally:
        p.close()
        r.close()


def test_command_shuts_down_on_shutdown(commands: list[Command]) -> None:
    command = start(commands, "--port", "0", "--bind", "127.0.0.1")
    url = command.wait_for(LISTENING).group(1)
    r = redis.Redis.from_url(url, retry=no_retry())
    r.shutdown(nosave=True)
    r.close()
    code, output = command.finish()
    assert code == 0
    assert "bye" in output[-1]


def test_command_reports_an_address_in_use(commands: list[Command]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = start(commands, "--port", str(port), "--bind", "127.0.0.1")
        code, output = command.finish()
    assert code == 1
    assert len(output) == 1, output
    assert f"127.0.0.1:{port}" in output[0]
    assert "in use" in output[0]


def test_command_rejects_an_unknown_option(commands: list[Command]) -> None:
    command = start(commands, "--no-such-option", "1")
    code, output = command.finish()
    assert code == 1
    assert output == ["respd: Bad directive or wrong number of arguments: '--no-such-option'"]


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this host")
def test_command_listens_on_every_bind_address(commands: list[Command]) -> None:
    command = start(commands, "--port", "0", "--bind", "127.0.0.1", "::1")
    port = urlparse(command.wait_for(LISTENING).group(1)).port
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as sock:
            sock.settimeout(DEADLINE)
            sock.connect((host, port))
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert sock.recv(7) == b"+PONG\r\n"
    round_trip(f"redis://[::1]:{port}")
    command.proc.send_signal(signal.SIGTERM)
    assert command.finish()[0] == 0


def test_command_help(commands: list[Command]) -> None:
    command = start(commands, "--help")
    code, output = command.finish()
    assert code == 0
    assert output[0].startswith("Usage: respd")
    assert any("--port" in line for line in output)


def test_command_version(commands: list[Command]) -> None:
    command = start(commands, "--version")
    assert command.finish() == (0, [f"respd {VERSION}"])


def test_a_server_in_a_thread_leaves_the_random_module_alone(respd_url: str) -> None:
    """A test suite that seeds `random` gets the same sequence with respd running beside
    it: RANDOMKEY and eviction sampling draw from respd's own generator."""
    r = redis.Redis.from_url(respd_url)
    r.mset({f"k{i}": i for i in range(100)})
    random.seed(7)
    expected = [random.random() for _ in range(5)]
    random.seed(7)
    assert all(r.randomkey() for _ in range(50))
    r.config_set("maxmemory-policy", "allkeys-random")
    r.config_set("maxmemory", r.info("memory")["used_memory"])
    r.set("more", "x" * 1000)  # over maxmemory: the next write evicts random keys
    r.set("again", "x")
    assert r.dbsize() < 101
    assert [random.random() for _ in range(5)] == expected
