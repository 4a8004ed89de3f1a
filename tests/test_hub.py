"""Unit tests of the pub/sub hub: frames, counts, order, the double index. No network."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pubsub.glob import match
from pubsub.hub import CHANNEL, PATTERN, SHARD, Hub, Subscriber


def make(resp3: bool = False) -> Subscriber:
    sub = Subscriber()
    sub.resp3 = resp3
    return sub


def taken(sub: Subscriber) -> bytes:
    data = b"".join(sub.outbox)
    sub.outbox.clear()
    sub.outbox_size = 0
    return data


@pytest.mark.parametrize("resp3", [False, True])
def test_subscribe_frames_count_duplicates(resp3: bool) -> None:
    hub, sub = Hub(), make(resp3)
    head = b">3\r\n" if resp3 else b"*3\r\n"
    got = hub.subscribe(sub, CHANNEL, [b"a", b"b", b"a"])
    assert got == (head + b"$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n"
                   + head + b"$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
                   + head + b"$9\r\nsubscribe\r\n$1\r\na\r\n:2\r\n")


@pytest.mark.parametrize("resp3", [False, True])
def test_bare_unsubscribe_without_subscriptions_has_null_channel(resp3: bool) -> None:
    hub, sub = Hub(), make(resp3)
    hub.subscribe(sub, PATTERN, [b"p*"])
    null = b"_\r\n" if resp3 else b"$-1\r\n"
    head = b">3\r\n" if resp3 else b"*3\r\n"
    assert hub.unsubscribe(sub, CHANNEL, []) == head + b"$11\r\nunsubscribe\r\n" + null + b":1\r\n"
    assert hub.unsubscribe(sub, SHARD, []) == head + b"$12\r\nsunsubscribe\r\n" + null + b":0\r\n"


def test_shard_counts_are_separate() -> None:
    hub, sub = Hub(), make()
    hub.subscribe(sub, CHANNEL, [b"a", b"b", b"c"])
    assert hub.subscribe(sub, SHARD, [b"s"]).endswith(b":1\r\n")
    assert hub.unsubscribe(sub, SHARD, [b"s"]).endswith(b":0\r\n")
    assert hub.unsubscribe(sub, CHANNEL, [b"zz"]) == (
        b"*3\r\n$11\r\nunsubscribe\r\n$2\r\nzz\r\n:3\r\n")


def test_publish_counts_and_orders_channel_before_patterns() -> None:
    hub, sub = Hub(), make(True)
    hub.subscribe(sub, PATTERN, [b"c*"])
    hub.subscribe(sub, CHANNEL, [b"ch"])
    hub.subscribe(sub, PATTERN, [b"*h"])
    taken(sub)
    assert hub.publish(b"ch", b"hello") == 3
    assert taken(sub) == (
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"
        b">4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$5\r\nhello\r\n"
        b">4\r\n$8\r\npmessage\r\n$2\r\n*h\r\n$2\r\nch\r\n$5\r\nhello\r\n")
    assert hub.publish(b"other", b"x") == 0


def test_one_encoding_shared_by_all_subscribers_of_a_protocol() -> None:
    hub = Hub()
    subs2 = [make(False) for _ in range(3)]
    subs3 = [make(True) for _ in range(3)]
    for sub in subs2 + subs3:
        hub.subscribe(sub, CHANNEL, [b"ch"])
        taken(sub)
    assert hub.publish(b"ch", b"m") == 6
    frames2 = {id(s.outbox[0]) for s in subs2}
    frames3 = {id(s.outbox[0]) for s in subs3}
    assert len(frames2) == len(frames3) == 1
    assert subs2[0].outbox[0] == b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nm\r\n"
    assert all(s.outbox_size == len(subs2[0].outbox[0]) for s in subs2 + subs3)
    assert set(hub.take_touched()) == set(subs2 + subs3)
    assert hub.take_touched() == {}


def test_touched_are_the_subscribers_reached_still_subscribed() -> None:
    """Each subscriber given a frame is taken once, whatever reached it (channel, several
    patterns, shard channel); one dropped before the take is not handed over."""
    hub = Hub()
    a, b, c = make(), make(True), make()
    hub.subscribe(a, CHANNEL, [b"ch"])
    hub.subscribe(b, PATTERN, [b"c*", b"*h"])
    hub.subscribe(c, SHARD, [b"ch"])
    hub.subscribe(c, CHANNEL, [b"ch"])
    assert hub.publish(b"ch", b"1") == 4
    assert hub.publish(b"ch", b"2") == 4
    assert hub.spublish(b"ch", b"3") == 1
    hub.remove_all(a)
    assert set(hub.take_touched()) == {b, c}
    assert hub.take_touched() == {}


def test_spublish_ignores_patterns() -> None:
    hub, sub = Hub(), make()
    hub.subscribe(sub, PATTERN, [b"*"])
    hub.subscribe(sub, SHARD, [b"s"])
    taken(sub)
    assert hub.spublish(b"s", b"m") == 1
    assert taken(sub) == b"*3\r\n$8\r\nsmessage\r\n$1\r\ns\r\n$1\r\nm\r\n"
    assert hub.publish(b"s", b"m") == 1  # the pattern hears classic publishes only


def test_empty_channel_is_not_matched_by_star() -> None:
    hub, sub, star = Hub(), make(), make()
    hub.subscribe(sub, CHANNEL, [b""])
    hub.subscribe(star, PATTERN, [b"*"])
    assert hub.publish(b"", b"m") == 1
    assert hub.active(CHANNEL, b"*") == []
    assert hub.active(CHANNEL, None) == [b""]


def test_entries_go_when_the_last_subscriber_leaves() -> None:
    hub, a, b = Hub(), make(), make()
    for sub in (a, b):
        hub.subscribe(sub, CHANNEL, [b"x", b"y"])
        hub.subscribe(sub, PATTERN, [b"p*"])
        hub.subscribe(sub, SHARD, [b"s"])
    assert hub.numsub(CHANNEL, [b"x", b"nope"]) == [(b"x", 2), (b"nope", 0)]
    assert hub.numpat() == 1
    hub.remove_all(a)
    assert not a.subscribed
    assert hub.numsub(CHANNEL, [b"x"]) == [(b"x", 1)]
    hub.unsubscribe(b, CHANNEL, [])
    hub.unsubscribe(b, PATTERN, [])
    hub.unsubscribe(b, SHARD, [])
    assert hub.channels == hub.patterns == hub.shard_channels == {}
    assert not b.subscribed


def test_pattern_cache_follows_pattern_changes() -> None:
    hub, sub = Hub(), make()
    assert hub.publish(b"news.1", b"m") == 0
    hub.subscribe(sub, PATTERN, [b"news.*"])
    assert hub.publish(b"news.1", b"m") == 1
    hub.unsubscribe(sub, PATTERN, [b"news.*"])
    assert hub.publish(b"news.1", b"m") == 0


_GLOB_BYTES = st.sampled_from([*b"ab*?[]^-\\", 0xFF])


@given(patterns=st.lists(st.binary(max_size=5).map(bytes) | st.lists(_GLOB_BYTES, max_size=5)
                         .map(bytes), max_size=12),
       channels=st.lists(st.lists(st.sampled_from([*b"ab[]-\\", 0xFF]), max_size=6)
                         .map(bytes), max_size=12))
def test_pattern_index_finds_exactly_the_matching_patterns_in_order(
        patterns: list[bytes], channels: list[bytes]) -> None:
    """The prefix index is only an accelerator: same patterns, same order as trying all."""
    hub, sub = Hub(), make()
    hub.subscribe(sub, PATTERN, patterns)
    ordered = list(dict.fromkeys(patterns))
    for channel in channels:
        expected = [p for p in ordered if match(p, channel)]
        assert hub._patterns_matching(channel) == expected
        assert hub._patterns_matching(channel) == expected  # and from the cache
