"""redis.asyncio against respd over real sockets, under RESP2 and RESP3.

Each test is a plain sync test that runs its coroutine with `asyncio.run`, so no
pytest plugin is needed; respd runs in its background thread as for the sync tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from tests.conftest import DEADLINE, SUBSCRIBED_ONLY

pytestmark = pytest.mark.timeout(60)

def run(test: Callable[..., Coroutine[Any, Any, None]], port: int, protocol: int | None,
        **kwargs: Any) -> None:
    """Run test(r) with an asyncio client (protocol None: the default), then close it."""

    async def main() -> None:
        if protocol is not None:
            kwargs["protocol"] = protocol
        r = aioredis.Redis(port=port, **kwargs)
        try:
            await test(r)
        finally:
            await r.aclose()

    asyncio.run(main())


async def next_message(p: aioredis.client.PubSub, timeout: float = DEADLINE,
                       **kwargs: Any) -> dict[str, Any]:
    """The next frame get_message() gives, waiting up to the deadline."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        message = await p.get_message(timeout=0.5, **kwargs)
        if message is not None:
            return message
    raise AssertionError("timed out waiting for a pub/sub message")


async def until(condition: Callable[[], Awaitable[bool]], message: str) -> None:
    """Await a condition until it holds, failing after the deadline."""
    end = time.monotonic() + DEADLINE
    while not await condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {message}")
        await asyncio.sleep(0.005)


def frame(kind: str, channel: bytes | None, data: Any, pattern: bytes | None = None) -> dict:
    return {"type": kind, "pattern": pattern, "channel": channel, "data": data}


async def numsub(r: aioredis.Redis, channel: str) -> int:
    return dict(await r.pubsub_numsub(channel))[channel.encode()]


async def has_subscribers(r: aioredis.Redis, channel: bytes, wanted: int) -> bool:
    return (await r.pubsub_numsub(channel))[0][1] == wanted


@pytest.mark.parametrize("protocol", [None, 2, 3], ids=["default", "resp2", "resp3"])
def test_handshake(respd_port: int, protocol: int | None) -> None:
    """The default client says HELLO 3; protocol=2 stays on RESP2."""

    async def test(r: aioredis.Redis) -> None:
        assert await r.ping() is True
        info = await r.client_info()
        assert info["resp"] == str(protocol or 3)
        assert info["lib-name"] == "redis-py"
        assert info["lib-ver"] == redis.__version__

    run(test, respd_port, protocol)


def test_subscribe_confirmations(respd_port: int, protocol: int) -> None:
    async def test(r: aioredis.Redis) -> None:
        async with r.pubsub() as p:
            await p.subscribe("a", "b")
            assert await next_message(p) == frame("subscribe", b"a", 1)
            assert await next_message(p) == frame("subscribe", b"b", 2)
            await p.psubscribe("p*")
            assert await next_message(p) == frame("psubscribe", b"p*", 3)
            await p.ssubscribe("s")
            assert await next_message(p) == frame("ssubscribe", b"s", 1)
            await p.unsubscribe("a")
            assert await next_message(p) == frame("unsubscribe", b"a", 2)
            await p.punsubscribe()
            assert await next_message(p) == frame("punsubscribe", b"p*", 1)
            await p.sunsubscribe()
            assert await next_message(p) == frame("sunsubscribe", b"s", 0)
            assert p.subscribed
            await p.unsubscribe()
            assert await next_message(p) == frame("unsubscribe", b"b", 0)
            assert not p.subscribed

    run(test, respd_port, protocol)


def test_get_message_and_publish_counts(respd_port: int, protocol: int) -> None:
    async def test(r: aioredis.Redis) -> None:
        async with r.pubsub(ignore_subscribe_messages=True) as p, \
                r.pubsub(ignore_subscribe_messages=True) as q:
            await p.subscribe("ch")
            await p.psubscribe("c*", "*h")
            await q.psubscribe("c*")

            async def subscribed() -> bool:
                return await numsub(r, "ch") == 1 and await r.pubsub_numpat() == 2

            await until(subscribed, "the subscriptions")
            assert await r.publish("ch", "hello") == 4  # ch, c* twice, *h
            assert await r.publish("cat", "meow") == 2
            assert await r.publish("dog", "woof") == 0
            assert await next_message(p) == frame("message", b"ch", b"hello")
            patterns = {(await next_message(p))["pattern"] for _ in range(2)}
            assert patterns == {b"c*", b"*h"}
            assert await next_message(p) == frame("pmessage", b"cat", b"meow", b"c*")
            assert await next_message(q) == frame("pmessage", b"ch", b"hello", b"c*")
            assert await next_message(q) == frame("pmessage", b"cat", b"meow", b"c*")
            assert await p.get_message(timeout=0.05) is None

    run(test, respd_port, protocol)


