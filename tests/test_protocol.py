"""The request protocol over real sockets: inline and multibulk requests, pipelining,
requests split across reads, and every protocol error (reply, then close).

The differential test sends the same raw streams to respd and to a real redis-server
and compares the bytes that come back, up to the close where there is one.
"""

from __future__ import annotations

import contextlib
import random
import socket
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest

from server.serve import running
from tests.conftest import DEADLINE, RawClient

INLINE_MAX = 64 * 1024


def encode(*args: bytes) -> bytes:
    """A request in Redis's own multibulk encoding."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def bulk(data: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(data), data)


def err(text: bytes) -> bytes:
    return b"-ERR %b\r\n" % text


def unknown(name: bytes, *args: bytes) -> bytes:
    quoted = b"".join(b"'%b' " % a for a in args)
    return err(b"unknown command '%b', with args beginning with: %b" % (name, quoted))


def protocol_error(reason: bytes) -> bytes:
    return err(b"Protocol error: " + reason)


QUIT = encode(b"QUIT")


def nodelay(client: RawClient) -> RawClient:
    """Send each small write at once, so the server really gets the pieces apart."""
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client


def assert_serves(port: int) -> None:
    """A new connection is answered: the server is alive and well."""
    client = RawClient(port)
    try:
        client.send(b"PING\r\n" + encode(b"ECHO", b"still here"))
        client.expect(b"+PONG\r\n" + bulk(b"still here"))
    finally:
        client.close()


# --- inline commands, pipelining, split requests ----------------------------------------

def test_inline_commands_telnet_style(raw: RawClient) -> None:
    raw.send(b"PING\r\n")
    raw.expect(b"+PONG\r\n")
    raw.send(b"PING\n")  # a bare LF ends a line too
    raw.expect(b"+PONG\r\n")
    raw.send(b"\r\n\n   \r\nping\r\n")  # blank lines are ignored, names are case-blind
    raw.expect(b"+PONG\r\n")
    raw.send(b'ECHO "hello world"\r\n')
    raw.expect(bulk(b"hello world"))
    raw.send(b"ECHO 'it\\'s'\r\n")
    raw.expect(bulk(b"it's"))
    raw.send(b'ECHO "\\x41\\x42\\n\\t\\\\\\"q"\r\n')
    raw.expect(bulk(b'AB\n\t\\"q'))
    raw.send(b'ECHO ""\r\n')
    raw.expect(bulk(b""))
    raw.send(b'ECHO a"b c"\r\n')
    raw.expect(bulk(b"ab c"))
    raw.send(b"PING  \t hello \r\n")
    raw.expect(bulk(b"hello"))
    raw.send(b"FOO bar baz\r\n")
    raw.expect(unknown(b"FOO", b"bar", b"baz"))


def test_pipelining_replies_in_order(raw: RawClient) -> None:
    requests, replies = [], []
    for i in range(600):
        payload = b"message %d \r\n\x00" % i
        kind = i % 4
        if kind == 0:
            requests.append(encode(b"PING"))
            replies.append(b"+PONG\r\n")
        elif kind == 1:
            requests.append(encode(b"ECHO", payload))
            replies.append(bulk(payload))
        elif kind == 2:
            requests.append(b"ECHO inline-%d\r\n" % i)
            replies.append(bulk(b"inline-%d" % i))
        else:
            requests.append(b"*0\r\n\r\n" + encode(b"PING", b"p%d" % i))
            replies.append(bulk(b"p%d" % i))
    raw.send(b"".join(requests))
    raw.expect(b"".join(replies))


def test_request_split_byte_by_byte(raw: RawClient) -> None:
    nodelay(raw)
    for request, reply in [
        (encode(b"ECHO", b"a\r\nb"), bulk(b"a\r\nb")),
        (b'ECHO "split \\x41"\r\n', bulk(b"split A")),
        (encode(b"PING") + b"PING\r\n", b"+PONG\r\n+PONG\r\n"),
    ]:
        for i in range(len(request)):
            raw.send(request[i:i + 1])
        raw.expect(reply)


def test_big_request_in_many_pieces(raw: RawClient) -> None:
    value = bytes(range(256)) * 2048  # 512 KiB with every byte value
    request = encode(b"ECHO", value)
    for i in range(0, len(request), 1000):
        raw.send(request[i:i + 1000])
    raw.expect(bulk(value))


# --- protocol errors --------------------------------------------------------------------

PROTOCOL_ERRORS = [
    (b"*abc\r\n", b"invalid multibulk length"),
    (b"*01\r\n", b"invalid multibulk length"),
    (b"*+1\r\n", b"invalid multibulk length"),
    (b"*-0\r\n", b"invalid multibulk length"),
    (b"*2147483648\r\n", b"invalid multibulk length"),
    (b"*4294967295\r\n", b"invalid multibulk length"),
    (b"*9223372036854775808\r\n", b"invalid multibulk length"),
    (b"*1\r\n:1\r\n", b"expected '$', got ':'"),
    (b"*1\r\n\r\n", b"expected '$', got ' '"),
    (b"*1\r\n\xff\r\n", b"expected '$', got '\xff'"),
    (b"*2\r\n$4\r\nECHO\r\n*2147483647\r\n", b"expected '$', got '*'"),
    (b"*2\r\n+0123456789\r\n=14\r\ntxt:0123456789\r\n", b"expected '$', got '+'"),
    (b"*1\r\n$-1\r\n", b"invalid bulk length"),
    (b"*1\r\n$01\r\n", b"invalid bulk length"),
    (b"*1\r\n$536870913\r\n", b"invalid bulk length"),
    (b'GET "a b"x\r\n', b"unbalanced quotes in request"),
    (b'ECHO "abc\r\n', b"unbalanced quotes in request"),
    (b"ECHO 'abc\r\n", b"unbalanced quotes in request"),
    (b"A" * (INLINE_MAX + 1), b"too big inline request"),
    (b"*" + b"1" * (INLINE_MAX + 1), b"too big mbulk count string"),
    (b"*1\r\n$" + b"1" * (INLINE_MAX + 1), b"too big bulk count string"),
]


@pytest.mark.parametrize(("bad", "reason"), PROTOCOL_ERRORS)
def test_protocol_error_replies_then_closes(raw: RawClient, respd_port: int, bad: bytes,
                                            reason: bytes) -> None:
    """The requests before the bad one run, the error is replied, the connection closes."""
    before = encode(b"PING") + b"ECHO before\r\n"
    after = encode(b"PING") + b"PING\r\n"
    raw.send(before + bad + (after if b"too big" not in reason else b""))
    assert raw.read_until_closed() == b"+PONG\r\n" + bulk(b"before") + protocol_error(reason)
    assert_serves(respd_port)


def test_protocol_error_in_a_later_read(raw: RawClient, respd_port: int) -> None:
    nodelay(raw)
    raw.send(b"PING\r\n*2\r\n$4\r\nECHO\r\n")
    raw.expect(b"+PONG\r\n")
    raw.send(b"$3\r\nabc\r\n*1\r\n")
    raw.expect(bulk(b"abc"))
    raw.send(b":1\r\nPING\r\n")
    assert raw.read_until_closed() == protocol_error(b"expected '$', got ':'")
    assert_serves(respd_port)


@contextlib.contextmanager
def respd_with_password() -> Iterator[int]:
    with running(port=0, bind=["127.0.0.1"], requirepass="secret") as url:
        yield urlparse(url).port


@pytest.mark.parametrize(("bad", "reason"), [
    (b"*11\r\n", b"unauthenticated multibulk length"),
    (b"*1\r\n$16385\r\n", b"unauthenticated bulk length"),
])
def test_unauthenticated_limits(bad: bytes, reason: bytes) -> None:
    with respd_with_password() as port:
        client = RawClient(port)
        client.send(b"PING\r\n" + bad)
        client.sock.shutdown(socket.SHUT_WR)  # without the limits, respd closes on EOF
        assert client.read_until_closed() == (b"-NOAUTH Authentication required.\r\n"
                                               + protocol_error(reason))
        client.close()


def test_unauthenticated_limits_end_with_auth() -> None:
    with respd_with_password() as port:
        client = RawClient(port)
        client.send(b"AUTH secret\r\n")
        client.expect(b"+OK\r\n")
        client.send(encode(b"ECHO", b"x" * 20000) + encode(*[b"PING"] + [b"p"] * 10))
        client.expect(bulk(b"x" * 20000) + err(b"wrong number of arguments for 'ping' command"))
        client.close()


# --- the same streams to respd and to redis-server --------------------------------------

# Each stream is sent, then the client half-closes: both servers answer what they can,
# close after a protocol error, or close when they see the end of the stream. The
# bytes up to the close are compared, with no waiting on a clock.

# Streams whose requests are all complete.
COMPLETE = [
    b"PING\r\n", b"PING\n", b"\r\n\r\nPING\r\n", b"   \r\n\t\r\n\n\r\r\nPING\r\n",
    b'ECHO "hello world"\r\n', b"ECHO 'it\\'s'\r\n", b'ECHO "\\x41\\x4a\\n\\t\\\\\\"q"\r\n',
    b'ECHO "\\x4g\\y"\r\n', b'ECHO ""\r\n', b'ECHO a"b c"\r\n', b"ECHO 'a\\nb'\r\n",
    b'ECHO "a"\x0bb\r\n', b"ECHO\x0bx\r\n", b"\x0bPING\x0c\r\n", b"PI\rNG\r\n",
    b"ECHO \xc3\xa9\xff\r\n", b"*0\r\n*-1\r\n*-5\r\n*-9223372036854775808\r\nPING\r\n",
    b"*1\r\n$4\r\nPINGXX", b"*1\rX$4\r\nPING\r\n", b"*2\r\n$4\r\nECHO\r\n$5\r\na\r\nb\x00\r\n",
    b"*2\r\n$4\r\nECHO\r\n$0\r\n\r\n",
    b"*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$1\r\nx\r\nECHO y\r\n",
    b"*1\r\n$4\r\nPING\r\n~1\r\n$4\r\nPING\r\n",
    b"*1\r\n$4\r\nPING\r\n|1\r\n$4\r\nECHO\r\n$2\r\nhi\r\n",
    b"*1\r\n$4\r\nPING\r\n%1\r\n*1\r\n$0\r\n\r\n", b">1\r\n$4\r\nPING\r\n", b"$4\r\nPING\r\n",
    b"FOO bar baz\r\n", b"*3\r\n$4\r\nECHO\r\n$1\r\na\r\n$1\r\nb\r\n",
    encode(b"PING") * 3 + QUIT + encode(b"PING"),
]
# Streams that break the protocol: both servers reply and close at once.
BROKEN = [
    b"PING\r\n*abc\r\nPING\r\n", b"*2147483648\r\n", b"*4294967295\r\n",
    b"*9223372036854775808\r\n", b"*01\r\n", b"*+1\r\n", b"* 1\r\n", b"*-0\r\n", b"*\r\n",
    b"*1\r\n:1\r\n", b"*1\r\n\r\n", b"*1\r\n\xff\r\n", b"*2\r\n$4\r\nECHO\r\n*1\r\n$1\r\na\r\n",
    b"*1\r\n*2147483647\r\n", b"*1\r\n$-1\r\n", b"*1\r\n$536870913\r\n", b"*1\r\n$01\r\n",
    b"*1\r\n$+4\r\nPING\r\n", b"*1\r\n$\r\n", b"*2\r\n+0123456789\r\n=14\r\ntxt:0123456789\r\n",
    b'get "a b"x\r\n', b'ECHO "abc\r\n', b"ECHO 'abc\r\n", b"ECHO 'a'b\r\n",
    b"A" * 70000, b"*" + b"1" * 65537, b"*1\r\n$" + b"1" * 65537, b"PING\r\n" + b"x" * 65537,
    b"PI\x00NG\r\n" + b"x" * 65537,
    b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n*1\r\n:1\r\n*1\r\n$4\r\nPING\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\n\r\n",
]
# Streams that end inside a request: both answer what came before, and wait for more.
WAITING = [
    b"PING\r\n*2\r\n$4\r\nECHO\r\n", b"PING\r\nPI\x00NG\r\nPING\r\n", b"PING\r\n*2147483647\r\n",
    b"PING\r\n*1\r\n$536870912\r\n", b"PING\r\n" + b"A" * INLINE_MAX, b"PING\r\n*1\r\n$4\r\nPI",
    b"PING\r\n*2\r\n$4\r\nECHO\r\n$3\r\nabc", b"*" + b"1" * INLINE_MAX,
]


def exchange(port: int, stream: bytes) -> bytes:
    """Send the stream, end it, and read everything the server says before it closes."""
    client = RawClient(port)
    try:
        client.send(stream)
        client.sock.shutdown(socket.SHUT_WR)
        return client.read_until_closed()
    except ConnectionResetError:
        pytest.fail(f"connection reset by the server on port {port}")
    finally:
        client.close()


@pytest.mark.parametrize("stream", COMPLETE + BROKEN + WAITING)
def test_same_bytes_as_redis(respd_port: int, redis_port: int, stream: bytes) -> None:
    assert exchange(respd_port, stream) == exchange(redis_port, stream)


# --- bad input never disturbs the server ------------------------------------------------

GOOD = [
    encode(b"PING"), encode(b"ECHO", b"hi\r\nthere"), b'ECHO "a b" \'c\'\r\n',
    encode(b"PUBLISH", b"news", b"x" * 30), encode(b"SUBSCRIBE", b"news"), b"PING\r\n",
    encode(b"PING", b"x" * 200),
]
NASTY = [
    b"*2147483647\r\n", b"*4294967295\r\n", b"*1\r\n*2147483647\r\n", b"*1\r\n%1\r\n*0\r\n",
    b"*1\r\n$4\r\nPING\r\n%1\r\n*1\r\n$0\r\n\r\n", b"*1\r\n$2147483647\r\n", b">99999999\r\n",
]


def random_stream(rng: random.Random) -> bytes:
    """A request stream damaged at random: flipped, cut, inserted bytes, or pure noise."""
    choice = rng.random()
    if choice < 0.1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
    if choice < 0.15:
        return rng.choice(NASTY)
    data = bytearray(b"".join(rng.choice(GOOD) for _ in range(rng.randint(1, 4))))
    for _ in range(rng.randint(1, 5)):
        if not data:
            break
        i = rng.randrange(len(data))
        action = rng.randrange(4)
        if action == 0:
            data[i] = rng.choice(b"*$\r\n0123456789-+: \"'\x00~|>%")
        elif action == 1:
            data[i] = rng.randrange(256)
        elif action == 2:
            del data[i:i + rng.randint(1, 8)]
        else:
            data[i:i] = rng.choice([b"*", b"$", b"\r\n", b"9999999999", b"-1", b'"', b"*-1"])
    return bytes(data)


def test_random_bad_input_never_disturbs_the_server(respd_port: int) -> None:
    rng = random.Random(20240607)
    good = RawClient(respd_port)
    try:
        for i in range(300):
            bad = socket.create_connection(("127.0.0.1", respd_port), timeout=DEADLINE)
            with bad:
                bad.sendall(random_stream(rng))
                bad.shutdown(socket.SHUT_WR)
                received = b""
                with contextlib.suppress(ConnectionResetError):
                    while chunk := bad.recv(65536):
                        received += chunk
                assert b"internal error" not in received
            payload = b"%d %s\r\n" % (i, rng.randbytes(rng.randrange(30)))
            good.send(encode(b"ECHO", payload) + b"PING\r\n")
            good.expect(bulk(payload) + b"+PONG\r\n")
    finally:
        good.close()
    assert_serves(respd_port)


def test_random_bad_input_same_bytes_as_redis(respd_port: int, redis_port: int) -> None:
    rng = random.Random(7)
    for _ in range(200):
        stream = random_stream(rng)
        assert exchange(respd_port, stream) == exchange(redis_port, stream), stream
