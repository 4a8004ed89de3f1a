"""redis-py (sync) against respd over real sockets, under RESP2 and RESP3.

Every assertion is what redis-py sees from Redis 7 (checked against a real
redis-server); nothing here knows how respd is built.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.serve import running
from tests.conftest import DEADLINE, SUBSCRIBED_ONLY, wait_until

pytestmark = pytest.mark.timeout(60)

@pytest.fixture
def r(respd_port: int, protocol: int) -> Iterator[redis.Redis]:
    """A client for commands and publishing, in the protocol under test."""
    client = redis.Redis(port=respd_port, protocol=protocol)
    yield client
    client.close()


@pytest.fixture
def pubsubs(r: redis.Redis) -> Iterator[list[redis.client.PubSub]]:
    """A list the test adds PubSub objects to; all are closed afterwards."""
    made: list[redis.client.PubSub] = []
    yield made
    for p in made:
        p.close()


def new_pubsub(r: redis.Redis, pubsubs: list, **kwargs: Any) -> redis.client.PubSub:
    p = r.pubsub(**kwargs)
    pubsubs.append(p)
    return p


def next_message(p: redis.client.PubSub, timeout: float = DEADLINE,
                 **kwargs: Any) -> dict[str, Any]:
    """The next frame get_message() gives, waiting up to the deadline."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        message = p.get_message(timeout=0.5, **kwargs)
        if message is not None:
            return message
    raise AssertionError("timed out waiting for a pub/sub message")


def frame(kind: str, channel: bytes | None, data: Any, pattern: bytes | None = None) -> dict:
    return {"type": kind, "pattern": pattern, "channel": channel, "data": data}


def numsub(r: redis.Redis, channel: str) -> int:
    return dict(r.pubsub_numsub(channel))[channel.encode()]


# --- the handshake and connection commands ----------------------------------------

def test_default_client_says_hello_3(respd_port: int) -> None:
    """redis-py 8 speaks RESP3 unless told otherwise: HELLO 3 must succeed."""
    r = redis.Redis(port=respd_port)
    try:
        hello = r.execute_command("HELLO")
        assert hello[b"proto"] == 3
        assert hello[b"server"] == b"redis"
        assert hello[b"version"] == b"7.4.0"
        assert hello[b"id"] == r.client_id()
        assert r.client_info()["resp"] == "3"
    finally:
        r.close()


def test_protocol_selected(r: redis.Redis, protocol: int) -> None:
    hello = r.execute_command("HELLO")
    if protocol == 2:  # RESP2 has no maps: a flat array of field, value
        hello = dict(zip(hello[::2], hello[1::2], strict=True))
    assert hello[b"proto"] == protocol
    assert hello[b"mode"] == b"standalone"
    assert hello[b"role"] == b"master"
    assert hello[b"modules"] == []
    assert r.client_info()["resp"] == str(protocol)


def test_health_check_ping_before_hello(respd_port: int, protocol: int) -> None:
    """With a health-check interval the first PING goes out before HELLO."""
    r = redis.Redis(port=respd_port, protocol=protocol, health_check_interval=30)
    try:
        assert r.ping() is True
        assert r.client_info()["resp"] == str(protocol)
    finally:
        r.close()


def test_ping_and_echo(r: redis.Redis) -> None:
    assert r.ping() is True
    assert r.echo("hello") == b"hello"
    assert r.echo(b"\x00\r\n\xff") == b"\x00\r\n\xff"
    assert r.echo("") == b""


def test_client_name_and_id(r: redis.Redis, respd_port: int, protocol: int) -> None:
    assert r.client_getname() is None
    assert r.client_setname("worker-1") is True
    assert r.client_getname() in ("worker-1", b"worker-1")
    with pytest.raises(redis.ResponseError) as raised:
        r.client_setname("has space")
    assert str(raised.value) == ("Client names cannot contain spaces, newlines or special "
                                 "characters.")
    other = redis.Redis(port=respd_port, protocol=protocol)
    try:
        assert isinstance(r.client_id(), int)
        assert other.client_id() > r.client_id()
    finally:
        other.close()


def test_client_name_given_by_the_client(respd_port: int, protocol: int) -> None:
    r = redis.Redis(port=respd_port, protocol=protocol, client_name="named")
    try:
        assert r.client_info()["name"] == "named"
    finally:
        r.close()


