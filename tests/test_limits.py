"""Limits that keep respd up: output buffers (pubsub and normal classes, hard and soft,
checked by the clients cron too), backpressure, the query buffer, proto-max-bulk-len,
maxclients, idle timeout, tcp-keepalive, protected mode, and graceful shutdown.

Each test waits on conditions with a deadline; none asserts how long anything took.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlparse

import hiredis
import pytest
import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.serve import DENIED, running, serve
from tests.conftest import DEADLINE, RawClient, respd_process, wait_until

pytestmark = pytest.mark.timeout(60)

# A client that reads slowly, if at all. Much smaller windows make reading crawl (a few
# KB per delayed ACK); the server's send buffer (up to 4 MB) still takes data first.
SMALL_RCVBUF = 65536


def encode(*args: bytes | str) -> bytes:
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


@contextlib.contextmanager
def respd(**options: object) -> Iterator[int]:
    """A respd on an ephemeral loopback port; yields the port."""
    with running(port=0, bind=["127.0.0.1"], **options) as url:
        yield urlparse(url).port


def no_retry(port: int) -> redis.Redis:
    """A redis-py client that reports a closed connection instead of reconnecting."""
    return redis.Redis(port=port, retry=Retry(NoBackoff(), 0))


def client_line(r: redis.Redis, name: str) -> dict[str, str] | None:
    """The CLIENT LIST fields of the client named `name` (None once it is gone)."""
    for line in r.execute_command("CLIENT", "LIST").decode().splitlines():
        fields = dict(field.split("=", 1) for field in line.split(" "))
        if fields["name"] == name:
            return fields
    return None


def stats(r: redis.Redis) -> dict[str, object]:
    return r.info("everything")


def subscriber(port: int, name: str, channel: str = "ch", *, slow: bool = True) -> RawClient:
    """A named subscriber; a slow one has a small receive buffer (and the test reads
    nothing from it for a while)."""
    client = RawClient(port)
    if slow:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
    client.send(encode("CLIENT", "SETNAME", name) + encode("SUBSCRIBE", channel))
    client.expect(b"+OK\r\n" + b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%b\r\n:1\r\n"
                  % (len(channel), channel.encode()))
    return client


def read_frames(client: RawClient, count: int) -> list[object]:
    """Read `count` replies or pushes (fewer if the server closes the connection)."""
    reader = hiredis.Reader()
    frames: list[object] = []
    while len(frames) < count:
        while (frame := reader.gets()) is not False:
            frames.append(frame)
        if len(frames) >= count:
            break
        data = client.sock.recv(1 << 20)
        if not data:
            break
        reader.feed(data)
    return frames


# --- output buffer limits ----------------------------------------------------------

def test_a_soft_limit_breach_is_caught_without_new_traffic() -> None:
    """Redis's clients cron: a subscriber over the soft limit for longer than its
    seconds is dropped even when nothing more is published to it."""
    with respd(client_output_buffer_limit="pubsub 0 256kb 1") as port:
        r = redis.Redis(port=port)
        slow = subscriber(port, "slow")
        other = subscriber(port, "other", "elsewhere")
        payload = b"x" * 65536
        for _ in range(4096):  # until respd holds more than the soft limit for it
            r.publish("ch", payload)
            if int(client_line(r, "slow")["omem"]) > 256 * 1024:
                break
        else:
            pytest.fail("the slow subscriber's output never passed the soft limit")
        # No more traffic: only the cron can notice that the breach lasts.
        wait_until(lambda: client_line(r, "slow") is None, message="the slow subscriber to go")
        assert client_line(r, "other") is not None
        assert stats(r)["client_output_buffer_limit_disconnections"] == 1
        for client in (slow, other):
            client.close()
        r.close()


def test_config_set_hard_limit_drops_only_the_slow_subscriber() -> None:
    """CONFIG SET client-output-buffer-limit: the subscriber that does not read goes; the
    publisher and a subscriber that reads get every message, in order."""
    with respd() as port:
        r = redis.Redis(port=port)
        assert r.config_set("client-output-buffer-limit", "pubsub 512kb 0 0")
        assert r.config_get("client-output-buffer-limit") == {
            "client-output-buffer-limit": "normal 0 0 0 slave 268435456 67108864 60 "
                                          "pubsub 524288 0 0"}
        slow = subscriber(port, "slow")
        good = subscriber(port, "good", slow=False)
        received: list[object] = []
        reading = threading.Thread(target=lambda: received.extend(read_frames(good, 400)))
        reading.start()
        counts = [r.publish("ch", b"%06d" % seq + b"y" * 32768) for seq in range(400)]
        reading.join(DEADLINE)
        assert [int(f[2][:6]) for f in received] == list(range(400))
        assert counts[0] == 2 and counts[-1] == 1
        assert client_line(r, "slow") is None
        for client in (slow, good):
            client.close()
        r.close()


def test_a_normal_client_over_its_limit_is_disconnected() -> None:
    """The normal class: a client that pipelines big replies without reading them is
    dropped once respd holds more than the hard limit for it."""
    with respd(client_output_buffer_limit="normal 256kb 0 0") as port:
        r = redis.Redis(port=port)
        r.set("big", b"v" * 100_000)
        client = RawClient(port)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        client.send(encode("GET", "big") * 200)
        replies = read_frames(client, 200)
        assert len(replies) < 200  # the connection ended first
        assert stats(r)["client_output_buffer_limit_disconnections"] == 1
        client.close()
        r.close()


@pytest.mark.parametrize("request_", [("GET", "big"), ("ECHO", "v" * 100_000)],
                         ids=["small-requests", "large-requests"])
def test_a_client_that_does_not_read_its_replies_is_not_read_either(request_) -> None:
    """Backpressure with no limits set: respd stops taking a pipeline whose replies the
    client does not read (so they cannot pile up in memory), then resumes when it reads.
    Small requests come thousands to a read; large ones a few to a read, whose replies
    are sent at the end of the reactor's round."""
    count, size = 1000, 100_000  # 100 MB of replies
    with respd() as port:
        r = redis.Redis(port=port)
        r.set("big", b"v" * size)
        client = RawClient(port)
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        client.send(encode("CLIENT", "SETNAME", "piper"))
        client.expect(b"+OK\r\n")
        sending = threading.Thread(target=client.send, args=(encode(*request_) * count,))
        sending.start()
        wait_until(lambda: int(client_line(r, "piper")["omem"]) > 0,
                   message="respd to hold replies the client does not read")
        bound = 64 * size + (1 << 20)  # one chunk of replies, not 100 MB
        held = stats(r)["client_recent_max_output_buffer"]
        assert 0 < held <= bound
        header = b"$%d\r\n" % size
        reply = header + b"v" * size + b"\r\n"
        for taken in range(count):
            if taken % 50 == 0:  # and it stays bounded while the client reads
                assert int(client_line(r, "piper")["omem"]) <= bound
            client.expect(reply)
        sending.join(DEADLINE)
        client.close()
        r.close()


