"""Client-side caching (CLIENT TRACKING): the same scenarios, byte for byte, against a real
redis-server and respd, and redis-py's client-side cache (protocol 3, cache_config)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest
import redis
from redis.cache import CacheConfig

from tests.conftest import DEADLINE, real_redis, wait_until
from tests.test_cluster import Raw

pytestmark = pytest.mark.timeout(60)

Step = tuple[str | bytes, ...]  # (connection name, command, arguments...)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[int]:
    """A real redis-server of this module's own, as the scenarios flush it."""
    with real_redis() as port:
        yield port


def _normalise(data: bytes) -> bytes:
    """Client ids differ between the two servers: hide them where tracking reports them."""
    data = re.sub(rb"(redirect\r\n:)[1-9]\d*", rb"\1<id>", data)
    data = re.sub(rb"(tracking-redir-broken\r\n:)\d+", rb"\1<id>", data)
    return re.sub(rb"^:[1-9]\d*\r\n$", b":<id>\r\n", data)


def play(port: int, protocols: dict[str, int], steps: list[Step]) -> list[tuple]:
    """Run the steps; after each, what every connection received (its reply, or the
    pushes and messages others' commands sent it). `{id:x}` stands for x's client id;
    a ("close", x) step closes x and waits until the server has let it go."""
    peers = {name: Raw(port, protocol) for name, protocol in protocols.items()}
    ids = {name: peer.command("CLIENT", "ID")[1:-2] for name, peer in peers.items()}
    admin = redis.Redis(port=port, protocol=2)
    record = []
    for name, *args in steps:
        if name == "close":
            gone = args[0]
            peers.pop(gone).close()
            wait_until(lambda gone=gone: not admin.client_list(client_id=[int(ids[gone])]),
                       message="the server to see the connection close")
            continue
        words = [ids[a[4:-1]] if isinstance(a, str) and a.startswith("{id:") else a
                 for a in args]
        outputs = {name: peers[name].command(*words)}
        for other, peer in peers.items():
            if other != name and not peer.queuing:
                outputs[other] = peer.drain()
        if tuple(args[:2]) in (("CLIENT", "GETREDIR"), ("CLIENT", "TRACKINGINFO"),
                               ("CLIENT", "ID")) \
                or b"tracking-redir-broken" in b"".join(outputs.values()):
            outputs = {k: _normalise(v) for k, v in outputs.items()}
        record.append(((name, *args), outputs))
    for peer in peers.values():
        peer.close()
    admin.close()
    return record


def check(redis_port: int, respd_port: int, protocols: dict[str, int],
          steps: list[Step]) -> None:
    theirs = play(redis_port, protocols, steps)
    ours = play(respd_port, protocols, steps)
    for expected, got in zip(theirs, ours, strict=True):
        assert got == expected


