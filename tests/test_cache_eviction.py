"""maxmemory: fill past the limit under each policy and look at what was evicted.

Which keys the sampled LRU/LFU policies pick, with a fake clock, is tested in
tests/test_keyspace.py; here the server keeps its memory under the limit, evicts
only what the policy allows, says so with `evicted` events and counts them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tests.conftest import DEADLINE

pytestmark = pytest.mark.timeout(60)

LIMIT = 1_000_000
VALUE = "x" * 1000
PLAIN = [f"plain:{i}" for i in range(300)]  # no TTL: ~0.36 MB
VOLATILE = [f"ttl:{i}" for i in range(1200)]  # TTLs growing with i: ~1.6 MB
ONE_KEY = 1500  # accounted bytes of one of these keys, with its TTL, at most


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def r(request: pytest.FixtureRequest, respd_port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(port=respd_port, protocol=request.param, decode_responses=True)
    yield client
    client.close()


def _fill(r: redis.Redis, policy: str) -> tuple[set[str], list[str]]:
    """Write the plain keys, then the TTL keys, past the limit; return what is left and
    the evicted keys in the order their `evicted` events came."""
    written = set(r.keys("*")) | set(PLAIN + VOLATILE)
    r.config_set("maxmemory-policy", policy)
    r.config_set("maxmemory", LIMIT)
    r.config_set("notify-keyspace-events", "Ee")
    pubsub = r.pubsub()
    pubsub.subscribe("__keyevent@0__:evicted")
    pipe = r.pipeline(transaction=False)
    for key in PLAIN:
        pipe.set(key, VALUE)
    for i, key in enumerate(VOLATILE):
        pipe.set(key, VALUE, ex=1000 + i)
    pipe.execute()
    # As in Redis, room is made before each write, so the last write may go past the
    # limit by the size of one key until the next write.
    assert r.info("memory")["used_memory"] <= LIMIT + ONE_KEY
    left = set(r.keys("*"))
    evicted: list[str] = []
    expected = r.info("stats")["evicted_keys"]
    end = time.monotonic() + DEADLINE
    while len(evicted) < expected and time.monotonic() < end:
        message = pubsub.get_message(timeout=0.1, ignore_subscribe_messages=True)
        if message is not None:
            evicted.append(message["data"])
    pubsub.close()
    assert expected == len(written) - len(left) > 0
    assert set(evicted) == written - left
    return left, evicted


@pytest.mark.parametrize("policy", ["allkeys-lru", "allkeys-lfu", "allkeys-random"])
def test_allkeys_policies_evict_any_key(r: redis.Redis, policy: str) -> None:
    left, evicted = _fill(r, policy)
    assert len(left) < len(PLAIN) + len(VOLATILE)
    assert any(key.startswith("plain:") for key in evicted)  # with or without a TTL


@pytest.mark.parametrize("policy", ["volatile-lru", "volatile-lfu", "volatile-random"])
def test_volatile_policies_evict_only_keys_with_a_ttl(r: redis.Redis, policy: str) -> None:
    left, evicted = _fill(r, policy)
    assert set(PLAIN) <= left
    assert all(key.startswith("ttl:") for key in evicted)


def test_volatile_ttl_evicts_the_nearest_deadlines_first(r: redis.Redis) -> None:
    left, evicted = _fill(r, "volatile-ttl")
    assert set(PLAIN) <= left
    assert evicted == VOLATILE[:len(evicted)]


def test_lfu_keeps_the_keys_in_use(r: redis.Redis) -> None:
    r.config_set("maxmemory-policy", "allkeys-lfu")
    hot = [f"hot:{i}" for i in range(20)]
    for key in hot:
        r.set(key, VALUE)
    for _ in range(30):
        r.mget(hot)
    assert r.object("freq", hot[0]) > 5  # new keys start at 5, as in Redis
    left, _ = _fill(r, "allkeys-lfu")
    assert set(hot) <= left


def test_noeviction_refuses_writes_but_serves_reads(r: redis.Redis) -> None:
    r.config_set("maxmemory", LIMIT)
    pipe = r.pipeline(transaction=False)
    for key in PLAIN + VOLATILE:
        pipe.set(key, VALUE)
    results = pipe.execute(raise_on_error=False)
    refused = [result for result in results if isinstance(result, redis.ResponseError)]
    assert refused and all(isinstance(e, redis.exceptions.OutOfMemoryError) for e in refused)
    assert str(refused[0]) == "command not allowed when used memory > 'maxmemory'."
    assert r.info("stats")["evicted_keys"] == 0
    assert r.get(PLAIN[0]) == VALUE  # reads still work, and so do deletes
    with r.pipeline() as pipe:  # inside MULTI even a read is refused: EXEC aborts
        pipe.get(PLAIN[0])
        with pytest.raises(redis.exceptions.OutOfMemoryError):  # redis-py's EXECABORT
            pipe.execute()
    r.delete(*PLAIN)
    assert r.set("again", "v")


def test_lowering_maxmemory_evicts_at_once(r: redis.Redis) -> None:
    r.mset({key: VALUE for key in PLAIN})
    r.config_set("maxmemory-policy", "allkeys-random")
    r.config_set("maxmemory", 100_000)
    assert r.info("memory")["used_memory"] <= 100_000
    assert r.dbsize() < len(PLAIN)
