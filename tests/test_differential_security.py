"""Differential tests for authentication, ACLs, limits and exposure: the same raw RESP
to respd and to a real redis-server started with the same options, compared byte for
byte (with the machinery of test_differential), under RESP2 and RESP3.

Where Redis 7.0 (the reference server here) and Redis 7.4 (what respd answers as)
word an error differently, a step asserts the documented 7.4 text instead. Each pair of
servers belongs to this module, so scenarios may set passwords and make users freely.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlparse

import pytest

from server.serve import running
from tests.conftest import RawClient, real_redis
from tests.test_differential import (
    Step,
    cmd,
    differential,
    encode,
    hello_shape,
    raw,
    sorted_elements,
)

pytestmark = pytest.mark.timeout(60)

REDIS_7_4_HELLO_NOAUTH = (b"-NOAUTH HELLO must be called with the client already authenticated,"
                          b" otherwise the HELLO <proto> AUTH <user> <pass> option can be used to"
                          b" authenticate the client and select the RESP protocol version at the"
                          b" same time\r\n")


@dataclass(frozen=True)
class Pair:
    redis: int  # a real redis-server's port
    respd: int


@contextlib.contextmanager
def pair(**options: str) -> Iterator[Pair]:
    """redis-server and respd, both on loopback with the same options."""
    args = [item for name, value in options.items()
            for item in (f"--{name.replace('_', '-')}", value)]
    with real_redis(*args) as redis_port, \
            running(port=0, bind=["127.0.0.1"], **options) as url:
        yield Pair(redis_port, urlparse(url).port)


@pytest.fixture(scope="module")
def password_pair() -> Iterator[Pair]:
    with pair(requirepass="s3cret") as servers:
        yield servers


@pytest.fixture(scope="module")
def open_pair() -> Iterator[Pair]:
    with pair() as servers:
        yield servers


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def proto(request: pytest.FixtureRequest) -> int:
    return request.param


def compare(servers: Pair, steps: list[Step], proto: int) -> None:
    differential(steps, proto, servers.respd, servers.redis)


# --- requirepass: NOAUTH, AUTH, HELLO AUTH, the limits before AUTH ----------------------

def pipeline(*commands: tuple[str, ...]) -> bytes:
    """Several requests in one write, the last one QUIT (allowed before AUTH), so that a
    step can read everything up to the server closing the connection."""
    return b"".join(encode(*c) for c in (*commands, ("QUIT",)))


@pytest.mark.parametrize("step", [
    raw("c", pipeline(("PING",), ("GET", "k"), ("SUBSCRIBE", "a"), ("CLIENT", "ID"),
                      ("ACL", "WHOAMI"), ("NOSUCH", "x"), ("GET",), ("MULTI",), ("PING",),
                      ("EXEC",)), closes=True),
    raw("c", pipeline(("HELLO", "3", "AUTH", "default", "wrong"), ("AUTH", "wrong"),
                      ("AUTH", "default", "wrong"), ("AUTH", "nobody", "s3cret"),
                      ("AUTH", "a", "b", "c"), ("AUTH", "s3cret"), ("ACL", "WHOAMI"),
                      ("PING",), ("RESET",), ("PING",), ("AUTH", "default", "s3cret"),
                      ("PING",)), closes=True),
    raw("c", pipeline(("HELLO", "3")), closes=True,
        expect=REDIS_7_4_HELLO_NOAUTH + b"+OK\r\n<EOF>"),
    raw("c", pipeline(("HELLO", "2", "AUTH", "default", "s3cret"), ("AUTH", "s3cret")),
        closes=True, check=hello_shape),
], ids=["noauth", "auth-forms", "hello-noauth", "hello-auth"])
def test_noauth_and_auth(password_pair: Pair, step: Step) -> None:
    # Before AUTH the PING that ends each step is refused too: each step is one pipeline
    # on a connection of its own, read until QUIT closes it.
    compare(password_pair, [step], 2)


@pytest.mark.parametrize("data", [b"*11\r\n", b"*1\r\n$16385\r\n",
                                  b"*2\r\n$3\r\nGET\r\n$99999\r\n"],
                         ids=["multibulk", "bulk", "bulk-in-command"])
def test_limits_before_auth(password_pair: Pair, data: bytes) -> None:
    compare(password_pair, [raw("c", b"PING\r\n" + data, closes=True)], 2)


def test_limits_after_auth_in_the_same_write(password_pair: Pair) -> None:
    """Requests that follow AUTH in one write are read with the limits of an
    authenticated client, as Redis reads each request after running the one before."""
    compare(password_pair, [raw("c", pipeline(
        ("PING",), ("AUTH", "s3cret"),
        ("MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5"),
        ("SET", "big", "x" * 20000), ("STRLEN", "big"), ("MGET", "a", "e")), closes=True)], 2)


# --- ACL: users, rules, errors, NOPERM ---------------------------------------------------

def test_acl_setuser_errors(open_pair: Pair, proto: int) -> None:
    compare(open_pair, [
        cmd("c", "ACL", "SETUSER", "a b"), cmd("c", "ACL", "SETUSER", "x\x00y"),
        cmd("c", "ACL", "SETUSER", "alice", "bogus"),
        cmd("c", "ACL", "SETUSER", "alice", "+nosuch"),
        cmd("c", "ACL", "SETUSER", "alice", "+@nosuch"),
        cmd("c", "ACL", "SETUSER", "alice", "&*", "&x"),
        cmd("c", "ACL", "SETUSER", "alice", "~*", "~x"),
        cmd("c", "ACL", "SETUSER", "alice", "<nopw"), cmd("c", "ACL", "SETUSER", "alice", "#abc"),
        cmd("c", "ACL", "SETUSER", "alice", "!" + "a" * 64),
        cmd("c", "ACL", "SETUSER", "alice", "+config|get|x"),
        cmd("c", "ACL", "SETUSER", "alice", "+client|nosuch"),
        cmd("c", "ACL", "SETUSER", "alice", "-select|0"),
        cmd("c", "ACL", "SETUSER", "alice", "+select|"),
        cmd("c", "ACL", "SETUSER", "alice", "%X~a"), cmd("c", "ACL", "SETUSER", "alice", "~a b"),
        cmd("c", "ACL", "USERS"),  # every failure above left no user behind
        cmd("c", "ACL", "DELUSER", "default"), cmd("c", "ACL", "DELUSER", "nobody", "default"),
        cmd("c", "ACL", "DELUSER", "nobody"),
        cmd("c", "ACL", "CAT", "nosuch"), cmd("c", "ACL", "CAT", "a", "b"),
        cmd("c", "ACL", "CAT", check=sorted_elements),
        cmd("c", "ACL", "CAT", "pubsub", check=sorted_elements),
        cmd("c", "ACL", "GENPASS", "0"), cmd("c", "ACL", "GENPASS", "x"),
        cmd("c", "ACL", "GENPASS", "4097"), cmd("c", "ACL", "GENPASS", "1", "2"),
        cmd("c", "ACL", "LOAD"), cmd("c", "ACL", "SAVE"),
        cmd("c", "ACL", "DRYRUN", "nobody", "get", "x"),
        cmd("c", "ACL", "DRYRUN", "default", "nosuch", "x"),
        cmd("c", "ACL", "DRYRUN", "default", "get"),
        cmd("c", "ACL", "DRYRUN", "default", "client", "nosuch"),
        cmd("c", "ACL", "DRYRUN", "default", "get", "x"),
        cmd("c", "ACL", "WHOAMI"), cmd("c", "ACL", "NOSUCH"), cmd("c", "ACL", "HELP", "x"),
    ], proto)


def dryrun(reason: bytes) -> bytes:
    """ACL DRYRUN's bulk reply with Redis 7.4's reason (7.0 says "This user ...")."""
    return b"$%d\r\n%b\r\n" % (len(reason), reason)


def test_a_user_confined_to_channels(open_pair: Pair, proto: int) -> None:
    nochan = b"-NOPERM No permissions to access a channel\r\n"
    compare(open_pair, [
        # PING too: each step ends with one, to collect what every connection received.
        cmd("admin", "ACL", "SETUSER", "alice", "reset", "on", ">pw", "+@pubsub", "+ping",
            "+acl|whoami", "&news.*", "~k*"),
        cmd("admin", "ACL", "USERS"),
        cmd("c", "AUTH", "alice", "wrong"), cmd("c", "AUTH", "alice", "pw"),
        cmd("c", "ACL", "WHOAMI"), cmd("c", "PUBLISH", "news.a", "x"),
        cmd("c", "PUBLISH", "nope", "x", expect=nochan),
        cmd("c", "SPUBLISH", "nope", "x", expect=nochan),
        cmd("c", "SUBSCRIBE", "news.b", "other", expect=nochan),
        cmd("c", "PSUBSCRIBE", "news*", expect=nochan),
        cmd("c", "GET", "k", expect=b"-NOPERM User alice has no permissions to run the 'get' "
                                    b"command\r\n"),
        cmd("c", "CLIENT", "ID", expect=b"-NOPERM User alice has no permissions to run the "
                                         b"'client|id' command\r\n"),
        cmd("c", "NOSUCH"), cmd("c", "PUBLISH", "a"),  # unknown and arity come first
        cmd("c", "PSUBSCRIBE", "news.*"), cmd("admin", "PUBLISH", "news.c", "hello"),
        cmd("c", "UNSUBSCRIBE", "anything"), cmd("c", "PUNSUBSCRIBE"),
        cmd("admin", "ACL", "DRYRUN", "alice", "publish", "news.x", "m"),
        cmd("admin", "ACL", "DRYRUN", "alice", "publish", "other", "m",
            expect=dryrun(b"User alice has no permissions to access the 'other' channel")),
        cmd("admin", "ACL", "DRYRUN", "alice", "get", "zz",
            expect=dryrun(b"User alice has no permissions to run the 'get' command")),
        cmd("admin", "ACL", "SETUSER", "alice", "+get"),
        cmd("c", "GET", "k1"),
        cmd("c", "GET", "zz", expect=b"-NOPERM No permissions to access a key\r\n"),
        cmd("admin", "ACL", "DRYRUN", "alice", "get", "zz",
            expect=dryrun(b"User alice has no permissions to access the 'zz' key")),
        cmd("admin", "CLIENT", "KILL", "USER", "nobody"),
        cmd("admin", "ACL", "DELUSER", "alice"),  # alice's connection is closed
        cmd("c", "PING"),
    ], proto)


def test_channel_permissions_taken_away(open_pair: Pair) -> None:
    compare(open_pair, [
        cmd("admin", "ACL", "SETUSER", "bob", "reset", "on", "nopass", "+@all", "&a*"),
        cmd("s", "AUTH", "bob", "x"), cmd("s", "SUBSCRIBE", "apple"),
        cmd("admin", "ACL", "SETUSER", "bob", "&b*"),  # a superset: bob stays
        cmd("admin", "PUBLISH", "apple", "1"),
        cmd("admin", "ACL", "SETUSER", "bob", "resetchannels", "&b*"),  # bob goes
        cmd("admin", "PUBLISH", "apple", "2"),
        cmd("admin", "ACL", "DELUSER", "bob"),
    ], 2)


def test_default_user_password_by_acl(open_pair: Pair) -> None:
    compare(open_pair, [
        cmd("admin", "ACL", "SETUSER", "default", ">pw"),
        cmd("admin", "PING"),  # already authenticated
        cmd("admin", "AUTH", "pw"), cmd("admin", "AUTH", "default", "pw"),
        cmd("admin", "ACL", "SETUSER", "default", "nopass"),
        cmd("admin", "AUTH", "x"),
    ], 2)


# --- CONFIG SET of the limits and security parameters ----------------------------------

def test_config_set_errors(open_pair: Pair, proto: int) -> None:
    compare(open_pair, [
        cmd("c", "CONFIG", "SET", "proto-max-bulk-len", "100"),
        cmd("c", "CONFIG", "SET", "proto-max-bulk-len", "-1"),
        cmd("c", "CONFIG", "SET", "client-query-buffer-limit", "100"),
        cmd("c", "CONFIG", "SET", "timeout", "-1"), cmd("c", "CONFIG", "SET", "timeout", "x"),
        cmd("c", "CONFIG", "SET", "tcp-keepalive", "-1"),
        cmd("c", "CONFIG", "SET", "client-output-buffer-limit", "pubsub 1 2"),
        cmd("c", "CONFIG", "SET", "client-output-buffer-limit", "foo 1 2 3"),
        cmd("c", "CONFIG", "SET", "client-output-buffer-limit", "pubsub 1x 2 3"),
        cmd("c", "CONFIG", "SET", "tls-auth-clients", "maybe"),
        cmd("c", "CONFIG", "SET", "acl-pubsub-default", "x"),
        cmd("c", "CONFIG", "SET", "protected-mode", "maybe"),
        cmd("c", "CONFIG", "SET", "unixsocket", "/tmp/x"),
        cmd("c", "CONFIG", "SET", "unixsocketperm", "777"),
        cmd("c", "CONFIG", "SET", "tcp-backlog", "5"), cmd("c", "CONFIG", "SET", "pidfile", "x"),
        cmd("c", "CONFIG", "SET", "logfile", "x"), cmd("c", "CONFIG", "SET", "daemonize", "no"),
        cmd("c", "CONFIG", "GET", "client-output-buffer-limit"),
        *(cmd("c", "CONFIG", "GET", name) for name in (
            "protected-mode", "tcp-keepalive", "timeout", "acl-pubsub-default", "unixsocket",
            "unixsocketperm", "tls-port", "tls-auth-clients", "tls-cert-file", "tls-protocols",
            "requirepass", "shutdown-timeout", "tcp-backlog", "pidfile", "logfile",
            "daemonize", "maxclients", "client-query-buffer-limit", "proto-max-bulk-len")),
        cmd("c", "SHUTDOWN", "ABORT"), cmd("c", "SHUTDOWN", "NOSAVE", "SAVE"),
        cmd("c", "SHUTDOWN", "FOO"),
    ], proto)


def test_changed_limits_apply_to_open_connections(open_pair: Pair) -> None:
    compare(open_pair, [
        cmd("admin", "CONFIG", "SET", "proto-max-bulk-len", "1mb"),
        raw("c", b"*2\r\n$4\r\nECHO\r\n$1048577\r\n", closes=True),
        cmd("admin", "CONFIG", "SET", "proto-max-bulk-len", "512mb"),
    ], 2)


def test_query_buffer_limit_closes_without_a_reply(open_pair: Pair) -> None:
    """Past client-query-buffer-limit the client is dropped with no reply (and with what
    it is still sending unread, so it may see a reset rather than an end of file)."""
    seen = []
    for port in (open_pair.redis, open_pair.respd):
        admin = RawClient(port)
        admin.send(b"CONFIG SET client-query-buffer-limit 1mb\r\n")
        admin.expect(b"+OK\r\n")
        client = RawClient(port)
        with contextlib.suppress(OSError):
            client.send(b"PING\r\n*2\r\n$3\r\nSET\r\n$5000000\r\n" + b"x" * 1_100_000)
        try:
            seen.append(client.read_until_closed())
        except ConnectionResetError:
            seen.append(client.buffer + b"<reset>")
        client.close()
        admin.send(b"CONFIG SET client-query-buffer-limit 1gb\r\n")
        admin.expect(b"+OK\r\n")
        admin.close()
    assert all(got.startswith(b"+PONG\r\n") for got in seen), seen
    assert {got.removesuffix(b"<reset>") for got in seen} == {b"+PONG\r\n"}


# --- raw comparisons: maxclients and protected mode --------------------------------------

def _first_bytes(port: int, host: str = "127.0.0.1") -> bytes:
    """What a server sends a new connection before it is asked anything, until it closes."""
    client = RawClient(port, host)
    try:
        return client.read_until_closed()
    except ConnectionResetError:
        return b"<reset>"
    finally:
        client.close()


def test_max_number_of_clients(open_pair: Pair) -> None:
    replies = []
    for port in (open_pair.redis, open_pair.respd):
        admin = RawClient(port)
        admin.send(b"CONFIG SET maxclients 1\r\n")
        admin.expect(b"+OK\r\n")
        replies.append(_first_bytes(port))
        admin.send(b"CONFIG SET maxclients 10000\r\n")
        admin.expect(b"+OK\r\n")
        admin.close()
    assert replies[0] == replies[1] == b"-ERR max number of clients reached\r\n"


def _outside_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_protected_mode_denial() -> None:
    outside = _outside_address()
    if outside is None:
        pytest.skip("no non-loopback address on this host")
    with real_redis(bind="0.0.0.0") as redis_port, \
            running(port=0, bind=["0.0.0.0"]) as url:
        theirs = _first_bytes(redis_port, outside)
        ours = _first_bytes(urlparse(url).port, outside)
    assert theirs.startswith(b"-DENIED Redis is running in protected mode")
    assert ours == theirs