# --- input limits ------------------------------------------------------------------

def test_query_buffer_limit_closes_without_a_reply() -> None:
    with respd(client_query_buffer_limit="1mb") as port:
        r = redis.Redis(port=port)
        client = RawClient(port)
        client.send(b"PING\r\n*2\r\n$3\r\nSET\r\n$5000000\r\n")
        client.expect(b"+PONG\r\n")
        with contextlib.suppress(OSError):
            client.send(b"z" * 2_000_000)
        # Closed with what the client sent unread: an EOF or a reset, and no reply.
        with contextlib.suppress(ConnectionResetError):
            assert client.read_until_closed() == b""
        assert stats(r)["client_query_buffer_limit_disconnections"] == 1
        assert r.ping()
        client.close()
        r.close()


def test_query_buffer_limit_counts_the_arguments_already_read() -> None:
    """An unfinished MSET of many small complete arguments passes the limit too."""
    with respd(client_query_buffer_limit="1mb") as port:
        r = redis.Redis(port=port)
        client = RawClient(port)
        argument = b"$1000\r\n" + b"v" * 1000 + b"\r\n"
        with contextlib.suppress(OSError):
            client.send(b"*5001\r\n$4\r\nMSET\r\n" + argument * 2000)
        with contextlib.suppress(ConnectionResetError):
            assert client.read_until_closed() == b""
        assert stats(r)["client_query_buffer_limit_disconnections"] == 1
        client.close()
        r.close()


def test_proto_max_bulk_len_applies_to_open_connections() -> None:
    with respd() as port:
        client = RawClient(port)
        r = redis.Redis(port=port)
        assert r.config_set("proto-max-bulk-len", "1mb")
        client.send(b"*2\r\n$4\r\nECHO\r\n$1048577\r\n")
        assert client.read_until_closed() == b"-ERR Protocol error: invalid bulk length\r\n"
        with pytest.raises(redis.ResponseError, match="argument must be between 1048576"):
            r.config_set("proto-max-bulk-len", "1000")
        client.close()
        r.close()


def test_maxclients() -> None:
    with respd(maxclients=2) as port:
        first, second = RawClient(port), RawClient(port)
        for client in (first, second):
            client.send(b"PING\r\n")
            client.expect(b"+PONG\r\n")
        third = no_retry(port)
        with pytest.raises(redis.ConnectionError, match="max number of clients reached"):
            third.ping()
        first.close()
        wait_until(lambda: _answers(port), message="a free slot")
        second.close()
        third.close()