def test_client_list_shows_the_handshake(r: redis.Redis, respd_port: int,
                                         protocol: int) -> None:
    """CLIENT SETINFO from the handshake shows in CLIENT LIST, with the protocol."""
    r.client_setname("lister")
    my_id = r.client_id()
    other = redis.Redis(port=respd_port, protocol=protocol)
    try:
        other_id = other.client_id()
        clients = {int(c["id"]): c for c in r.client_list()}
        assert {my_id, other_id} <= clients.keys()
        mine = clients[my_id]
        assert mine["name"] == "lister"
        assert mine["lib-name"] == "redis-py"
        assert mine["lib-ver"] == redis.__version__
        assert mine["resp"] == str(protocol)
        assert mine["cmd"] == "client|list"
        assert mine["flags"] == "N"
        host, port = mine["laddr"].rsplit(":", 1)
        assert (host, int(port)) == ("127.0.0.1", respd_port)
        assert [int(c["id"]) for c in r.client_list(client_id=[other_id])] == [other_id]
    finally:
        other.close()


def test_client_setinfo(r: redis.Redis) -> None:
    assert r.client_setinfo("LIB-NAME", "mylib") is True
    assert r.client_setinfo("lib-ver", "1.2.3") is True
    info = r.client_info()
    assert (info["lib-name"], info["lib-ver"]) == ("mylib", "1.2.3")
    with pytest.raises(redis.ResponseError) as raised:
        r.client_setinfo("LIB-NAME", "my lib")
    assert str(raised.value) == "LIB-NAME cannot contain spaces, newlines or special characters."
    with pytest.raises(redis.ResponseError) as raised:
        r.client_setinfo("colour", "red")
    assert str(raised.value) == "Unrecognized option 'colour'"


def test_info(r: redis.Redis, respd_port: int) -> None:
    info = r.info()
    assert info["redis_version"] == "7.4.0"  # a string, not a number
    assert info["redis_mode"] == "standalone"
    assert info["tcp_port"] == respd_port
    assert info["connected_clients"] >= 1
    assert isinstance(info["uptime_in_seconds"], int)
    assert info["role"] == "master"
    server = r.info("server")
    assert server["redis_version"] == "7.4.0"
    assert "connected_clients" not in server
    assert set(r.info("clients", "stats")) >= {"connected_clients", "pubsub_channels"}


def test_info_counts_pubsub(r: redis.Redis, pubsubs: list) -> None:
    p = new_pubsub(r, pubsubs)
    p.subscribe("a", "b")
    p.psubscribe("p*")
    wait_until(lambda: r.info("stats")["pubsub_patterns"] == 1, message="PSUBSCRIBE")
    stats = r.info("stats")
    assert (stats["pubsub_channels"], stats["pubsub_patterns"]) == (2, 1)


def test_config_get_and_set(r: redis.Redis) -> None:
    assert r.config_get("maxclients") == {"maxclients": "10000"}
    assert r.config_set("maxclients", 50) is True
    assert r.config_get("maxclients") == {"maxclients": "50"}
    assert r.config_get("maxclients")["maxclients"] == "50"
    assert "maxmemory-policy" in r.config_get("max*")
    assert r.config_get("client-output-buffer-limit") == {
        "client-output-buffer-limit": "normal 0 0 0 slave 268435456 67108864 60 "
                                      "pubsub 33554432 8388608 60"}
    with pytest.raises(redis.ResponseError) as raised:
        r.config_set("nosuch", 1)
    assert str(raised.value) == "Unknown option or number of arguments for CONFIG SET - 'nosuch'"
    with pytest.raises(redis.ResponseError) as raised:
        r.config_set("maxclients", "many")
    assert str(raised.value) == ("CONFIG SET failed (possibly related to argument 'maxclients') "
                                 "- argument couldn't be parsed into an integer")


def test_time(r: redis.Redis) -> None:
    seconds, microseconds = r.time()
    assert 0 <= microseconds < 1_000_000
    assert abs(seconds - time.time()) < 3600  # the same clock, not a timing check


def test_command_count(r: redis.Redis) -> None:
    count = r.command_count()
    assert isinstance(count, int)
    assert count == len(r.command())
    assert {"publish", "subscribe", "ping", "client", "pubsub"} <= set(r.command())


