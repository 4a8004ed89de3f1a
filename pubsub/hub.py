"""The broker: channels, patterns and shard channels, and the frames they produce.

No sockets here. A subscriber is an object with an outbox (a list of encoded frames
and replies, and their byte count); the hub appends frames to it and records it as
touched (itself, or the subscriber set it was reached through), so the server can send
each touched outbox once after a batch of commands (`take_touched`).

State is a double index kept in agreement here and only here: hub side, name ->
subscribers (an insertion-ordered dict used as a set); subscriber side, its names.
A name's entry goes when its last subscriber leaves.

The three kinds of subscription differ only in data (`Kind`): which index, which
reply strings, which message frame, and which subscriptions the reply count counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pubsub.glob import compile_pattern, literal_prefix, match
from resp.encode import bulk, integer

_MATCH_CACHE_LIMIT = 65536  # channels whose matching patterns are remembered


class Subscriber:
    """What the hub needs of a client: an outbox, its protocol and its subscriptions."""

    __slots__ = ("channels", "outbox", "outbox_size", "patterns", "resp3", "shard_channels",
                 "subscribed")

    def __init__(self) -> None:
        self.outbox: list[bytes] = []  # encoded bytes waiting to be sent, in order
        self.outbox_size = 0  # bytes in outbox, for the output-buffer limits
        self.resp3 = False  # frames are RESP3 pushes rather than RESP2 arrays
        self.channels: dict[bytes, None] = {}  # subscribed channels, in subscription order
        self.patterns: dict[bytes, None] = {}
        self.shard_channels: dict[bytes, None] = {}
        # In pub/sub mode (any subscription): read by every RESP2 command's check, so
        # the hub keeps it up to date rather than computing it each time.
        self.subscribed = False


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of subscription: everything that differs between the three."""

    index: str  # attribute holding the index, on the hub and on the subscriber
    subscribe: bytes  # encoded confirmation type, e.g. $9 subscribe
    unsubscribe: bytes
    shard: bool  # shard subscriptions are counted apart from channels and patterns


CHANNEL = Kind("channels", bulk(b"subscribe"), bulk(b"unsubscribe"), False)
PATTERN = Kind("patterns", bulk(b"psubscribe"), bulk(b"punsubscribe"), False)
SHARD = Kind("shard_channels", bulk(b"ssubscribe"), bulk(b"sunsubscribe"), True)

_PMESSAGE = b"$8\r\npmessage\r\n"
_SMESSAGE = b"$8\r\nsmessage\r\n"


def _count(sub: Subscriber, kind: Kind) -> int:
    """The count a (un)subscribe frame reports: shard channels, or channels + patterns."""
    if kind.shard:
        return len(sub.shard_channels)
    return len(sub.channels) + len(sub.patterns)


def _frame(sub: Subscriber, kind_type: bytes, name: bytes | None, count: int) -> bytes:
    """A (un)subscribe confirmation; a None name is the null of a bare UNSUBSCRIBE."""
    if name is None:
        channel = b"_\r\n" if sub.resp3 else b"$-1\r\n"
    else:
        channel = b"$%d\r\n%b\r\n" % (len(name), name)
    return (b">3\r\n" if sub.resp3 else b"*3\r\n") + kind_type + channel + integer(count)