def test_ssubscribe_and_spublish(respd_port: int, protocol: int) -> None:
    async def test(r: aioredis.Redis) -> None:
        async with r.pubsub(ignore_subscribe_messages=True) as p:
            await p.ssubscribe("orders")
            await p.psubscribe("*")

            async def subscribed() -> bool:
                return (await r.pubsub_numpat() == 1
                        and await r.pubsub_shardnumsub("orders") == [(b"orders", 1)])

            await until(subscribed, "the subscriptions")
            assert await r.spublish("orders", "o1") == 1
            assert await next_message(p) == frame("smessage", b"orders", b"o1")
            assert await r.publish("orders", "classic") == 1
            assert await next_message(p) == frame("pmessage", b"orders", b"classic", b"*")

    run(test, respd_port, protocol)


def test_listen_ends_after_unsubscribing_everything(respd_port: int, protocol: int) -> None:
    async def test(r: aioredis.Redis) -> None:
        async with r.pubsub() as p:
            await p.subscribe("ch")
            await p.psubscribe("c*")

            async def subscribed() -> bool:
                return await numsub(r, "ch") == 1 and await r.pubsub_numpat() == 1

            await until(subscribed, "the subscriptions")
            await r.publish("ch", "first")
            seen = []

            async def collect() -> None:
                async for message in p.listen():
                    seen.append((message["type"], message["channel"], message["data"]))
                    if message["type"] == "pmessage":
                        await p.unsubscribe()
                        await p.punsubscribe()

            await asyncio.wait_for(collect(), DEADLINE)
            assert seen == [
                ("subscribe", b"ch", 1), ("psubscribe", b"c*", 2),
                ("message", b"ch", b"first"), ("pmessage", b"ch", b"first"),
                ("unsubscribe", b"ch", 1), ("punsubscribe", b"c*", 0),
            ]

    run(test, respd_port, protocol)


def test_run_with_handlers(respd_port: int, protocol: int) -> None:
    async def test(r: aioredis.Redis) -> None:
        received: list[tuple[str, bytes, bytes]] = []
        everything = asyncio.Event()

        def on_message(message: dict) -> None:
            received.append((message["type"], message["channel"], message["data"]))
            if len(received) == 3:
                everything.set()

        async def on_message_async(message: dict) -> None:
            on_message(message)

        async with r.pubsub() as p:
            await p.subscribe(alerts=on_message)
            await p.psubscribe(**{"log.*": on_message_async})
            await p.ssubscribe(shard=on_message)

            async def subscribed() -> bool:
                return (await numsub(r, "alerts") == 1 and await r.pubsub_numpat() == 1
                        and await r.pubsub_shardnumsub("shard") == [(b"shard", 1)])

            await until(subscribed, "the subscriptions")
            task = asyncio.create_task(p.run(poll_timeout=0.05))
            try:
                assert await r.publish("alerts", "fire") == 1
                assert await r.publish("log.error", "disk") == 1
                assert await r.spublish("shard", "s") == 1
                await asyncio.wait_for(everything.wait(), DEADLINE)
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert received == [("message", b"alerts", b"fire"),
                                ("pmessage", b"log.error", b"disk"),
                                ("smessage", b"shard", b"s")]

    run(test, respd_port, protocol)


def test_health_check_reply_is_swallowed(respd_port: int, protocol: int) -> None:
    async def test(r: aioredis.Redis) -> None:
        async with r.pubsub() as p:
            await p.subscribe("hc")
            assert await next_message(p) == frame("subscribe", b"hc", 1)
            p.connection.next_health_check = 0  # as if the interval had passed
            assert await p.get_message(timeout=DEADLINE) is None  # the reply, swallowed
            assert await r.publish("hc", "after") == 1
            assert await next_message(p) == frame("message", b"hc", b"after")

    run(test, respd_port, protocol, health_check_interval=30)


def test_pubsub_ping(respd_port: int, protocol: int) -> None:
    async def test(r: aioredis.Redis) -> None:
        async with r.pubsub() as p:
            await p.subscribe("a")
            assert await next_message(p) == frame("subscribe", b"a", 1)
            await p.ping()
            assert await next_message(p) == frame("pong", None, b"")
            await p.ping("hi")
            assert await next_message(p) == frame("pong", None, b"hi")

    run(test, respd_port, protocol)