def test_command_list_names_subcommands(r: redis.Redis) -> None:
    """Redis's COMMAND LIST has every command and subcommand (`config|get`)."""
    names = {n.decode() for n in r.command_list()}
    assert {"publish", "client|id", "pubsub|numsub", "config|get"} <= names
    assert len([n for n in names if "|" not in n]) == r.command_count()


def test_pubsub_ignores_the_database(r: redis.Redis, respd_port: int, protocol: int,
                                     pubsubs: list) -> None:
    """SELECT (sent by the handshake for db=3) does not partition pub/sub."""
    other_db = redis.Redis(port=respd_port, protocol=protocol, db=3)
    try:
        assert other_db.client_info()["db"] == 3
        p = new_pubsub(r, pubsubs)
        p.subscribe("everywhere")
        assert next_message(p) == frame("subscribe", b"everywhere", 1)
        assert other_db.publish("everywhere", "from db 3") == 1
        assert next_message(p) == frame("message", b"everywhere", b"from db 3")
    finally:
        other_db.close()


@pytest.fixture
def password_port() -> Iterator[int]:
    """A respd that requires the password `s3cret`."""
    with running(port=0, bind=["127.0.0.1"], requirepass="s3cret") as url:
        yield int(url.rsplit(":", 1)[1])


def test_password_in_the_handshake(password_port: int, protocol: int) -> None:
    """HELLO 3 AUTH (RESP3) or AUTH (RESP2) in the handshake; then pub/sub works."""
    r = redis.Redis(port=password_port, protocol=protocol, password="s3cret")
    p = r.pubsub()
    try:
        assert r.ping() is True
        p.subscribe("a")
        assert next_message(p) == frame("subscribe", b"a", 1)
        assert r.publish("a", "secret") == 1
        assert next_message(p) == frame("message", b"a", b"secret")
    finally:
        p.close()
        r.close()


def test_wrong_or_missing_password(password_port: int, protocol: int) -> None:
    no_retry = Retry(NoBackoff(), 0)  # redis-py retries a failed handshake otherwise
    wrong = redis.Redis(port=password_port, protocol=protocol, password="guess", retry=no_retry)
    with pytest.raises(redis.AuthenticationError) as raised:
        wrong.ping()
    assert str(raised.value) == "invalid username-password pair or user is disabled."
    missing = redis.Redis(port=password_port, protocol=protocol, retry=no_retry)
    with pytest.raises(redis.AuthenticationError) as raised:
        missing.ping()
    if protocol == 2:  # the handshake sends nothing; PING itself is refused
        assert str(raised.value) == "Authentication required."
    else:  # HELLO 3 without AUTH
        assert str(raised.value) == (
            "HELLO must be called with the client already authenticated, otherwise the "
            "HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client "
            "and select the RESP protocol version at the same time")
    wrong.close()
    missing.close()


# --- subscribing ------------------------------------------------------------------

def test_subscribe_confirmations(r: redis.Redis, pubsubs: list) -> None:
    """One confirmation per name; counts are channels + patterns, shard channels apart."""
    p = new_pubsub(r, pubsubs)
    p.subscribe("a", "b")
    assert next_message(p) == frame("subscribe", b"a", 1)
    assert next_message(p) == frame("subscribe", b"b", 2)
    p.psubscribe("p*")
    assert next_message(p) == frame("psubscribe", b"p*", 3)
    p.ssubscribe("s1", "s2")
    assert next_message(p) == frame("ssubscribe", b"s1", 1)
    assert next_message(p) == frame("ssubscribe", b"s2", 2)
    assert p.subscribed
    p.unsubscribe("a")
    assert next_message(p) == frame("unsubscribe", b"a", 2)
    p.punsubscribe()
    assert next_message(p) == frame("punsubscribe", b"p*", 1)
    p.sunsubscribe("s2")
    assert next_message(p) == frame("sunsubscribe", b"s2", 1)
    p.unsubscribe()
    assert next_message(p) == frame("unsubscribe", b"b", 0)
    assert p.subscribed  # still on s1
    p.sunsubscribe()
    assert next_message(p) == frame("sunsubscribe", b"s1", 0)
    assert not p.subscribed


