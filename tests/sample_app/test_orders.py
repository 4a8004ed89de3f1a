"""The order producer and consumers, tested with nothing but the respd plugin's fixture:
no sleeps (wait_for_subscribers), reconnects forced with drop_clients."""

from __future__ import annotations

import asyncio

import pytest

from tests.sample_app.orders import AsyncOrderConsumer, OrderConsumer, OrderProducer

TIMEOUT = 10.0  # seconds to wait for a consumer to record an order


@pytest.mark.parametrize("respd_protocol", [2, 3], ids=["resp2", "resp3"])
def test_a_placed_order_is_recorded(respd):
    consumer = OrderConsumer(respd.client()).start()
    try:
        respd.wait_for_subscribers("orders")
        assert OrderProducer(respd.client()).place("o-1", 30) == 1
        assert consumer.handled.get(timeout=TIMEOUT) == {"id": "o-1", "amount": 30}
        r = respd.client()
        assert r.get("order:o-1") == b'{"id": "o-1", "amount": 30}'
        assert r.get("revenue") == b"30"
    finally:
        consumer.stop()


def test_every_consumer_hears_every_order(respd):
    consumers = [OrderConsumer(respd.client()).start() for _ in range(3)]
    try:
        respd.wait_for_subscribers("orders", 3)
        producer = OrderProducer(respd.client())
        assert producer.place("o-1", 5) == 3
        assert producer.place("o-2", 7) == 3
        for consumer in consumers:
            ids = [consumer.handled.get(timeout=TIMEOUT)["id"] for _ in range(2)]
            assert ids == ["o-1", "o-2"]
        assert respd.client().get("revenue") == b"36"  # 3 consumers x (5 + 7)
    finally:
        for consumer in consumers:
            consumer.stop()


def test_each_test_starts_with_no_data_and_no_subscribers(respd):
    r = respd.client()
    assert r.dbsize() == 0
    assert r.pubsub_numsub("orders") == [(b"orders", 0)]


def test_consumer_resubscribes_after_its_connection_drops(respd):
    consumer = OrderConsumer(respd.client()).start()
    try:
        respd.wait_for_subscribers("orders")
        producer = OrderProducer(respd.client())
        producer.place("before", 1)
        assert consumer.handled.get(timeout=TIMEOUT)["id"] == "before"

        assert respd.drop_subscribers() == 1
        assert producer.place("lost", 1) == 0  # nobody listens while it reconnects
        respd.wait_for_subscribers("orders")
        assert producer.place("after", 2) == 1
        assert consumer.handled.get(timeout=TIMEOUT)["id"] == "after"
    finally:
        consumer.stop()


def test_producer_survives_a_dropped_connection(respd):
    r = respd.client()
    first = r.client_id()
    assert respd.drop_clients([first]) == 1
    assert OrderProducer(r).place("o-1", 1) == 0  # redis-py reconnects and retries
    assert r.client_id() != first


def test_drop_a_client_by_name(respd):
    consumer = OrderConsumer(respd.client(client_name="billing")).start()
    other = OrderConsumer(respd.client(client_name="audit")).start()
    try:
        respd.wait_for_subscribers("orders", 2)
        assert respd.drop_clients(name="billing") == 1
        assert respd.receivers("orders") == 1
        respd.wait_for_subscribers("orders", 2)  # billing is back
    finally:
        consumer.stop()
        other.stop()


async def test_async_consumer(respd):
    """An asyncio test: the plugin runs it with asyncio.run (no other plugin needed)."""
    async with respd.async_client() as r:
        consumer = AsyncOrderConsumer(r)
        await consumer.subscribe()
        try:
            await respd.wait_for_subscribers_async("orders")
            async with respd.async_client() as producer:
                assert await producer.publish("orders", '{"id": "a-1", "amount": 4}') == 1
            order = await asyncio.wait_for(consumer.next_order(), TIMEOUT)
            assert order == {"id": "a-1", "amount": 4}
            assert await r.get("revenue") == b"4"
        finally:
            await consumer.close()


async def test_async_consumer_after_a_dropped_connection(respd):
    async with respd.async_client() as r:
        consumer = AsyncOrderConsumer(r)
        await consumer.subscribe()
        try:
            await respd.wait_for_subscribers_async("orders")
            assert await respd.drop_subscribers_async() == 1
            waiting = asyncio.ensure_future(consumer.next_order())  # reads, so reconnects
            await respd.wait_for_subscribers_async("orders")
            assert await r.publish("orders", '{"id": "a-2", "amount": 1}') == 1
            assert (await asyncio.wait_for(waiting, TIMEOUT))["id"] == "a-2"
        finally:
            await consumer.close()