ERRORS: list[Step] = [
    ("a", "CLIENT", "TRACKING"), ("a", "CLIENT", "TRACKING", "maybe"),
    ("a", "CLIENT", "TRACKING", "on", "PREFIX", "a"),
    ("a", "CLIENT", "TRACKING", "on", "BCAST", "OPTIN"),
    ("a", "CLIENT", "TRACKING", "on", "OPTIN", "OPTOUT"),
    ("a", "CLIENT", "TRACKING", "on", "REDIRECT", "999999"),
    ("a", "CLIENT", "TRACKING", "on", "REDIRECT", "x"),
    ("a", "CLIENT", "TRACKING", "on", "REDIRECT", "0"),
    ("a", "CLIENT", "TRACKING", "on", "REDIRECT", "{id:b}", "REDIRECT", "{id:b}"),
    ("a", "CLIENT", "TRACKING", "on", "FOO"), ("a", "CLIENT", "TRACKING", "on", "PREFIX"),
    ("a", "CLIENT", "TRACKING", "on", "REDIRECT"),
    ("a", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "user:", "PREFIX", "us"),
    ("a", "CLIENT", "TRACKING", "off", "PREFIX", "x"),
    ("a", "CLIENT", "TRACKINGINFO"), ("a", "CLIENT", "GETREDIR"),
    ("a", "CLIENT", "TRACKINGINFO", "x"), ("a", "CLIENT", "GETREDIR", "x"),
    ("a", "CLIENT", "CACHING"), ("a", "CLIENT", "CACHING", "yes"),
    ("a", "CLIENT", "CACHING", "maybe"),
    ("a", "CLIENT", "TRACKING", "on"), ("a", "CLIENT", "TRACKINGINFO"),
    ("a", "CLIENT", "GETREDIR"), ("a", "CLIENT", "CACHING", "yes"),
    ("a", "CLIENT", "CACHING", "maybe"),
    ("a", "CLIENT", "TRACKING", "on", "BCAST"), ("a", "CLIENT", "TRACKING", "on", "OPTIN"),
    ("a", "CLIENT", "CACHING", "yes"), ("a", "CLIENT", "CACHING", "no"),
    ("a", "CLIENT", "TRACKINGINFO"),
    ("a", "CLIENT", "TRACKING", "on", "OPTOUT"),
    ("a", "CLIENT", "TRACKING", "off"), ("a", "CLIENT", "TRACKING", "off"),
    ("a", "CLIENT", "TRACKINGINFO"),
    ("a", "CLIENT", "TRACKING", "on", "OPTOUT", "NOLOOP"), ("a", "CLIENT", "CACHING", "yes"),
    ("a", "CLIENT", "CACHING", "no"), ("a", "CLIENT", "TRACKINGINFO"),
    ("a", "CLIENT", "TRACKING", "on", "OPTIN", "OPTIN"),
    ("a", "CLIENT", "TRACKING", "off"),
    ("a", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "b", "PREFIX", "a", "NOLOOP"),
    ("a", "CLIENT", "TRACKINGINFO"), ("a", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "c"),
    ("a", "CLIENT", "TRACKINGINFO"),
    ("a", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "ab"),
    ("a", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "x", "PREFIX", "c"),
    ("a", "CLIENT", "TRACKING", "on", "BCAST"), ("a", "CLIENT", "TRACKINGINFO"),
    ("a", "CLIENT", "TRACKING", "off"),
    ("a", "CLIENT", "TRACKING", "ON", "PREFIX", "x", "BCAST"), ("a", "CLIENT", "TRACKINGINFO"),
    ("a", "RESET"), ("a", "CLIENT", "TRACKINGINFO"), ("a", "CLIENT", "GETREDIR"),
    ("a", "CLIENT", "TRACKING", "on", "REDIRECT", "{id:b}"), ("a", "CLIENT", "GETREDIR"),
    ("a", "CLIENT", "TRACKINGINFO"),
]