def test_many_channels_in_one_call(r: redis.Redis, pubsubs: list) -> None:
    """1000 confirmations in order; a bare UNSUBSCRIBE answers one frame per channel."""
    names = [b"ch:%d" % i for i in range(1000)]
    p = new_pubsub(r, pubsubs)
    p.subscribe(*names)
    assert [next_message(p) for _ in names] == [
        frame("subscribe", name, i) for i, name in enumerate(names, 1)]
    assert r.pubsub_numsub(*names[:2]) == [(names[0], 1), (names[1], 1)]
    assert len(r.pubsub_channels("ch:*")) == 1000
    p.unsubscribe()
    gone = [next_message(p) for _ in names]
    assert [m["data"] for m in gone] == list(range(999, -1, -1))
    assert sorted(m["channel"] for m in gone) == sorted(names)
    assert not p.subscribed
    assert r.pubsub_channels() == []


def test_unsubscribe_a_channel_not_subscribed(r: redis.Redis, pubsubs: list) -> None:
    p = new_pubsub(r, pubsubs)
    p.subscribe("a")
    assert next_message(p) == frame("subscribe", b"a", 1)
    p.unsubscribe("zz")
    assert next_message(p) == frame("unsubscribe", b"zz", 1)
    assert p.subscribed


def test_subscribe_with_decoded_responses(respd_port: int, protocol: int) -> None:
    r = redis.Redis(port=respd_port, protocol=protocol, decode_responses=True)
    p = r.pubsub()
    try:
        p.subscribe("héllo")
        assert next_message(p) == frame("subscribe", "héllo", 1)
        assert r.publish("héllo", "wörld") == 1
        assert next_message(p) == frame("message", "héllo", "wörld")
    finally:
        p.close()
        r.close()


def test_get_message_delivers_messages(r: redis.Redis, pubsubs: list) -> None:
    p = new_pubsub(r, pubsubs, ignore_subscribe_messages=True)
    p.subscribe("news")
    p.psubscribe("n*")
    wait_until(lambda: r.pubsub_numpat() == 1 and numsub(r, "news") == 1,
               message="the subscriptions")
    assert p.get_message(timeout=0.01) is None  # confirmations are swallowed
    assert r.publish("news", "one") == 2
    assert r.publish("nope", "two") == 1
    assert r.publish("other", "three") == 0
    assert next_message(p) == frame("message", b"news", b"one")
    assert next_message(p) == frame("pmessage", b"news", b"one", b"n*")
    assert next_message(p) == frame("pmessage", b"nope", b"two", b"n*")
    assert p.get_message(timeout=0.05) is None


def test_ssubscribe_and_spublish(r: redis.Redis, pubsubs: list) -> None:
    p = new_pubsub(r, pubsubs)
    p.ssubscribe("orders")
    assert next_message(p) == frame("ssubscribe", b"orders", 1)
    p.psubscribe("*")
    assert next_message(p) == frame("psubscribe", b"*", 1)
    assert r.spublish("orders", "o1") == 1  # patterns never see shard messages
    assert next_message(p) == frame("smessage", b"orders", b"o1")
    assert r.publish("orders", "classic") == 1  # only the pattern: not a shard delivery
    assert next_message(p) == frame("pmessage", b"orders", b"classic", b"*")
    assert r.spublish("elsewhere", "x") == 0


def test_listen_ends_after_unsubscribing_everything(r: redis.Redis, pubsubs: list) -> None:
    p = new_pubsub(r, pubsubs)
    p.subscribe("ch")
    p.psubscribe("c*")
    wait_until(lambda: r.pubsub_numpat() == 1 and numsub(r, "ch") == 1,
               message="the subscriptions")
    r.publish("ch", "first")
    seen = []
    for message in p.listen():
        seen.append((message["type"], message["channel"], message["data"]))
        if message["type"] == "pmessage":
            p.unsubscribe()
            p.punsubscribe()
    assert seen == [
        ("subscribe", b"ch", 1), ("psubscribe", b"c*", 2),
        ("message", b"ch", b"first"), ("pmessage", b"ch", b"first"),
        ("unsubscribe", b"ch", 1), ("punsubscribe", b"c*", 0),
    ]
    assert not p.subscribed


