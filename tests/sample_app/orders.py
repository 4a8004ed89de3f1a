"""Order events over pub/sub: a producer publishes each order placed, consumers record them.

The same code works with `redis.Redis` and `redis.cluster.RedisCluster` (sync), and
the asyncio consumer with `redis.asyncio.Redis`: it uses only commands a cluster
routes by key or channel.
"""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

CHANNEL = "orders"
POLL = 0.1  # seconds a consumer waits for a message before checking whether to stop


def encode(order_id: str, amount: int) -> str:
    return json.dumps({"id": order_id, "amount": amount})


class OrderProducer:
    """Places orders: each becomes one message on the orders channel."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def place(self, order_id: str, amount: int) -> int:
        """Publish an order; return how many consumers it reached."""
        return self.client.publish(CHANNEL, encode(order_id, amount))


def record(client: Any, data: bytes) -> dict[str, Any]:
    """Store an order under order:<id> and add its amount to the day's revenue."""
    order = json.loads(data)
    client.set(f"order:{order['id']}", data)
    client.incrby("revenue", order["amount"])
    return order


class OrderConsumer:
    """Listens on the orders channel in a thread of its own and records each order.

    Each recorded order is also put on `handled`, so callers can wait for it. When
    the connection drops, redis-py reconnects and subscribes again, then reports the
    drop (the orders published meanwhile are lost, as pub/sub has no memory): the
    consumer carries on listening.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(CHANNEL)
        self.handled: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="order-consumer", daemon=True)

    def start(self) -> OrderConsumer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                message = self.pubsub.get_message(timeout=POLL)
            except RedisConnectionError:
                continue
            if message is not None and message["type"] == "message":
                self.handled.put(record(self.client, message["data"]))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.pubsub.close()


class AsyncOrderConsumer:
    """The consumer for asyncio programs (`redis.asyncio`): same channel, same records."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)

    async def subscribe(self) -> None:
        await self.pubsub.subscribe(CHANNEL)

    async def next_order(self) -> dict[str, Any]:
        """Wait for the next order message and record it."""
        while True:
            try:
                message = await self.pubsub.get_message(timeout=None)
            except RedisConnectionError:
                continue  # reconnected and subscribed again, as the sync consumer
            if message is not None and message["type"] == "message":
                order = json.loads(message["data"])
                await self.client.set(f"order:{order['id']}", message["data"])
                await self.client.incrby("revenue", order["amount"])
                return order

    async def close(self) -> None:
        await self.pubsub.aclose()