DEFAULT_MODE: list[Step] = [
    ("a", "CLIENT", "TRACKING", "on"),
    ("a", "GET", "k1"), ("a", "MGET", "k2", "k3"), ("a", "EXISTS", "k4"), ("a", "TTL", "k5"),
    ("a", "STRLEN", "k6"), ("a", "GETRANGE", "k7", "0", "1"), ("a", "TYPE", "k8"),
    ("b", "SET", "k1", "v"), ("b", "SET", "k1", "v"),  # the second write: nothing
    ("b", "MSET", "k2", "1", "k3", "2"), ("b", "DEL", "k4"), ("b", "SET", "k5", "x"),
    ("b", "APPEND", "k6", "x"), ("b", "SETRANGE", "k7", "1", "x"), ("b", "INCR", "k8"),
    # what the client changes itself comes after the reply
    ("a", "GET", "s1"), ("a", "SET", "s1", "v"), ("a", "GET", "s1"), ("a", "INCR", "s1"),
    ("a", "GET", "s2"), ("a", "MSET", "s2", "1", "s3", "2"),
    # expiry commands, RENAME, and keys of other databases (tracked by name alone)
    ("b", "SET", "e1", "v"), ("a", "GET", "e1"), ("b", "EXPIRE", "e1", "100"),
    ("a", "GET", "e1"), ("b", "PERSIST", "e1"), ("a", "GET", "e1"), ("b", "PERSIST", "e1"),
    ("b", "RENAME", "e1", "e2"), ("a", "GET", "e3"), ("b", "SELECT", "3"),
    ("b", "SET", "e3", "x"), ("b", "SELECT", "0"),
    ("a", "GET", "w1"), ("b", "SETNX", "w1", "a"), ("b", "SETNX", "w1", "b"),
    # write commands do not track what they read
    ("a", "SET", "w2", "1", "GET"), ("b", "SET", "w2", "2"), ("a", "INCR", "w3"),
    ("b", "SET", "w3", "2"),
    # inside MULTI
    ("a", "MULTI"), ("a", "GET", "m1"), ("a", "SET", "m2", "x"), ("a", "EXEC"),
    ("b", "SET", "m1", "1"),
    # tracking off and on again: the keys read stay tracked
    ("a", "GET", "o1"), ("a", "CLIENT", "TRACKING", "off"), ("b", "SET", "o1", "x"),
    ("a", "GET", "o1"), ("a", "CLIENT", "TRACKING", "on"), ("b", "SET", "o1", "y"),
    # flushes: a null key list for every tracking client, the flusher after its reply
    ("a", "GET", "f1"), ("b", "FLUSHALL"), ("b", "FLUSHDB"), ("a", "FLUSHALL"),
    ("c", "CLIENT", "TRACKING", "on", "BCAST"), ("b", "FLUSHDB", "ASYNC"),
    ("c", "CLIENT", "TRACKING", "off"),
    # NOLOOP
    ("a", "CLIENT", "TRACKING", "on", "NOLOOP"), ("a", "GET", "n1"), ("a", "SET", "n1", "1"),
    ("b", "SET", "n1", "2"), ("a", "GET", "n2"), ("b", "SET", "n2", "2"),
    ("a", "FLUSHDB"),
]

OPTIN_OPTOUT: list[Step] = [
    ("a", "CLIENT", "TRACKING", "on", "OPTIN"),
    ("a", "GET", "i1"), ("a", "CLIENT", "CACHING", "yes"), ("a", "GET", "i2"),
    ("a", "GET", "i3"), ("b", "MSET", "i1", "1", "i2", "2", "i3", "3"),
    ("a", "CLIENT", "CACHING", "yes"), ("a", "CLIENT", "ID"), ("a", "CLIENT", "TRACKINGINFO"),
    ("a", "GET", "i4"), ("a", "CLIENT", "CACHING", "yes"), ("a", "PING"), ("a", "GET", "i5"),
    ("b", "MSET", "i4", "1", "i5", "2"),
    ("a", "CLIENT", "CACHING", "yes"), ("a", "MULTI"), ("a", "GET", "i6"),
    ("a", "GET", "i7"), ("a", "EXEC"), ("a", "GET", "i8"),
    ("b", "MSET", "i6", "1", "i7", "2", "i8", "3"),
    ("a", "CLIENT", "TRACKING", "off"),
    ("a", "CLIENT", "TRACKING", "on", "OPTOUT"),
    ("a", "GET", "u1"), ("a", "CLIENT", "CACHING", "no"), ("a", "GET", "u2"),
    ("a", "GET", "u3"), ("b", "MSET", "u1", "1", "u2", "2", "u3", "3"),
]

BCAST: list[Step] = [
    ("a", "CLIENT", "TRACKING", "on", "BCAST", "PREFIX", "user:", "PREFIX", "obj:"),
    ("b", "SET", "user:1", "x"), ("b", "SET", "other", "x"),
    ("b", "MSET", "user:4", "1", "obj:1", "2", "user:3", "3", "user:4", "5"),
    ("a", "SET", "user:5", "1"), ("b", "DEL", "user:1", "user:9"),
    ("b", "EXPIRE", "user:3", "100"),
    ("b", "MULTI"), ("b", "SET", "user:7", "1"), ("b", "SET", "obj:2", "1"), ("b", "EXEC"),
    ("c", "CLIENT", "TRACKING", "on", "BCAST", "NOLOOP"),
    ("c", "SET", "user:8", "1"), ("c", "MSET", "zz", "1", "obj:3", "1"),
    ("b", "FLUSHALL"),
]