def test_handlers_run_in_thread(r: redis.Redis, pubsubs: list) -> None:
    received: list[tuple[str, bytes, bytes]] = []

    def on_message(message: dict) -> None:
        received.append((message["type"], message["channel"], message["data"]))

    p = new_pubsub(r, pubsubs)
    p.subscribe(alerts=on_message)
    p.psubscribe(**{"log.*": on_message})
    p.ssubscribe(shard=on_message)
    wait_until(lambda: r.pubsub_numpat() == 1 and numsub(r, "alerts") == 1
               and dict(r.pubsub_shardnumsub("shard"))[b"shard"] == 1,
               message="the subscriptions")
    worker = p.run_in_thread(sleep_time=0.05, daemon=True)
    try:
        assert r.publish("alerts", "fire") == 1
        assert r.publish("log.error", "disk") == 1
        assert r.spublish("shard", "s") == 1
        wait_until(lambda: len(received) == 3, message="the handlers to run")
        assert received == [("message", b"alerts", b"fire"),
                            ("pmessage", b"log.error", b"disk"),
                            ("smessage", b"shard", b"s")]
    finally:
        worker.stop()
        worker.join(DEADLINE)
    assert not worker.is_alive()


def test_health_check_reply_is_swallowed(respd_port: int, protocol: int) -> None:
    """The health-check PING gets Redis's reply shape, which redis-py recognises and drops."""
    r = redis.Redis(port=respd_port, protocol=protocol, health_check_interval=30)
    p = r.pubsub()
    try:
        p.subscribe("hc")
        assert next_message(p) == frame("subscribe", b"hc", 1)
        p.connection.next_health_check = 0  # as if the interval had passed
        assert p.get_message(timeout=DEADLINE) is None  # the check's reply, swallowed
        assert p.health_check_response_counter == 0
        assert r.publish("hc", "after") == 1
        assert next_message(p) == frame("message", b"hc", b"after")
    finally:
        p.close()
        r.close()


def test_pubsub_ping(r: redis.Redis, pubsubs: list) -> None:
    p = new_pubsub(r, pubsubs)
    p.subscribe("a")
    assert next_message(p) == frame("subscribe", b"a", 1)
    p.ping()
    assert next_message(p) == frame("pong", None, b"")
    p.ping("hi")
    assert next_message(p) == frame("pong", None, b"hi")


def test_publish_counts_channel_and_patterns(r: redis.Redis, respd_port: int,
                                             pubsubs: list) -> None:
    """PUBLISH counts every delivery: the channel's subscribers and each matching pattern."""
    first = new_pubsub(r, pubsubs)
    first.subscribe("ch")
    first.psubscribe("c*", "*h", "x*")
    second = new_pubsub(r, pubsubs)
    second.subscribe("ch")
    second.psubscribe("c*")
    wait_until(lambda: numsub(r, "ch") == 2 and r.pubsub_numpat() == 3,
               message="the subscriptions")
    assert r.publish("ch", "m") == 5  # 2 channel subscribers + c* twice + *h
    assert r.publish("cat", "m") == 2
    assert r.publish("dog", "m") == 0


def test_delivery_order_channel_then_patterns(r: redis.Redis, pubsubs: list) -> None:
    p = new_pubsub(r, pubsubs, ignore_subscribe_messages=True)
    p.subscribe("ch")
    p.psubscribe("c*", "*h")
    wait_until(lambda: numsub(r, "ch") == 1 and r.pubsub_numpat() == 2,
               message="the subscriptions")
    assert r.publish("ch", "hello") == 3
    first = next_message(p)
    assert first == frame("message", b"ch", b"hello")
    patterns = {next_message(p)["pattern"] for _ in range(2)}
    assert patterns == {b"c*", b"*h"}


def test_pubsub_introspection(r: redis.Redis, pubsubs: list) -> None:
    one = new_pubsub(r, pubsubs)
    one.subscribe("news.a", "news.b", "other")
    one.psubscribe("news.*")
    one.ssubscribe("s1", "s2")
    two = new_pubsub(r, pubsubs)
    two.subscribe("news.a")
    two.psubscribe("news.*", "x*")
    two.ssubscribe("s1")
    wait_until(lambda: r.pubsub_numpat() == 2 and numsub(r, "news.a") == 2
               and len(r.pubsub_shardchannels()) == 2, message="the subscriptions")
    assert sorted(r.pubsub_channels()) == [b"news.a", b"news.b", b"other"]
    assert sorted(r.pubsub_channels("news.*")) == [b"news.a", b"news.b"]
    assert r.pubsub_channels("nothing*") == []
    assert r.pubsub_numsub("news.a", "news.b", "none") == [
        (b"news.a", 2), (b"news.b", 1), (b"none", 0)]
    assert r.pubsub_numsub() == []
    assert r.pubsub_numpat() == 2  # distinct patterns, not subscriptions
    assert sorted(r.pubsub_shardchannels()) == [b"s1", b"s2"]
    assert r.pubsub_shardchannels("s2") == [b"s2"]
    assert r.pubsub_shardnumsub("s1", "s2", "s3") == [(b"s1", 2), (b"s2", 1), (b"s3", 0)]


