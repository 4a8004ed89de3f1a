"""The cache through redis-py, sync and asyncio, RESP2 and RESP3, as applications use it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from tests.conftest import DEADLINE, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def r(respd_port: int, protocol: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=respd_port, protocol=protocol, decode_responses=True)
    yield client
    client.close()


def test_cache_through_a_plain_pipeline(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=False)
    pipe.set("user:1", "alice", ex=100)
    pipe.get("user:1")
    pipe.mset({"a": "1", "b": "2"})
    pipe.mget("a", "b", "missing")
    pipe.incrby("a", 10)
    pipe.ttl("user:1")
    pipe.get("missing")
    pipe.delete("a", "b", "missing")
    assert pipe.execute() == [True, "alice", True, ["1", "2", None], 11, 100, None, 2]


def test_pipeline_is_a_transaction_by_default(r: redis.Redis) -> None:
    with r.pipeline() as pipe:
        pipe.set("counter", 5)
        pipe.incr("counter")
        pipe.getex("counter", px=100_000)
        pipe.persist("counter")
        assert pipe.execute() == [True, 6, "6", True]
    with r.pipeline() as pipe:  # a command refused while queuing aborts the whole EXEC
        pipe.set("counter", 100)
        pipe.execute_command("SET", "only-a-key")
        with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
            pipe.execute()
    assert r.get("counter") == "6"
    with r.pipeline() as pipe:  # an error while running is one reply among the others
        pipe.set("text", "abc")
        pipe.incr("text")
        pipe.get("text")
        results = pipe.execute(raise_on_error=False)
    assert results[0] is True and results[2] == "abc"
    assert isinstance(results[1], redis.ResponseError)


def test_watch_retry_loop_sees_a_concurrent_change(r: redis.Redis, respd_port: int,
                                                   protocol: int) -> None:
    other = redis.Redis(port=respd_port, protocol=protocol)
    r.set("balance", 100)
    attempts = []

    def withdraw(pipe: redis.client.Pipeline) -> None:
        balance = int(pipe.get("balance"))
        attempts.append(balance)
        if len(attempts) == 1:
            other.incrby("balance", 50)  # someone else changes it between WATCH and EXEC
        pipe.multi()
        pipe.set("balance", balance - 30)

    r.transaction(withdraw, "balance")
    other.close()
    assert attempts == [100, 150]
    assert r.get("balance") == "120"


def test_watch_fails_when_the_key_expires(r: redis.Redis, respd_port: int) -> None:
    r.set("session", "x", px=50)
    with r.pipeline() as pipe:
        pipe.watch("session")
        wait_until(lambda: r.exists("session") == 0, message="the key to expire")
        pipe.multi()
        pipe.set("session", "renewed")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.exists("session") == 0


def test_scan_iter_while_keys_come_and_go(r: redis.Redis) -> None:
    stable = {f"item:{i}" for i in range(500)}
    r.mset(dict.fromkeys(stable, "v"))
    seen = []
    for n, key in enumerate(r.scan_iter(match="item:*", count=20)):
        seen.append(key)
        r.set(f"item:new:{n}", "v")
        r.delete(f"item:new:{n // 2}")
    assert stable <= set(seen)
    assert len([k for k in seen if k in stable]) == len(stable)
    r.set("other", "v")
    assert set(r.scan_iter(_type="string", match="o*")) == {"other"}


def _messages(pubsub: redis.client.PubSub, count: int) -> list[tuple[str, str]]:
    got: list[tuple[str, str]] = []
    end = time.monotonic() + DEADLINE
    while len(got) < count and time.monotonic() < end:
        message = pubsub.get_message(timeout=0.1, ignore_subscribe_messages=True)
        if message:
            got.append((message["channel"], message["data"]))
    return got


def test_keyspace_notifications_through_pubsub(r: redis.Redis) -> None:
    r.config_set("notify-keyspace-events", "KEA")
    pubsub = r.pubsub()
    pubsub.psubscribe("__keyspace@0__:*", "__keyevent@0__:expired")
    wait_until(lambda: pubsub.get_message(timeout=0.1) is not None and pubsub.subscribed)
    r.set("k", "v")
    r.expire("k", 100)
    r.delete("k")
    r.set("short", "v", px=20)
    got = _messages(pubsub, 7)
    pubsub.close()
    assert got[:6] == [("__keyspace@0__:k", "set"), ("__keyspace@0__:k", "expire"),
                       ("__keyspace@0__:k", "del"), ("__keyspace@0__:short", "set"),
                       ("__keyspace@0__:short", "expire"),
                       ("__keyspace@0__:short", "expired")]
    assert got[6] == ("__keyevent@0__:expired", "short")


def test_info_counts_hits_misses_and_expiries(r: redis.Redis) -> None:
    r.set("k", "v", px=10)
    r.get("nokey")
    r.set("hit", "v")
    r.get("hit")
    wait_until(lambda: r.dbsize() == 1, message="k to expire without being read")
    stats = r.info("stats")
    assert stats["keyspace_hits"] == 1 and stats["keyspace_misses"] == 1
    assert stats["expired_keys"] == 1
    assert r.info("keyspace")["db0"]["keys"] == 1


# --- asyncio --------------------------------------------------------------------------

def _run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, DEADLINE))


def test_asyncio_pipelines_watch_scan_and_notifications(respd_port: int,
                                                       protocol: int) -> None:
    async def main() -> None:
        r = redis.asyncio.Redis(port=respd_port, protocol=protocol, decode_responses=True)
        other = redis.asyncio.Redis(port=respd_port, protocol=protocol)
        await r.config_set("notify-keyspace-events", "E$x")
        pubsub = r.pubsub()
        await pubsub.subscribe("__keyevent@0__:set", "__keyevent@0__:expired")

        async with r.pipeline(transaction=False) as pipe:
            pipe.set("a", 1).incr("a").get("a")
            assert await pipe.execute() == [True, 2, "2"]
        async with r.pipeline() as pipe:
            pipe.set("b", "x", ex=100).ttl("b").append("b", "y")
            assert await pipe.execute() == [True, 100, 2]

        attempts = 0

        async def bump(pipe: redis.asyncio.client.Pipeline) -> None:
            nonlocal attempts
            attempts += 1
            value = int(await pipe.get("a"))
            if attempts == 1:
                await other.set("a", 10)
            pipe.multi()
            pipe.set("a", value + 1)

        await r.transaction(bump, "a")
        assert attempts == 2 and await r.get("a") == "11"

        await r.mset({f"s:{i}": i for i in range(200)})
        keys = {key async for key in r.scan_iter(match="s:*", count=7)}
        assert keys == {f"s:{i}" for i in range(200)}

        await r.set("gone", "v", px=10)
        events = []
        while ("__keyevent@0__:expired", "gone") not in events:
            message = await pubsub.get_message(timeout=1.0, ignore_subscribe_messages=True)
            if message:
                events.append((message["channel"], message["data"]))
        assert ("__keyevent@0__:set", "gone") in events
        await pubsub.aclose()
        await other.aclose()
        await r.aclose()

    _run(main())


def test_memory_usage_is_what_used_memory_counts(r: redis.Redis) -> None:
    """MEMORY USAGE reports the bytes respd accounts to a key: what adding it added to
    used_memory (the figure maxmemory bounds), growing with the value."""
    before = r.info("memory")["used_memory"]
    r.set("k", "x" * 1000)
    usage = r.memory_usage("k")
    assert usage == r.info("memory")["used_memory"] - before
    r.set("k", "x" * 3000)
    assert r.memory_usage("k", samples=0) == usage + 2000
    assert r.memory_usage("missing") is None
    assert r.role() == ["master", 0, []]  # redis-py decodes the role
    assert r.substr("k", 0, 2) == "xxx"
