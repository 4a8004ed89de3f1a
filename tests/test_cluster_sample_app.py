"""The sample application, unchanged, on a cluster: respd in cluster mode, and (where
redis-server is installed) a real three-node Redis Cluster that this test starts on
loopback. What a user writes against respd in development runs against a real cluster.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.cluster import RedisCluster

from server.testing import serving
from tests.conftest import DEADLINE, wait_until
from tests.sample_app.cache import Cache
from tests.sample_app.orders import OrderConsumer, OrderProducer
from tests.test_cluster import answers, cluster_ok, cluster_port, start_cluster_node, stop

pytestmark = pytest.mark.timeout(60)


@dataclass
class Backend:
    """A cluster to run the application on, and the test's controls over it."""

    port: int  # a startup node for RedisCluster
    wait_for_subscribers: Callable[[str, int], None]
    drop_subscribers: Callable[[], int]
    flush: Callable[[], None]


def respd_backend() -> Iterator[Backend]:
    with serving(cluster_enabled=True) as server:
        yield Backend(server.port, server.wait_for_subscribers, server.drop_subscribers,
                      server.reset)


def redis_backend(directory: Path) -> Iterator[Backend]:
    """Three masters on loopback, joined by `redis-cli --cluster create`."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are not installed")
    ports = []
    processes = []
    try:
        for i in range(3):
            ports.append(cluster_port())
            processes.append(start_cluster_node(ports[-1], directory / f"node{i}"))
        for port in ports:
            wait_until(lambda port=port: answers(port), message="redis-server to start")
        subprocess.run(["redis-cli", "--cluster", "create",
                        *[f"127.0.0.1:{port}" for port in ports], "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, timeout=DEADLINE)
        for port in ports:
            wait_until(lambda port=port: cluster_ok(port), message="the cluster to be ok")
        nodes = [redis.Redis(port=port, protocol=2) for port in ports]

        def receivers(channel: str) -> int:
            return sum(node.pubsub_numsub(channel)[0][1] for node in nodes)

        def wait_for_subscribers(channel: str, n: int = 1) -> None:
            wait_until(lambda: receivers(channel) >= n, message=f"{n} subscribers")

        def drop_subscribers() -> int:
            return sum(node.client_kill_filter(_type="pubsub") for node in nodes)

        def flush() -> None:
            for node in nodes:
                node.flushall()

        yield Backend(ports[0], wait_for_subscribers, drop_subscribers, flush)
        for node in nodes:
            node.close()
    finally:
        for process in processes:
            stop(process)


@pytest.fixture(scope="module", params=["respd", "redis"])
def backend(request: pytest.FixtureRequest,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    if request.param == "respd":
        yield from respd_backend()
    else:
        yield from redis_backend(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def cluster(backend: Backend) -> Iterator[RedisCluster]:
    backend.flush()
    client = RedisCluster(host="127.0.0.1", port=backend.port)
    yield client
    client.close()


def test_orders_over_a_cluster(backend: Backend, cluster: RedisCluster) -> None:
    consumers = [OrderConsumer(cluster).start() for _ in range(2)]
    try:
        backend.wait_for_subscribers("orders", 2)
        producer = OrderProducer(cluster)
        assert producer.place("c-1", 10) == 2
        assert producer.place("c-2", 5) == 2
        for consumer in consumers:
            ids = [consumer.handled.get(timeout=DEADLINE)["id"] for _ in range(2)]
            assert ids == ["c-1", "c-2"]
        assert cluster.get("revenue") == b"30"
        assert cluster.get("order:c-2") == b'{"id": "c-2", "amount": 5}'
    finally:
        for consumer in consumers:
            consumer.stop()


def test_consumer_reconnects_on_a_cluster(backend: Backend, cluster: RedisCluster) -> None:
    consumer = OrderConsumer(cluster).start()
    try:
        backend.wait_for_subscribers("orders", 1)
        assert backend.drop_subscribers() == 1
        backend.wait_for_subscribers("orders", 1)
        assert OrderProducer(cluster).place("c-3", 1) == 1
        assert consumer.handled.get(timeout=DEADLINE)["id"] == "c-3"
    finally:
        consumer.stop()


def test_cache_over_a_cluster(backend: Backend, cluster: RedisCluster) -> None:
    calls = []

    def price(product: str) -> int:
        calls.append(product)
        return len(product)

    cache = Cache(cluster, price, "price", ttl=60)
    assert [cache.get(p) for p in ("tea", "coffee", "tea", "coffee")] == [3, 6, 3, 6]
    assert calls == ["tea", "coffee"]
    assert cache.invalidate("tea") is True
    assert cache.get("tea") == 3
    assert 0 < cluster.ttl("price:coffee") <= 60