# --- the subscribed context -------------------------------------------------------

@pytest.mark.parametrize("protocol", [2], ids=["resp2"])
@pytest.mark.parametrize(("command", "name"), [
    (("GET", "k"), "get"),
    (("ECHO", "hi"), "echo"),
    (("CLIENT", "ID"), "client|id"),
    (("PUBSUB", "NUMPAT"), "pubsub|numpat"),
])
def test_resp2_subscriber_may_not_run_commands(r: redis.Redis, pubsubs: list,
                                               command: tuple[str, ...], name: str) -> None:
    """Redis's exact error; the subscription goes on working afterwards."""
    p = new_pubsub(r, pubsubs)
    p.subscribe("a")
    assert next_message(p) == frame("subscribe", b"a", 1)
    p.execute_command(*command)
    with pytest.raises(redis.ResponseError) as raised:
        next_message(p)
    assert str(raised.value) == f"Can't execute '{name}': {SUBSCRIBED_ONLY}"
    assert r.publish("a", "still here") == 1
    assert next_message(p) == frame("message", b"a", b"still here")


@pytest.mark.parametrize("protocol", [3], ids=["resp3"])
def test_resp3_subscriber_may_run_commands(r: redis.Redis, pubsubs: list) -> None:
    """RESP3 tells pushes from replies, so Redis lets a subscriber run any command.

    redis-py hands a non-push reply read by get_message() over as a `pong` message.
    """
    p = new_pubsub(r, pubsubs)
    p.subscribe("a")
    assert next_message(p) == frame("subscribe", b"a", 1)
    p.execute_command("ECHO", "hi")
    assert next_message(p) == frame("pong", None, b"hi")
    r.set("k", "v")
    p.execute_command("GET", "k")
    assert next_message(p) == frame("pong", None, b"v")
    assert r.publish("a", "m") == 1
    assert next_message(p) == frame("message", b"a", b"m")


# --- connections that end ---------------------------------------------------------

def test_resubscribes_after_the_server_closes_the_connection(r: redis.Redis,
                                                             pubsubs: list) -> None:
    p = new_pubsub(r, pubsubs, ignore_subscribe_messages=True)
    p.subscribe("a")
    p.psubscribe("x*")
    p.ssubscribe("s")

    def everything_subscribed() -> bool:
        return (numsub(r, "a") == 1 and r.pubsub_numpat() == 1
                and dict(r.pubsub_shardnumsub("s"))[b"s"] == 1)

    wait_until(everything_subscribed, message="the subscriptions")
    first_id = int(r.client_list(_type="pubsub")[0]["id"])
    assert r.client_kill_filter(_type="pubsub") == 1
    assert numsub(r, "a") == 0

    def reconnected() -> bool:
        try:
            p.get_message(timeout=0.01)  # reads EOF, then reconnects and resubscribes
        except redis.ConnectionError:
            return False
        return everything_subscribed()

    wait_until(reconnected, message="the pubsub to reconnect")
    assert int(r.client_list(_type="pubsub")[0]["id"]) != first_id
    assert r.publish("a", "again") == 1
    assert r.publish("xy", "pattern") == 1
    assert r.spublish("s", "shard") == 1
    assert next_message(p) == frame("message", b"a", b"again")
    assert next_message(p) == frame("pmessage", b"xy", b"pattern", b"x*")
    assert next_message(p) == frame("smessage", b"s", b"shard")