REDIRECTS: list[Step] = [
    # a RESP2 client redirects to a RESP2 subscriber
    ("sub", "SUBSCRIBE", "__redis__:invalidate"),
    ("r2", "CLIENT", "TRACKING", "on", "REDIRECT", "{id:sub}"), ("r2", "CLIENT", "GETREDIR"),
    ("r2", "CLIENT", "TRACKINGINFO"), ("r2", "GET", "x1"), ("b", "SET", "x1", "1"),
    ("r2", "GET", "x2"), ("r2", "SET", "x2", "self"), ("b", "FLUSHDB"),
    # to a RESP3 client, and to a RESP2 client that is not subscribed (nothing)
    ("r2", "CLIENT", "TRACKING", "on", "REDIRECT", "{id:r3}"), ("r2", "GET", "x3"),
    ("b", "SET", "x3", "1"),
    ("r2", "CLIENT", "TRACKING", "on", "REDIRECT", "{id:plain}"), ("r2", "GET", "x4"),
    ("b", "SET", "x4", "1"),
    # a RESP2 client without redirection gets nothing, even when subscribed
    ("r2", "CLIENT", "TRACKING", "on"), ("r2", "GET", "x5"), ("b", "SET", "x5", "1"),
    ("r2", "SUBSCRIBE", "other"), ("r2", "GET", "x6"), ("b", "SET", "x6", "1"),
    # a redirect whose target has gone
    ("a", "CLIENT", "TRACKING", "on", "REDIRECT", "{id:target}"), ("a", "GET", "y1"),
    ("close", "target"), ("a", "CLIENT", "TRACKINGINFO"), ("b", "SET", "y1", "1"),
    ("a", "CLIENT", "TRACKINGINFO"), ("a", "CLIENT", "GETREDIR"), ("a", "GET", "y2"),
    ("b", "SET", "y2", "1"), ("b", "FLUSHALL"),
]

