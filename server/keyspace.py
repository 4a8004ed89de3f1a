"""The databases of the cache: keys to values, expiry, eviction, notifications.

No sockets and no clock of its own: the keyspace takes the time from a function
(ms since the epoch) that unit tests replace, and publishes keyspace notifications
through the pub/sub hub like any publisher. `active_expiry` is the one trio task.

Rules kept here and only here, as Redis keeps them:
- A key with an expiry time `when` is logically gone once `now > when`. It is
  removed when touched (lazy expiry) or, at the latest, when the expiry task reaches
  its deadline: deadlines sit in one heap (earliest first), so a key goes, and its
  `expired` event is published, on time however many keys have a TTL. Redis samples
  keys instead and lets events lag behind when many keys have a TTL.
- Every change to a key goes through `store`, `delete`, `set_expire` or `persist`,
  which keep the indexes (bucket index, access times, heap, memory count) in
  agreement and tell the clients that WATCH the key.
- Values are `bytes` (a string as set), `bytearray` (a string changed in place by
  APPEND or SETRANGE: Redis's `raw` encoding) and, later, other Python types for
  hashes and lists; `type_name` maps them to Redis's type names.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from pubsub.hub import Hub
    from server.config import Config
    from server.connection import Connection
    from server.serve import Server
    from server.tracking import Tracking

Value = bytes | bytearray  # strings; hashes and lists will add their types here

# Keyspace notification classes: the flag letters of notify-keyspace-events.
KEYSPACE = 1 << 0  # K: __keyspace@<db>__:<key> channels
KEYEVENT = 1 << 1  # E: __keyevent@<db>__:<event> channels
GENERIC = 1 << 2  # g: DEL, EXPIRE, RENAME, ...
STRING = 1 << 3  # $
LIST = 1 << 4  # l
SET = 1 << 5  # s
HASH = 1 << 6  # h
ZSET = 1 << 7  # z
EXPIRED = 1 << 8  # x
EVICTED = 1 << 9  # e
STREAM = 1 << 10  # t
KEY_MISS = 1 << 11  # m (not part of A)
MODULE = 1 << 12  # d
NEW = 1 << 13  # n (not part of A)
ALL = GENERIC | STRING | LIST | SET | HASH | ZSET | EXPIRED | EVICTED | STREAM | MODULE

_CLASS_LETTERS = {"g": GENERIC, "$": STRING, "l": LIST, "s": SET, "h": HASH, "z": ZSET,
                  "x": EXPIRED, "e": EVICTED, "t": STREAM, "m": KEY_MISS, "d": MODULE,
                  "n": NEW, "K": KEYSPACE, "E": KEYEVENT, "A": ALL}
_PRINTED_IN_ALL = "g$lshzxetdn"  # Redis prints these one by one unless all of A is set


def parse_events(text: str) -> int:
    """notify-keyspace-events letters to flags; ValueError on a letter Redis refuses."""
    flags = 0
    for letter in text:
        if letter not in _CLASS_LETTERS:
            raise ValueError("Invalid event class character. Use 'Ag$lshzxeKEtmdn'.")
        flags |= _CLASS_LETTERS[letter]
    return flags


def format_events(flags: int) -> str:
    """Redis's canonical form for CONFIG GET: `A` when all of A is set (dropping `n`,
    as Redis does), then K, E and m."""
    if flags & ALL == ALL:
        text = "A"
    else:
        text = "".join(c for c in _PRINTED_IN_ALL if flags & _CLASS_LETTERS[c])
    return text + "".join(c for c in "KEm" if flags & _CLASS_LETTERS[c])


def wall_ms() -> int:
    """The real clock: milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


def type_name(value: object) -> bytes:
    """Redis's TYPE of a stored value."""
    return b"string" if type(value) in STRING_TYPES else b"none"


class FloatString(bytes):
    """An INCRBYFLOAT result: Redis stores it as a plain string even when it reads as an
    integer (OBJECT ENCODING says embstr, not int)."""

    __slots__ = ()


STRING_TYPES = (bytes, bytearray, FloatString)