@pytest.mark.parametrize("how", ["disconnect", "killed"])
def test_client_that_leaves_is_removed_everywhere(r: redis.Redis, pubsubs: list,
                                                  how: str) -> None:
    p = new_pubsub(r, pubsubs)
    p.subscribe("a", "b")
    p.psubscribe("p*", "q*")
    p.ssubscribe("s")
    watcher = new_pubsub(r, pubsubs)  # stays, so the channels' entries must shrink, not go
    watcher.subscribe("b")
    watcher.psubscribe("q*")
    wait_until(lambda: r.pubsub_numpat() == 2 and numsub(r, "b") == 2
               and r.pubsub_shardnumsub("s") == [(b"s", 1)], message="the subscriptions")
    if how == "disconnect":
        p.connection.disconnect()
    else:
        p_id = next(c["id"] for c in r.client_list(_type="pubsub") if c["sub"] == "2")
        assert r.client_kill_filter(_id=p_id) == 1
    wait_until(lambda: r.pubsub_numsub("a", "b") == [(b"a", 0), (b"b", 1)],
               message="the channels to be released")
    wait_until(lambda: r.pubsub_numpat() == 1, message="the patterns to be released")
    assert r.pubsub_shardnumsub("s") == [(b"s", 0)]
    assert r.pubsub_channels() == [b"b"]
    assert r.pubsub_shardchannels() == []
    assert r.publish("q1", "m") == 1
    assert r.info("clients")["pubsub_clients"] == 1
    watcher.connection.disconnect()
    wait_until(lambda: r.pubsub_numpat() == 0 and r.pubsub_channels() == [],
               message="everything to be released")
    assert r.pubsub_numsub("a", "b") == [(b"a", 0), (b"b", 0)]
    assert r.info("clients")["pubsub_clients"] == 0


# --- payloads and volume ----------------------------------------------------------

def test_binary_channel_and_payload(r: redis.Redis, pubsubs: list) -> None:
    channel = b"bin\x00\r\n\xff\xfe"
    payload = bytes(range(256)) * 4 + b"\r\n*3\r\n$7\r\nmessage\r\n"
    p = new_pubsub(r, pubsubs, ignore_subscribe_messages=True)
    p.subscribe(channel)
    p.psubscribe(b"bin\x00*")
    wait_until(lambda: r.pubsub_numpat() == 1 and r.pubsub_numsub(channel)[0][1] == 1,
               message="the subscriptions")
    assert r.publish(channel, payload) == 2
    assert r.publish(channel, b"") == 2
    assert next_message(p) == frame("message", channel, payload)
    assert next_message(p) == frame("pmessage", channel, payload, b"bin\x00*")
    assert next_message(p) == frame("message", channel, b"")
    assert next_message(p) == frame("pmessage", channel, b"", b"bin\x00*")


def test_large_payload(r: redis.Redis, pubsubs: list) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB
    p = new_pubsub(r, pubsubs, ignore_subscribe_messages=True)
    p.subscribe("big")
    p.psubscribe("b*")
    wait_until(lambda: r.pubsub_numpat() == 1 and numsub(r, "big") == 1,
               message="the subscriptions")
    assert r.publish("big", payload) == 2
    assert r.publish("big", payload[::-1]) == 2
    received = [next_message(p) for _ in range(4)]
    assert [m["data"] == payload for m in received] == [True, True, False, False]
    assert [m["data"] == payload[::-1] for m in received[2:]] == [True, True]
    assert [m["type"] for m in received] == ["message", "pmessage"] * 2


def test_many_subscribers_get_every_message_in_order(r: redis.Redis, respd_port: int,
                                                     protocol: int) -> None:
    subscribers = 10
    count = 1000
    clients = [redis.Redis(port=respd_port, protocol=protocol) for _ in range(subscribers)]
    pubsubs = [c.pubsub(ignore_subscribe_messages=True) for c in clients]
    try:
        for p in pubsubs:
            p.subscribe("fan")
        wait_until(lambda: numsub(r, "fan") == subscribers, message="the subscriptions")
        with r.pipeline(transaction=False) as pipe:
            for i in range(count):
                pipe.publish("fan", b"%d" % i)
            assert pipe.execute() == [subscribers] * count

        def read_all(p: redis.client.PubSub, into: list) -> None:
            while len(into) < count:
                into.append(next_message(p)["data"])

        results: list[list[bytes]] = [[] for _ in pubsubs]
        readers = [threading.Thread(target=read_all, args=(p, got), daemon=True)
                   for p, got in zip(pubsubs, results, strict=True)]
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(DEADLINE * 2)
        expected = [b"%d" % i for i in range(count)]
        assert all(got == expected for got in results)
    finally:
        for p, c in zip(pubsubs, clients, strict=True):
            p.close()
            c.close()