class Hub:
    """All subscriptions of one server, and message delivery."""

    def __init__(self) -> None:
        self.channels: dict[bytes, dict[Subscriber, None]] = {}
        self.patterns: dict[bytes, dict[Subscriber, None]] = {}
        self.shard_channels: dict[bytes, dict[Subscriber, None]] = {}
        self._matchers: dict[bytes, Callable[[bytes], bool]] = {}  # pattern -> compiled glob
        # The pattern index: patterns grouped by the literal prefix every match starts
        # with, so a channel is tried only against patterns whose prefix it has.
        self._by_prefix: dict[bytes, dict[bytes, Callable[[bytes], bool]]] = {}
        self._prefix_lengths: list[int] = []  # the distinct prefix lengths, ascending
        self._matching: dict[bytes, list[bytes]] = {}  # channel -> patterns that match it
        self.touched: dict[Subscriber, None] = {}  # subscribers given frames since last taken
        # ... and the subscriber sets a PUBLISH delivered to whole, by id: merged into
        # touched when taken (a set of 100 subscribers costs a dict entry, not 100).
        self.touched_sets: dict[int, dict[Subscriber, None]] = {}

    # SUBSCRIBE / PSUBSCRIBE / SSUBSCRIBE name [name ...]
    def subscribe(self, sub: Subscriber, kind: Kind, names: Iterable[bytes]) -> bytes:
        """Subscribe and return one confirmation frame per name, duplicates included."""
        index = getattr(self, kind.index)
        mine = getattr(sub, kind.index)
        frames = []
        for name in names:
            if name not in mine:
                mine[name] = None
                sub.subscribed = True
                subs = index.get(name)
                if subs is None:
                    subs = index[name] = {}
                    if kind is PATTERN:
                        self._add_pattern(name)
                subs[sub] = None
            frames.append(_frame(sub, kind.subscribe, name, _count(sub, kind)))
        return b"".join(frames)

    # UNSUBSCRIBE / PUNSUBSCRIBE / SUNSUBSCRIBE [name ...]
    def unsubscribe(self, sub: Subscriber, kind: Kind, names: Iterable[bytes]) -> bytes:
        """Unsubscribe and return one frame per name (per subscription when none given).

        With no names and no subscriptions of this kind, Redis still replies one frame,
        with a null channel, so the client gets an answer.
        """
        mine = getattr(sub, kind.index)
        names = list(names) or list(mine)
        if not names:
            return _frame(sub, kind.unsubscribe, None, _count(sub, kind))
        frames = []
        for name in names:
            if name in mine:
                self._remove(sub, kind, name)
            frames.append(_frame(sub, kind.unsubscribe, name, _count(sub, kind)))
        return b"".join(frames)

    def _remove(self, sub: Subscriber, kind: Kind, name: bytes) -> None:
        """Remove one subscription from both sides of the index."""
        del getattr(sub, kind.index)[name]
        sub.subscribed = bool(sub.channels or sub.patterns or sub.shard_channels)
        index = getattr(self, kind.index)
        subs = index[name]
        del subs[sub]
        if not subs:
            del index[name]
            if kind is PATTERN:
                self._drop_pattern(name)

    def remove_all(self, sub: Subscriber) -> None:
        """Drop every subscription silently (disconnect, RESET)."""
        for kind in (CHANNEL, PATTERN, SHARD):
            for name in list(getattr(sub, kind.index)):
                self._remove(sub, kind, name)
        self.touched.pop(sub, None)

    def _add_pattern(self, pattern: bytes) -> None:
        """Compile a newly subscribed pattern and index it by its literal prefix."""
        matcher = self._matchers[pattern] = compile_pattern(pattern)
        prefix = literal_prefix(pattern)
        self._by_prefix.setdefault(prefix, {})[pattern] = matcher
        self._reindex()

    def _drop_pattern(self, pattern: bytes) -> None:
        """Forget a pattern nobody subscribes to any more."""
        del self._matchers[pattern]
        prefix = literal_prefix(pattern)
        group = self._by_prefix[prefix]
        del group[pattern]
        if not group:
            del self._by_prefix[prefix]
        self._reindex()

    def _reindex(self) -> None:
        self._prefix_lengths = sorted({len(prefix) for prefix in self._by_prefix})
        self._matching.clear()

    def _patterns_matching(self, channel: bytes) -> list[bytes]:
        """The subscribed patterns that match channel, in subscription order.

        Only the patterns whose literal prefix starts the channel are tried, and the
        answer is cached per channel until the set of patterns changes.
        """
        found = self._matching.get(channel)
        if found is None:
            found = []
            for length in self._prefix_lengths:
                if length > len(channel):
                    break
                group = self._by_prefix.get(channel[:length])
                if group:
                    found.extend(p for p, matches in group.items() if matches(channel))
            if len(found) > 1:  # keep Redis's order: channel first, then patterns by age
                order = {p: i for i, p in enumerate(self._matchers)}
                found.sort(key=order.__getitem__)
            if len(self._matching) >= _MATCH_CACHE_LIMIT:
                self._matching.clear()
            self._matching[channel] = found
        return found

    # PUBLISH channel message
    def publish(self, channel: bytes, message: bytes) -> int:
        """Deliver to channel subscribers, then to each matching pattern; return deliveries.

        Each frame is encoded once per protocol and the same bytes object is appended to
        every subscriber's outbox (RESP2 array and RESP3 push differ in one byte).
        """
        delivered = 0
        subs = self.channels.get(channel)
        if subs:
            delivered = self._deliver(subs, b"*3\r\n$7\r\nmessage\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
                len(channel), channel, len(message), message))
        if self._matchers:
            tail = b"$%d\r\n%b\r\n$%d\r\n%b\r\n" % (len(channel), channel, len(message),
                                                      message)
            for pattern in self._patterns_matching(channel):
                delivered += self._deliver(self.patterns[pattern], b"*4\r\n%b$%d\r\n%b\r\n%b" % (
                    _PMESSAGE, len(pattern), pattern, tail))
        return delivered

    # SPUBLISH shardchannel message
    def spublish(self, channel: bytes, message: bytes) -> int:
        """Deliver to shard channel subscribers (patterns never see shard messages)."""
        subs = self.shard_channels.get(channel)
        if not subs:
            return 0
        return self._deliver(subs, b"*3\r\n%b$%d\r\n%b\r\n$%d\r\n%b\r\n" % (
            _SMESSAGE, len(channel), channel, len(message), message))

    def _deliver(self, subs: dict[Subscriber, None], resp2: bytes) -> int:
        """Append one frame (its RESP2 encoding given; the RESP3 push made once, for the
        first RESP3 subscriber) to every subscriber's outbox: a tight loop, no call per
        subscriber. The set is recorded as touched once, not subscriber by subscriber."""
        resp3 = None
        size = len(resp2)
        for sub in subs:
            if sub.resp3:
                resp3 = resp3 or b">" + resp2[1:]
                sub.outbox.append(resp3)
            else:
                sub.outbox.append(resp2)
            sub.outbox_size += size
        self.touched_sets[id(subs)] = subs
        return len(subs)

    def has_touched(self) -> bool:
        """Whether some subscriber was given frames since the last take."""
        return bool(self.touched or self.touched_sets)

    def take_touched(self) -> dict[Subscriber, None]:
        """Hand over the subscribers given frames since the last call (still subscribed,
        for those reached through a set)."""
        touched = self.touched
        for subs in self.touched_sets.values():
            touched.update(subs)
        self.touched = {}
        self.touched_sets = {}
        return touched

    # PUBSUB CHANNELS / SHARDCHANNELS [pattern]
    def active(self, kind: Kind, pattern: bytes | None) -> list[bytes]:
        """Names with at least one subscriber, optionally filtered by a glob."""
        names = getattr(self, kind.index)
        if pattern is None:
            return list(names)
        return [name for name in names if match(pattern, name)]

    # PUBSUB NUMSUB / SHARDNUMSUB [name ...]
    def numsub(self, kind: Kind, names: Iterable[bytes]) -> list[tuple[bytes, int]]:
        """Subscriber counts of the given names (pattern subscribers not included)."""
        index = getattr(self, kind.index)
        return [(name, len(index.get(name, ()))) for name in names]

    def numpat(self) -> int:
        """Number of distinct patterns subscribed."""
        return len(self.patterns)