# Memory accounting (see `cost`): bytes per key beyond its key and value objects
# (the slots of `data` and `access`, the bucket index), and per TTL (the `expires`
# slot, its int, the heap entry), measured as the process's growth for 200k keys
# with values of 10 to 1000 bytes (within 6% of it). The estimate is a model, not
# malloc's count; tests/test_cache_memory.py keeps it near the real growth.
KEY_OVERHEAD = 150
TTL_OVERHEAD = 170
_BYTES_HEADER = 33  # sys.getsizeof(b"")
_BYTEARRAY_HEADER = 57  # sys.getsizeof(bytearray())

_MIN_BUCKETS = 16
_HASH_BITS = 64
_HASH_MASK = (1 << _HASH_BITS) - 1
# Sampling (RANDOMKEY, eviction, LFU) draws from its own generator: an embedding program
# or test suite that seeds the `random` module keeps its sequence while respd runs.
_rng = random.Random()
LFU_INIT = 5  # a new key's LFU counter, as in Redis
EVICTION_POOL = 16  # best candidates kept between eviction samples


def cost(key: bytes, value: object) -> int:
    """Bytes one key is accounted for: its key and value objects and the per-key slots."""
    if type(value) is bytes or type(value) is FloatString:
        size = _BYTES_HEADER + len(value)
    elif type(value) is bytearray:
        size = _BYTEARRAY_HEADER + len(value)
    else:
        size = 64
    return KEY_OVERHEAD + _BYTES_HEADER + len(key) + size