SCENARIOS = {
    "errors": ({"a": 2, "b": 2}, ERRORS),
    "errors-resp3": ({"a": 3, "b": 2}, ERRORS),
    "default-mode": ({"a": 3, "b": 3, "c": 3}, DEFAULT_MODE),
    "optin-optout": ({"a": 3, "b": 2}, OPTIN_OPTOUT),
    "bcast": ({"a": 3, "b": 2, "c": 3}, BCAST),
    "redirects": ({"sub": 2, "r2": 2, "r3": 3, "plain": 2, "a": 3, "target": 3, "b": 2},
                  REDIRECTS),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_same_bytes_as_redis(scenario: str, redis_server: int, respd) -> None:
    protocols, steps = SCENARIOS[scenario]
    check(redis_server, respd.port, protocols, steps)


def test_client_list_and_info_show_tracking(respd) -> None:
    r = respd.client(protocol=2)
    other = respd.client(protocol=2)
    r.client_tracking_on(bcast=True)
    line = r.client_info()
    assert (line["flags"], line["redir"]) == ("tB", "0")
    r.execute_command("CLIENT", "TRACKING", "off")
    r.client_tracking_on(clientid=other.client_id())
    assert (r.client_info()["flags"], r.client_info()["redir"]) == ("t", str(other.client_id()))
    assert r.client_info()["redir"] == str(other.client_id())
    assert other.client_info()["redir"] == "-1"
    r.get("a")
    other.get("b")
    info = other.info()
    assert info["tracking_clients"] == 1
    assert (info["tracking_total_keys"], info["tracking_total_items"],
            info["tracking_total_prefixes"]) == (1, 1, 0)


def test_a_broken_redirect_shows_in_client_list(respd) -> None:
    r = respd.client(protocol=2)
    target = respd.client(protocol=2)
    r.client_tracking_on(clientid=target.client_id())
    r.get("k")
    respd.drop_clients([target.client_id()])
    r.set("k", "v")
    assert r.client_info()["flags"] == "tR"


def test_the_table_is_bounded(respd) -> None:
    r = respd.client(protocol=3)
    r.config_set("tracking-table-max-keys", 2)
    r.client_tracking_on()
    for key in ("a", "b", "c"):
        r.get(key)
    assert respd.client().info("stats")["tracking_total_keys"] == 2


def test_expiry_and_eviction_invalidate(respd) -> None:
    r = respd.client(protocol=3)
    r.client_tracking_on()
    other = respd.client()
    other.set("soon", "v", px=50)
    other.set("evicted", "v")
    assert r.get("soon") == b"v"
    assert r.get("evicted") == b"v"
    received: list[object] = []
    conn = r.connection_pool.get_connection()
    conn._parser.set_invalidation_push_handler(received.append)

    def invalidated(key: bytes) -> bool:
        conn.read_response(push_request=True, timeout=0.1) if conn.can_read(0.05) else None
        return [b"invalidate", [key]] in received

    wait_until(lambda: invalidated(b"soon"), message="the expiry's invalidation")
    other.config_set("maxmemory-policy", "allkeys-random")
    other.config_set("maxmemory", 1)
    wait_until(lambda: invalidated(b"evicted"), message="the eviction's invalidation")
    r.connection_pool.release(conn)


# --- redis-py's client-side cache -------------------------------------------------------

@pytest.fixture
def cached(respd) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(respd.url, protocol=3, cache_config=CacheConfig())
    yield client
    client.close()


def hits(respd) -> int:
    """How many reads reached the server and found their key (since the last call)."""
    r = respd.client()
    found = r.info("stats")["keyspace_hits"]
    r.config_resetstat()
    return found


def test_redis_py_cache_hits_and_invalidations(respd, cached: redis.Redis) -> None:
    other = respd.client()
    other.set("price", "10")
    hits(respd)
    assert cached.get("price") == b"10"
    assert cached.get("price") == b"10"  # from the client's cache
    assert hits(respd) == 1
    other.set("price", "12")  # the server invalidates; the next read goes to it
    assert cached.get("price") == b"12"
    assert cached.get("price") == b"12"
    assert hits(respd) == 1
    cached.set("price", "15")  # its own write invalidates too
    assert cached.get("price") == b"15"
    assert hits(respd) == 1


def test_redis_py_cache_after_flush_and_expiry(respd, cached: redis.Redis) -> None:
    other = respd.client()
    other.mset({"a": "1", "b": "2"})
    assert cached.mget("a", "b") == [b"1", b"2"]
    assert cached.get_cache().size == 1
    other.flushall()
    assert cached.mget("a", "b") == [None, None]
    other.set("short", "v", px=50)
    assert cached.get("short") == b"v"
    wait_until(lambda: cached.get("short") is None, timeout=DEADLINE,
               message="the expired key to leave the client's cache")


def test_redis_py_cache_with_the_plugin_protocol(respd) -> None:
    """The fixture's URL carries the RESP version: protocol 3 is what caching needs."""
    assert respd.protocol == 3
    client = redis.Redis.from_url(respd.url, cache_config=CacheConfig())
    respd.client().set("k", "v")
    hits(respd)
    assert client.get("k") == client.get("k") == b"v"
    assert hits(respd) == 1
    client.close()


@pytest.mark.skipif(shutil.which("redis-cli") is None, reason="redis-cli is not installed")
def test_redis_cli_session_matches_redis(redis_server: int, respd) -> None:
    """redis-cli in RESP3 mode: tracking commands print the same against both servers."""
    session = ("FLUSHALL\nCLIENT TRACKING ON BCAST PREFIX user: NOLOOP\nCLIENT TRACKINGINFO\n"
               "CLIENT GETREDIR\nSET user:1 x\nCLIENT TRACKING OFF\nCLIENT TRACKING ON OPTIN\n"
               "CLIENT CACHING yes\nGET k\nCLIENT TRACKINGINFO\nCLIENT CACHING no\n")
    outputs = [subprocess.run(["redis-cli", "-3", "-p", str(port)], input=session, text=True,
                              capture_output=True, timeout=DEADLINE, check=True).stdout
               for port in (redis_server, respd.port)]
    assert outputs[1] == outputs[0]
