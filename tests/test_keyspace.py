"""The keyspace alone, with a fake clock: expiry, the SCAN cursor, memory, eviction."""

from __future__ import annotations

import random

import pytest

from pubsub.hub import PATTERN, Hub, Subscriber
from server.config import Config, ConfigError
from server.keyspace import (
    ALL,
    KEY_MISS,
    KEYEVENT,
    KEYSPACE,
    NEW,
    Keyspace,
    format_events,
    parse_events,
)


class Clock:
    """Milliseconds since the epoch, moved by hand."""

    def __init__(self) -> None:
        self.ms = 1_700_000_000_000

    def __call__(self) -> int:
        return self.ms


def make(clock: Clock, **options: object) -> Keyspace:
    return Keyspace(Config(**options), Hub(), now=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def ks(clock: Clock) -> Keyspace:
    return make(clock)


def test_a_key_expires_after_its_deadline_not_at_it(ks: Keyspace, clock: Clock) -> None:
    db = ks.dbs[0]
    ks.store(db, b"k", b"v")
    ks.set_expire(db, b"k", clock.ms + 100)
    clock.ms += 100
    assert ks.read(db, b"k") == b"v"  # Redis: expired once now > when
    clock.ms += 1
    assert ks.read(db, b"k") is None
    assert ks.expired_keys == 1
    assert not db.data and not db.expires and ks.used == 0


def test_active_expiry_takes_keys_in_deadline_order(ks: Keyspace, clock: Clock) -> None:
    db = ks.dbs[3]
    for i in range(100):
        ks.store(db, b"k%d" % i, b"v")
        ks.set_expire(db, b"k%d" % i, clock.ms + 1000 - i)
    assert ks.next_deadline() == clock.ms + 901
    clock.ms += 950
    assert ks.expire_due(1000) == 49  # deadlines 901..949 have passed (now > when)
    assert sorted(db.data) == sorted(b"k%d" % i for i in range(51))
    clock.ms += 1000
    assert ks.expire_due(10) == 10
    assert ks.expire_due(1000) == 41
    assert ks.next_deadline() is None and ks.expiring == 0


def test_changed_deadlines_leave_stale_heap_entries_that_are_skipped(
        ks: Keyspace, clock: Clock) -> None:
    db = ks.dbs[0]
    ks.store(db, b"k", b"v")
    for step in range(1, 5000):
        ks.set_expire(db, b"k", clock.ms + step)
    assert len(ks.heap) < 2 * ks.expiring + 1025  # rebuilt when mostly stale
    assert ks.next_deadline() == clock.ms + 4999
    ks.persist(db, b"k")
    clock.ms += 10_000
    assert ks.expire_due(1000) == 0 and ks.read(db, b"k") == b"v"


def test_overwriting_clears_the_ttl_unless_kept(ks: Keyspace, clock: Clock) -> None:
    db = ks.dbs[0]
    ks.store(db, b"k", b"v")
    ks.set_expire(db, b"k", clock.ms + 10)
    ks.store(db, b"k", b"w", keepttl=True)
    assert db.expires[b"k"] == clock.ms + 10
    ks.store(db, b"k", b"x")
    assert b"k" not in db.expires and ks.expiring == 0


def test_wake_is_called_for_an_earlier_deadline_only(ks: Keyspace, clock: Clock) -> None:
    woken: list[int] = []
    ks.wake = woken.append
    ks.next_wake = clock.ms + 500
    db = ks.dbs[0]
    ks.store(db, b"a", b"v")
    ks.set_expire(db, b"a", clock.ms + 900)
    ks.set_expire(db, b"a", clock.ms + 100)
    assert woken == [clock.ms + 100]


def test_scan_returns_every_key_present_throughout_exactly_once(ks: Keyspace) -> None:
    """Keys come and go and the table grows and shrinks between calls."""
    rng = random.Random(4)
    db = ks.dbs[0]
    stable = {b"stable:%d" % i for i in range(3000)}
    for key in stable:
        ks.store(db, key, b"v")
    seen: list[bytes] = []
    cursor, churn = 0, 0
    sizes = {len(db.buckets)}
    while True:
        found, cursor = db.scan(cursor, 10)
        seen.extend(found)
        for _ in range(rng.randrange(80)):  # add many: the index doubles on the way
            churn += 1
            ks.store(db, b"churn:%d" % churn, b"v")
        churning = sorted(k for k in db.data if k.startswith(b"churn"))
        for key in rng.sample(churning, k=min(30, len(churning) // 3)):
            ks.delete(db, key)
        sizes.add(len(db.buckets))
        if cursor == 0:
            break
    assert len(sizes) > 1
    counted = [k for k in seen if k in stable]
    assert sorted(counted) == sorted(stable)  # all of them, none twice


def test_scan_cursor_survives_the_index_shrinking(ks: Keyspace) -> None:
    db = ks.dbs[0]
    for i in range(5000):
        ks.store(db, b"k%d" % i, b"v")
    keep = {b"k%d" % i for i in range(0, 5000, 50)}
    found, cursor = db.scan(0, 500)
    seen = set(found)
    for i in range(5000):
        if b"k%d" % i not in keep:
            ks.delete(db, b"k%d" % i)
    while cursor:
        found, cursor = db.scan(cursor, 10)
        assert not seen & set(found) & keep
        seen.update(found)
    assert keep <= seen


def test_random_key_and_index_size(ks: Keyspace) -> None:
    db = ks.dbs[0]
    assert db.random_key() is None
    for i in range(1000):
        ks.store(db, b"k%d" % i, b"v")
    assert len(db.buckets) == 128  # doubled while growing (at most 8 keys a bucket)
    assert {db.random_key() for _ in range(2000)} <= set(db.data)
    for i in range(990):
        ks.delete(db, b"k%d" % i)
    assert len(db.buckets) == 16
    assert {db.random_key() for _ in range(200)} == set(db.data)


def test_memory_count_follows_every_change(ks: Keyspace, clock: Clock) -> None:
    db, other = ks.dbs[0], ks.dbs[1]
    ks.store(db, b"a", b"x" * 100)
    one = ks.used
    ks.set_expire(db, b"a", clock.ms + 1000)
    with_ttl = ks.used
    assert with_ttl > one
    ks.store(db, b"a", b"x" * 200, keepttl=True)
    assert ks.used == with_ttl + 100
    ks.replace(db, b"a", bytearray(b"y" * 10))
    ks.store(other, b"b", b"z")
    ks.swap(db, other)
    ks.flush(db)
    ks.persist(other, b"a")
    ks.delete(other, b"a")
    assert ks.used == 0 and ks.expiring == 0


def _evict(ks: Keyspace, count: int) -> None:
    ks.maxmemory = ks.used - 1
    for _ in range(count):
        assert ks.make_room()
        ks.maxmemory = ks.used - 1
    ks.maxmemory = 0


def test_noeviction_cannot_make_room(ks: Keyspace) -> None:
    ks.store(ks.dbs[0], b"k", b"v")
    ks.maxmemory = 10
    assert not ks.make_room() and ks.evicted_keys == 0


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru"])
def test_lru_evicts_the_idle_keys(clock: Clock, policy: str) -> None:
    random.seed(1)
    ks = make(clock, maxmemory_policy=policy)
    db = ks.dbs[0]
    for i in range(400):
        ks.store(db, b"old%d" % i, b"v")
        ks.set_expire(db, b"old%d" % i, clock.ms + 10**9)
    clock.ms += 100_000
    ks.tick()
    for i in range(400):
        ks.store(db, b"new%d" % i, b"v")
        ks.set_expire(db, b"new%d" % i, clock.ms + 10**9)
    _evict(ks, 100)
    evicted_new = sum(1 for i in range(400) if b"new%d" % i not in db.data)
    assert ks.evicted_keys == 100 and evicted_new <= 5


@pytest.mark.parametrize("policy", ["allkeys-lfu", "volatile-lfu"])
def test_lfu_evicts_the_rarely_used_keys(clock: Clock, policy: str) -> None:
    random.seed(2)
    ks = make(clock, maxmemory_policy=policy)
    db = ks.dbs[0]
    for i in range(400):
        for name in (b"rare%d" % i, b"hot%d" % i):
            ks.store(db, name, b"v")
            ks.set_expire(db, name, clock.ms + 10**9)
        for _ in range(50):
            ks.read(db, b"hot%d" % i)
    _evict(ks, 100)
    evicted_hot = sum(1 for i in range(400) if b"hot%d" % i not in db.data)
    assert ks.evicted_keys == 100 and evicted_hot <= 5


def test_volatile_policies_spare_keys_without_ttl(clock: Clock) -> None:
    for policy in ("volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl"):
        ks = make(clock, maxmemory_policy=policy)
        db = ks.dbs[0]
        for i in range(50):
            ks.store(db, b"keep%d" % i, b"v")
            ks.store(db, b"ttl%d" % i, b"v")
            ks.set_expire(db, b"ttl%d" % i, clock.ms + 1000 + i)
        ks.maxmemory = 1
        assert not ks.make_room(), policy  # only the TTL keys could go
        assert sorted(db.data) == sorted(b"keep%d" % i for i in range(50)), policy
        assert ks.evicted_keys == 50


def test_volatile_ttl_evicts_the_nearest_deadline_first(ks: Keyspace, clock: Clock) -> None:
    ks.policy = "volatile-ttl"
    db = ks.dbs[0]
    for i in range(20):
        ks.store(db, b"k%d" % i, b"v")
        ks.set_expire(db, b"k%d" % i, clock.ms + 1000 - i)
    _evict(ks, 5)
    assert sorted(db.data) == sorted(b"k%d" % i for i in range(15))


def test_allkeys_random_evicts_from_every_database(ks: Keyspace) -> None:
    random.seed(3)
    ks.policy = "allkeys-random"
    for index in (0, 5):
        for i in range(100):
            ks.store(ks.dbs[index], b"k%d" % i, b"v")
    _evict(ks, 100)
    assert len(ks.dbs[0].data) + len(ks.dbs[5].data) == 100
    assert ks.dbs[0].data and ks.dbs[5].data


class Listener(Subscriber):
    __slots__ = ()


def _messages(sub: Subscriber) -> list[tuple[bytes, bytes]]:
    frames = [frame.split(b"\r\n") for frame in sub.outbox]
    sub.outbox.clear()
    return [(parts[6], parts[8]) for parts in frames]


def test_notifications_go_to_keyspace_then_keyevent_channels(ks: Keyspace,
                                                            clock: Clock) -> None:
    assert ks.hub is not None
    sub = Listener()
    ks.hub.subscribe(sub, PATTERN, [b"*"])
    db = ks.dbs[2]
    ks.events = KEYSPACE | KEYEVENT | ALL | NEW | KEY_MISS
    ks.store(db, b"k", b"v")
    ks.set_expire(db, b"k", clock.ms)
    clock.ms += 1
    assert ks.read(db, b"k") is None
    assert _messages(sub) == [
        (b"__keyspace@2__:k", b"new"), (b"__keyevent@2__:new", b"k"),
        (b"__keyspace@2__:k", b"expired"), (b"__keyevent@2__:expired", b"k"),
        (b"__keyspace@2__:k", b"keymiss"), (b"__keyevent@2__:keymiss", b"k"),
    ]
    ks.events = KEYEVENT | ALL  # no K: keyevent channel only; no n or m
    ks.store(db, b"k", b"v")
    ks.read(db, b"nokey")
    ks.notify(ALL, b"set", b"k", 2)
    assert _messages(sub) == [(b"__keyevent@2__:set", b"k")]


@pytest.mark.parametrize(("letters", "shown"), [
    ("", ""), ("KEA", "AKE"), ("KEAnm", "AKEm"), ("AK", "AK"), ("Ex", "xE"),
    ("g$lshzxetdKE", "AKE"), ("nK", "nK"), ("mE", "Em"), ("$gK", "g$K"),
])
def test_event_flags_print_in_redis_order(letters: str, shown: str) -> None:
    assert format_events(parse_events(letters)) == shown


def test_event_flags_reject_unknown_letters() -> None:
    with pytest.raises(ValueError, match="Use 'Ag\\$lshzxeKEtmdn'"):
        parse_events("KEw")
    config = Config()
    with pytest.raises(ConfigError, match="Invalid event class character"):
        config.set([(b"notify-keyspace-events", b"KEQ")])
    assert Config(notify_keyspace_events="KEA")["notify-keyspace-events"] == parse_events("KEA")