class Database:
    """One numbered database: keys, their expiry times and the indexes over them."""

    __slots__ = ("access", "buckets", "data", "expire_sum", "expires", "index", "shift",
                 "watched")

    def __init__(self, index: int) -> None:
        self.index = index  # the number in notification channels (kept by SWAPDB)
        self.data: dict[bytes, Value] = {}  # key -> value
        self.expires: dict[bytes, int] = {}  # key -> absolute expiry, ms since the epoch
        self.expire_sum = 0  # sum of `expires` values, for INFO's avg_ttl
        self.access: dict[bytes, int] = {}  # key -> LRU clock (s) or LFU counter + minutes
        # Keys by the top bits of their hash: SCAN walks it in hash order (a cursor is a
        # position in hash space, so it stays valid while keys come and go and the table
        # grows), and RANDOMKEY and eviction draw random buckets from it.
        self.buckets: list[list[bytes]] = [[] for _ in range(_MIN_BUCKETS)]
        self.shift = _HASH_BITS - 4  # bucket = (hash & mask) >> shift
        self.watched: dict[bytes, dict[Connection, bool]] = {}  # key -> watchers

    def grow(self) -> None:
        """Double the bucket index (`store` adds keys to it, inline for speed)."""
        self._reindex(len(self.buckets) * 2)

    def _index_remove(self, key: bytes) -> None:
        """Forget a key in the bucket index, halving it when mostly empty."""
        self.buckets[(hash(key) & _HASH_MASK) >> self.shift].remove(key)
        if len(self.data) * 2 < len(self.buckets) > _MIN_BUCKETS:
            self._reindex(len(self.buckets) // 2)

    def _reindex(self, size: int) -> None:
        """Rebuild the bucket index with `size` buckets (a power of two)."""
        self.shift = shift = _HASH_BITS - size.bit_length() + 1
        self.buckets = buckets = [[] for _ in range(size)]
        for key in self.data:
            buckets[(hash(key) & _HASH_MASK) >> shift].append(key)

    def clear(self) -> None:
        """Drop every key (FLUSHDB); watchers are the caller's business."""
        self.data = {}
        self.expires = {}
        self.access = {}
        self.expire_sum = 0
        self.buckets = [[] for _ in range(_MIN_BUCKETS)]
        self.shift = _HASH_BITS - 4

    def swap_contents(self, other: Database) -> None:
        """Exchange keys with another database; numbers and watchers stay (SWAPDB)."""
        for name in ("data", "expires", "expire_sum", "access", "buckets", "shift"):
            mine = getattr(self, name)
            setattr(self, name, getattr(other, name))
            setattr(other, name, mine)

    def scan(self, cursor: int, count: int) -> tuple[list[bytes], int]:
        """Keys from hash position `cursor` on, whole buckets until `count` are taken.

        Returns the keys and the next cursor (0 when the walk is complete). Every key
        present from the first call to the last is returned exactly once.
        """
        shift = self.shift
        buckets = self.buckets
        index = cursor >> shift
        found: list[bytes] = []
        if index < len(buckets):
            found = [k for k in buckets[index] if (hash(k) & _HASH_MASK) >= cursor]
            index += 1
        while len(found) < count and index < len(buckets):
            found.extend(buckets[index])
            index += 1
        return found, (0 if index >= len(buckets) else index << shift)

    def random_key(self) -> bytes | None:
        """A key drawn from a random non-empty bucket (not exactly uniform, like Redis)."""
        if not self.data:
            return None
        buckets = self.buckets
        while True:
            bucket = buckets[_rng.randrange(len(buckets))]
            if bucket:
                return bucket[_rng.randrange(len(bucket))]


class Keyspace:
    """The numbered databases (16 by default) that SELECT chooses among, and the
    machinery shared by all of them: expiry heap, statistics, memory count, eviction."""

    def __init__(self, config: Config, hub: Hub | None = None,
                 now: Callable[[], int] = wall_ms) -> None:
        self.dbs = [Database(i) for i in range(config["databases"])]
        self.hub = hub  # where notifications are published (None: nowhere)
        self.tracking: Tracking | None = None  # client-side caching, told of every change
        self.now = now  # ms since the epoch
        self.heap: list[tuple[int, int, bytes]] = []  # (when, db, key); stale entries skipped
        self.expiring = 0  # keys with a TTL, all databases
        self.next_wake = 1 << 62  # deadline (ms) the expiry task sleeps until
        self.wake: Callable[[int], None] | None = None  # tells the task of an earlier deadline
        self.clock = now() // 1000  # LRU clock in seconds, advanced by `tick`
        self.expired_keys = 0
        self.evicted_keys = 0
        self.hits = 0
        self.misses = 0
        self.used = 0  # accounted bytes of all keys (see `cost`)
        self.events = 0  # notify-keyspace-events flags
        self.maxmemory = 0
        self.policy = "noeviction"
        self.lfu = False  # access holds LFU counters rather than LRU times
        self.samples = 5
        self.lfu_log_factor = 10
        self.lfu_decay_time = 1
        self._pool: list[tuple[int, float, int, bytes]] = []  # eviction candidates, best first
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take the parameters in force (at start and after CONFIG SET)."""
        self.events = config["notify-keyspace-events"]
        self.maxmemory = config["maxmemory"]
        self.policy = config["maxmemory-policy"]
        self.lfu = self.policy.endswith("lfu")
        self.samples = config["maxmemory-samples"]
        self.lfu_log_factor = config["lfu-log-factor"]
        self.lfu_decay_time = config["lfu-decay-time"]
        self._pool.clear()

    def tick(self) -> None:
        """Advance the LRU clock (seconds), as Redis's server cron does."""
        self.clock = self.now() // 1000

    # --- notifications and watchers ------------------------------------------------

    def notify(self, kind: int, event: bytes, key: bytes, db: int) -> None:
        """Publish a keyspace event if its class is enabled: keyspace channel first."""
        flags = self.events
        if not flags & kind or self.hub is None:
            return
        if flags & KEYSPACE:
            self.hub.publish(b"__keyspace@%d__:%b" % (db, key), event)
        if flags & KEYEVENT:
            self.hub.publish(b"__keyevent@%d__:%b" % (db, event), key)

    def touch_watchers(self, db: Database, key: bytes) -> None:
        """Mark the transactions of the clients watching key as failed (signalModifiedKey).

        A client that watched the key when it had already expired is not failed by
        the removal of that key: logically nothing changed (Redis 7 rule).
        """
        watchers = db.watched.get(key)
        if not watchers:
            return
        for conn, was_expired in list(watchers.items()):
            if was_expired and key not in db.data:
                watchers[conn] = False
                continue
            conn.watch_dirty = True

    def touch_all_watchers(self, db: Database, other: Database | None = None) -> None:
        """FLUSHDB/SWAPDB: fail watchers of every watched key that exists in db (or other)."""
        for key in list(db.watched):
            if key in db.data or (other is not None and key in other.data):
                for conn in db.watched[key]:
                    conn.watch_dirty = True

    # --- lookups --------------------------------------------------------------------

    def read(self, db: Database, key: bytes, touch: bool = True) -> Value | None:
        """Look up a key for reading (lookupKeyRead): expiry, hit/miss stats, and unless
        not touch (Redis's LOOKUP_NOTOUCH), its access time."""
        value = db.data.get(key)
        if value is not None and db.expires and key in db.expires \
                and db.expires[key] < self.now():
            self.expire_key(db, key)
            value = None
        if value is None:
            self.misses += 1
            if self.events & KEY_MISS:
                self.notify(KEY_MISS, b"keymiss", key, db.index)
            return None
        self.hits += 1
        if touch:
            self._touch(db, key)
        return value

    def write(self, db: Database, key: bytes) -> Value | None:
        """Look up a key about to be changed (lookupKeyWrite): expiry and access time."""
        value = self.peek(db, key)
        if value is not None:
            self._touch(db, key)
        return value

    def peek(self, db: Database, key: bytes) -> Value | None:
        """Look up a key without touching its access time or the stats (expiry still applies)."""
        value = db.data.get(key)
        if value is not None and db.expires and key in db.expires \
                and db.expires[key] < self.now():
            self.expire_key(db, key)
            return None
        return value

    def is_expired(self, db: Database, key: bytes) -> bool:
        """Whether key has a TTL that has passed (it may not be removed yet)."""
        when = db.expires.get(key)
        return when is not None and when < self.now()

    def live_keys(self, db: Database) -> Iterator[bytes]:
        """Keys that have not logically expired (KEYS), without removing any."""
        expires = db.expires
        if not expires:
            return iter(list(db.data))
        now = self.now()
        return (k for k in list(db.data) if expires.get(k, now) >= now)

    # --- changes --------------------------------------------------------------------

    def store(self, db: Database, key: bytes, value: Value, keepttl: bool = False) -> None:
        """Set key to value, adding it or replacing it (setKey); the TTL goes unless kept."""
        data = db.data
        old = data.get(key)
        if old is not None and db.expires and key in db.expires \
                and db.expires[key] < self.now():
            self.expire_key(db, key)
            old = None
        if old is None:
            data[key] = value
            buckets = db.buckets
            buckets[(hash(key) & _HASH_MASK) >> db.shift].append(key)
            if len(data) > 8 * len(buckets):
                db.grow()
            self.used += cost(key, value)
            if self.events & NEW:
                self.notify(NEW, b"new", key, db.index)
        else:
            data[key] = value
            if type(value) is bytes and type(old) is bytes:  # the key's part is unchanged
                self.used += len(value) - len(old)
            else:
                self.used += cost(key, value) - cost(key, old)
            if not keepttl and db.expires and key in db.expires:
                self._drop_ttl(db, key)
        if self.lfu:  # _touch, inlined on SET's path, with a new key's initial counter
            if old is None:
                db.access[key] = self._lfu_new()
            else:
                self._lfu_touch(db, key)
        else:
            db.access[key] = self.clock
        if db.watched:
            self.touch_watchers(db, key)
        if self.tracking is not None:
            self.tracking.invalidate_key(key)

    def replace(self, db: Database, key: bytes, value: Value) -> None:
        """Change an existing key's value in place (APPEND, SETRANGE, INCR): TTL kept."""
        old = db.data[key]
        db.data[key] = value
        self.used += cost(key, value) - cost(key, old)
        if db.watched:
            self.touch_watchers(db, key)
        if self.tracking is not None:
            self.tracking.invalidate_key(key)

    def delete(self, db: Database, key: bytes) -> bool:
        """Remove a key if present (no notification: the caller knows the event)."""
        value = db.data.pop(key, None)
        if value is None:
            return False
        db._index_remove(key)
        db.access.pop(key, None)
        self.used -= cost(key, value)
        if db.expires and key in db.expires:
            self._drop_ttl(db, key)
        if db.watched:
            self.touch_watchers(db, key)
        if self.tracking is not None:
            self.tracking.invalidate_key(key)
        return True

    def set_expire(self, db: Database, key: bytes, when: int) -> None:
        """Give an existing key an absolute expiry time (ms since the epoch)."""
        expires = db.expires
        old = expires.get(key)
        if old is None:
            self.used += TTL_OVERHEAD
            self.expiring += 1
            db.expire_sum += when
        else:
            db.expire_sum += when - old
        expires[key] = when
        heapq.heappush(self.heap, (when, db.index, key))
        if len(self.heap) > 2 * self.expiring + 1024:
            self.rebuild_heap()
        if when < self.next_wake:
            self.next_wake = when
            if self.wake is not None:
                self.wake(when)
        if db.watched:
            self.touch_watchers(db, key)
        if self.tracking is not None:
            self.tracking.invalidate_key(key)

    def persist(self, db: Database, key: bytes) -> bool:
        """Remove a key's TTL; False if it had none."""
        if key not in db.expires:
            return False
        self._drop_ttl(db, key)
        if db.watched:
            self.touch_watchers(db, key)
        if self.tracking is not None:
            self.tracking.invalidate_key(key)
        return True

    def _drop_ttl(self, db: Database, key: bytes) -> None:
        """Forget a TTL (its heap entry becomes stale and is skipped when reached)."""
        db.expire_sum -= db.expires.pop(key)
        self.expiring -= 1
        self.used -= TTL_OVERHEAD

    def flush(self, db: Database) -> None:
        """Remove every key of db (FLUSHDB): watchers of existing keys are told, and
        tracking clients drop their caches."""
        self._clear(db)
        if self.tracking is not None:
            self.tracking.flushed()

    def flush_all(self) -> None:
        """Remove every key of every database (FLUSHALL), telling tracking clients once."""
        for db in self.dbs:
            self._clear(db)
        if self.tracking is not None:
            self.tracking.flushed()

    def _clear(self, db: Database) -> None:
        """Remove every key of db; watchers of existing keys are told."""
        if db.watched:
            self.touch_all_watchers(db)
        for key, value in db.data.items():
            self.used -= cost(key, value)
        self.used -= TTL_OVERHEAD * len(db.expires)
        self.expiring -= len(db.expires)
        db.clear()
        if not self.expiring:
            self.heap = []

    def swap(self, a: Database, b: Database) -> None:
        """Exchange two databases' keys (SWAPDB); watchers of either side are told."""
        self.touch_all_watchers(a, b)
        self.touch_all_watchers(b, a)
        a.swap_contents(b)
        self.rebuild_heap()

    def rebuild_heap(self) -> None:
        """Rebuild the expiry heap from the databases, dropping stale entries."""
        self.heap = [(when, db.index, key) for db in self.dbs for key, when in db.expires.items()]
        heapq.heapify(self.heap)

    # --- expiry -------------------------------------------------------------------

    def expire_key(self, db: Database, key: bytes) -> None:
        """Remove a key whose TTL has passed, with its `expired` event."""
        self.delete(db, key)
        self.expired_keys += 1
        self.notify(EXPIRED, b"expired", key, db.index)

    def expire_due(self, limit: int) -> int:
        """Remove up to limit keys whose deadline has passed; return how many went."""
        heap = self.heap
        now = self.now()
        done = 0
        dbs = self.dbs
        while heap and heap[0][0] < now and done < limit:
            when, index, key = heapq.heappop(heap)
            db = dbs[index]
            if db.expires.get(key) == when:
                self.expire_key(db, key)
                done += 1
        return done

    def next_deadline(self) -> int | None:
        """The earliest expiry time still in force (ms), dropping stale heap entries."""
        heap = self.heap
        dbs = self.dbs
        while heap:
            when, index, key = heap[0]
            if dbs[index].expires.get(key) == when:
                return when
            heapq.heappop(heap)
        return None

    # --- LFU ------------------------------------------------------------------------

    def _minutes(self) -> int:
        return (self.now() // 60000) & 0xFFFF

    def _lfu_new(self) -> int:
        return (self._minutes() << 8) | LFU_INIT

    def lfu_counter(self, packed: int) -> int:
        """The counter after decay: minus one per lfu-decay-time minutes idle (LFUDecrAndReturn)."""
        counter = packed & 0xFF
        if self.lfu_decay_time:
            elapsed = (self._minutes() - (packed >> 8)) & 0xFFFF
            counter = max(0, counter - elapsed // self.lfu_decay_time)
        return counter

    def _touch(self, db: Database, key: bytes) -> None:
        """Record an access to key: its LRU clock, or its LFU counter."""
        if self.lfu:
            self._lfu_touch(db, key)
        else:
            db.access[key] = self.clock

    def _lfu_touch(self, db: Database, key: bytes) -> None:
        """Decay then logarithmically increment a key's LFU counter (LFULogIncr)."""
        counter = self.lfu_counter(db.access.get(key, LFU_INIT))
        if counter < 255:
            base = max(0, counter - LFU_INIT)
            if _rng.random() < 1.0 / (base * self.lfu_log_factor + 1):
                counter += 1
        db.access[key] = (self._minutes() << 8) | counter

    # --- eviction -----------------------------------------------------------------

    def make_room(self) -> bool:
        """Evict keys by the policy until under maxmemory; False if that is impossible."""
        while self.used > self.maxmemory:
            victim = self._victim()
            if victim is None:
                return False
            db, key = victim
            self.delete(db, key)
            self.evicted_keys += 1
            self.notify(EVICTED, b"evicted", key, db.index)
        return True

    def _victim(self) -> tuple[Database, bytes] | None:
        """The key the policy evicts next, or None (noeviction, or nothing to evict)."""
        policy = self.policy
        if policy == "noeviction":
            return None
        if policy == "volatile-ttl":
            when = self.next_deadline()
            if when is None:
                return None
            _, index, key = self.heap[0]
            return self.dbs[index], key
        if policy.startswith("volatile"):
            candidates = [db for db in self.dbs if db.expires]
        else:
            candidates = [db for db in self.dbs if db.data]
        if not candidates:
            return None
        if policy.endswith("random"):
            db = _rng.choice(candidates)
            return db, (self._random_volatile(db) if policy.startswith("volatile")
                        else db.random_key())
        return self._sampled(candidates, policy.startswith("volatile"))

    def _random_volatile(self, db: Database) -> bytes:
        """A random key with a TTL in db, from the heap (its entries can be drawn at random)."""
        heap = self.heap
        while True:
            when, index, key = heap[_rng.randrange(len(heap))]
            if index == db.index and db.expires.get(key) == when:
                return key

    def _sampled(self, candidates: list[Database], volatile: bool) -> tuple[Database, bytes]:
        """Approximated LRU/LFU as Redis does it: sample keys into a pool of the best
        candidates (most idle, least frequent) and evict the best that still exists."""
        pool = self._pool
        lfu = self.lfu
        for db in candidates:
            access = db.access
            for _ in range(self.samples):
                key = self._random_volatile(db) if volatile else db.random_key()
                if key is None:
                    break
                packed = access.get(key, 0)
                score = -self.lfu_counter(packed) if lfu else self.clock - packed
                # Equal scores are common (1 s clock): the random second field keeps the
                # choice among them from following key names.
                pool.append((score, _rng.random(), db.index, key))
        pool.sort(reverse=True)
        del pool[EVICTION_POOL:]
        while pool:
            _, _, index, key = pool.pop(0)
            db = self.dbs[index]
            if key in db.data and (not volatile or key in db.expires):
                return db, key
        return self._sampled(candidates, volatile)

    # --- INFO -----------------------------------------------------------------------

    def avg_ttl(self, db: Database) -> int:
        """Average remaining TTL (ms) of the keys of db that have one."""
        if not db.expires:
            return 0
        return max(0, db.expire_sum // len(db.expires) - self.now())


EXPIRY_BATCH = 1000  # keys expired before letting other tasks run
TICK = 1.0  # seconds between LRU clock updates when nothing expires


async def active_expiry(server: Server) -> None:
    """Remove keys at their deadlines and publish their `expired` events (a server task).

    Sleeps until the earliest deadline (a key is expired once now > when, so 1 ms
    after it), or until a command sets an earlier one, which moves the sleep's
    deadline; expires due keys in batches, sending the notifications after each.
    """
    keyspace = server.keyspace
    scope: trio.CancelScope | None = None

    def wake(when: int) -> None:
        if scope is not None:
            scope.deadline = min(scope.deadline,
                                 trio.current_time() + (when + 1 - keyspace.now()) / 1000)

    keyspace.wake = wake
    try:
        while True:
            keyspace.tick()
            done = keyspace.expire_due(EXPIRY_BATCH)
            if server.hub.has_touched():
                server.flush_touched(None)
            if done == EXPIRY_BATCH:
                await trio.sleep(0)
                continue
            when = keyspace.next_deadline()
            delay = TICK if when is None else min(TICK, (when + 1 - keyspace.now()) / 1000)
            keyspace.next_wake = when if when is not None else 1 << 62
            with trio.CancelScope(deadline=trio.current_time() + max(0.0, delay)) as scope:
                await trio.sleep_forever()
            scope = None
    finally:
        keyspace.wake = None