def _answers(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64) == b"+PONG\r\n"


def test_idle_timeout_closes_normal_clients_but_not_subscribers() -> None:
    with respd(timeout=1) as port:
        r = redis.Redis(port=port)
        listener = subscriber(port, "listener")  # idle longer than `idle` below
        idle = RawClient(port)
        idle.send(b"PING\r\n")
        idle.expect(b"+PONG\r\n")
        assert idle.read_until_closed() == b""  # no reply, as in Redis
        assert r.publish("ch", "still here") == 1
        listener.expect(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$10\r\nstill here\r\n")
        listener.close()
        idle.close()
        r.close()


@pytest.mark.parametrize("interval", [300, 7, 0])
def test_tcp_keepalive_is_set_on_accepted_sockets(interval: int) -> None:
    async def probe() -> tuple[int, int | None]:
        async with trio.open_nursery() as nursery:
            srv = await nursery.start(functools.partial(
                serve, port=0, bind=["127.0.0.1"], tcp_keepalive=interval))
            client = trio.socket.socket()
            await client.connect(("127.0.0.1", srv.port))
            await client.send(b"PING\r\n")
            assert await client.recv(16) == b"+PONG\r\n"
            (conn,) = srv.clients.values()
            enabled = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
            idle = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) \
                if enabled else None
            client.close()
            nursery.cancel_scope.cancel()
        return enabled, idle

    enabled, idle = trio.run(probe)
    assert (bool(enabled), idle) == ((True, interval) if interval else (False, None))


# --- protected mode ----------------------------------------------------------------

def _outside_address() -> str | None:
    """A local address that is not loopback (that of the default route), if any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent for a UDP connect
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_protected_mode_refuses_clients_from_other_hosts() -> None:
    outside = _outside_address()
    if outside is None:
        pytest.skip("no non-loopback address on this host")
    with running(port=0, bind=["0.0.0.0"]) as url:
        port = urlparse(url).port
        remote = RawClient(port, outside)
        assert remote.read_until_closed() == DENIED
        local = redis.Redis(port=port)
        assert local.ping()
        assert local.info()["rejected_connections"] == 1
        # A password lifts protected mode: the client must authenticate instead.
        local.config_set("requirepass", "pw")
        remote = RawClient(port, outside)
        remote.send(b"PING\r\n")
        remote.expect(b"-NOAUTH Authentication required.\r\n")
        local.config_set("requirepass", "")
        local.config_set("protected-mode", "no")
        remote = RawClient(port, outside)
        remote.send(b"PING\r\n")
        remote.expect(b"+PONG\r\n")
        remote.close()
        local.close()


# --- shutdown ----------------------------------------------------------------------

MESSAGES = 400  # 8 MB: more than the kernel's buffers take (respd keeps some)


def _queue_for_reader(port: int) -> redis.Redis:
    """Publish MESSAGES to the subscriber `reader`, which is not reading yet, so that
    respd still holds some of them; return the publishing client."""
    r = no_retry(port)
    for seq in range(MESSAGES):
        assert r.publish("ch", b"%06d" % seq + b"q" * 20000) == 1
    assert int(client_line(r, "reader")["omem"]) > 0, "nothing left queued in respd"
    return r


def _read_all_then_eof(client: RawClient) -> list[int]:
    """Every message until the server closes the connection: their sequence numbers."""
    frames = read_frames(client, MESSAGES + 1)
    return [int(f[2][:6]) for f in frames]


def test_shutdown_delivers_what_is_queued_to_a_subscriber_that_reads() -> None:
    with running(port=0, bind=["127.0.0.1"]) as url:
        port = urlparse(url).port
        reader = subscriber(port, "reader")
        r = _queue_for_reader(port)
        r.shutdown(nosave=True)  # redis-py expects no reply: the connection closes
        assert _read_all_then_eof(reader) == list(range(MESSAGES))
        reader.close()


def test_shutdown_now_does_not_wait_for_slow_readers() -> None:
    with running(port=0, bind=["127.0.0.1"], shutdown_timeout=3600) as url:
        port = urlparse(url).port
        reader = subscriber(port, "reader")
        r = _queue_for_reader(port)
        with pytest.raises(redis.ConnectionError):
            r.execute_command("SHUTDOWN", "NOW")
        # Not waiting the hour for the reader: the block's exit joins the stopped server.
    reader.close()


def test_sigterm_delivers_what_is_queued() -> None:
    with respd_process() as (proc, port):
        reader = subscriber(port, "reader")
        _queue_for_reader(port).close()
        proc.send_signal(signal.SIGTERM)
        assert _read_all_then_eof(reader) == list(range(MESSAGES))
        assert proc.wait(DEADLINE) == 0
        reader.close()