def test_subscribed_context(respd_port: int, protocol: int) -> None:
    """RESP2: Redis's exact error for other commands. RESP3: any command runs."""

    async def test(r: aioredis.Redis) -> None:
        async with r.pubsub() as p:
            await p.subscribe("a")
            assert await next_message(p) == frame("subscribe", b"a", 1)
            await p.execute_command("ECHO", "hi")
            if protocol == 2:
                with pytest.raises(redis.ResponseError) as raised:
                    await next_message(p)
                assert str(raised.value) == f"Can't execute 'echo': {SUBSCRIBED_ONLY}"
            else:  # redis-py hands the plain reply over as a `pong` message
                assert await next_message(p) == frame("pong", None, b"hi")
            assert await r.publish("a", "m") == 1
            assert await next_message(p) == frame("message", b"a", b"m")

    run(test, respd_port, protocol)


def test_resubscribes_after_the_server_closes_the_connection(respd_port: int,
                                                             protocol: int) -> None:
    async def test(r: aioredis.Redis) -> None:
        async with r.pubsub(ignore_subscribe_messages=True) as p:
            await p.subscribe("a")
            await p.psubscribe("x*")
            await p.ssubscribe("s")

            async def everything_subscribed() -> bool:
                return (await numsub(r, "a") == 1 and await r.pubsub_numpat() == 1
                        and await r.pubsub_shardnumsub("s") == [(b"s", 1)])

            await until(everything_subscribed, "the subscriptions")
            assert await r.client_kill_filter(_type="pubsub") == 1
            assert await numsub(r, "a") == 0

            async def reconnected() -> bool:
                try:
                    await p.get_message(timeout=0.01)  # EOF, reconnect, resubscribe
                except redis.ConnectionError:
                    return False
                return await everything_subscribed()

            await until(reconnected, "the pubsub to reconnect")
            assert await r.publish("a", "again") == 1
            assert await r.publish("xy", "pattern") == 1
            assert await r.spublish("s", "shard") == 1
            assert await next_message(p) == frame("message", b"a", b"again")
            assert await next_message(p) == frame("pmessage", b"xy", b"pattern", b"x*")
            assert await next_message(p) == frame("smessage", b"s", b"shard")

    run(test, respd_port, protocol)


def test_client_that_leaves_is_removed_everywhere(respd_port: int, protocol: int) -> None:
    async def test(r: aioredis.Redis) -> None:
        p = r.pubsub()
        await p.subscribe("a", "b")
        await p.psubscribe("p*")
        await p.ssubscribe("s")

        async def subscribed() -> bool:
            return (await r.pubsub_numpat() == 1 and await numsub(r, "b") == 1
                    and await r.pubsub_shardnumsub("s") == [(b"s", 1)])

        await until(subscribed, "the subscriptions")
        await p.aclose()  # drops the connection without unsubscribing

        async def released() -> bool:
            return (await r.pubsub_numsub("a", "b") == [(b"a", 0), (b"b", 0)]
                    and await r.pubsub_numpat() == 0
                    and await r.pubsub_shardnumsub("s") == [(b"s", 0)])

        await until(released, "the subscriptions to be released")
        assert await r.pubsub_channels() == []
        assert await r.publish("pq", "m") == 0

    run(test, respd_port, protocol)


def test_payloads_and_fan_out(respd_port: int, protocol: int) -> None:
    """Binary and 1 MiB payloads arrive intact; 10 subscribers get 1000 messages in order."""
    subscribers, count = 10, 1000

    async def test(r: aioredis.Redis) -> None:
        pubsubs = [r.pubsub(ignore_subscribe_messages=True) for _ in range(subscribers)]
        try:
            for p in pubsubs:
                await p.subscribe(b"fan\x00\xff")
            await until(lambda: has_subscribers(r, b"fan\x00\xff", subscribers),
                        "the subscriptions")
            binary = bytes(range(256)) * 4
            large = bytes(range(256)) * 4096
            assert await r.publish(b"fan\x00\xff", binary) == subscribers
            assert await r.publish(b"fan\x00\xff", large) == subscribers
            async with r.pipeline(transaction=False) as pipe:
                for i in range(count):
                    pipe.publish(b"fan\x00\xff", b"%d" % i)
                assert await pipe.execute() == [subscribers] * count

            async def read_all(p: aioredis.client.PubSub) -> list[bytes]:
                return [(await next_message(p))["data"] for _ in range(count + 2)]

            expected = [binary, large] + [b"%d" % i for i in range(count)]
            results = await asyncio.gather(*(read_all(p) for p in pubsubs))
            assert all(got == expected for got in results)
        finally:
            for p in pubsubs:
                await p.aclose()

    run(test, respd_port, protocol)

