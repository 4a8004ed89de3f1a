"""Tests for pubsub.glob: Redis-exact glob matching for pub/sub patterns."""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pubsub.glob import compile_pattern, literal_prefix, match
from tests.conftest import real_redis

# --------------------------------------------------------------------------
# Independent reference: a plain, byte-by-byte port of Redis's matching rules
# (nocase=0, x86-64 signed chars), recursive for '*', no optimisations.
# --------------------------------------------------------------------------

STAR, QMARK, LBRACKET, RBRACKET, BACKSLASH, CARET, DASH = b"*?[]\\^-"


def _schar(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def reference_match(pattern: bytes, subject: bytes, nesting_limit: int = 1000) -> bool:
    """Straightforward re-statement of Redis's algorithm, for differential tests."""

    def byte_at(index: int) -> int:
        # The C code may peek at the NUL terminator right after the pattern.
        return pattern[index] if index < len(pattern) else 0

    def rec(p: int, s: int, nesting: int) -> bool:
        if nesting > nesting_limit:
            return False
        plen = len(pattern) - p
        slen = len(subject) - s
        while plen and slen:
            c = pattern[p]
            if c == STAR:
                while plen and byte_at(p + 1) == STAR:
                    p += 1
                    plen -= 1
                if plen == 1:
                    return True
                while slen:
                    if rec(p + 1, s, nesting + 1):
                        return True
                    s += 1
                    slen -= 1
                return False
            if c == QMARK:
                s += 1
                slen -= 1
            elif c == LBRACKET:
                p += 1
                plen -= 1
                negate = byte_at(p) == CARET
                if negate:
                    p += 1
                    plen -= 1
                matched = False
                while True:
                    if byte_at(p) == BACKSLASH and plen >= 2:
                        p += 1
                        plen -= 1
                        if pattern[p] == subject[s]:
                            matched = True
                    elif byte_at(p) == RBRACKET:
                        break
                    elif plen == 0:
                        p -= 1
                        plen += 1
                        break
                    elif plen >= 3 and pattern[p + 1] == DASH:
                        start, end = _schar(pattern[p]), _schar(pattern[p + 2])
                        if start > end:
                            start, end = end, start
                        p += 2
                        plen -= 2
                        if start <= _schar(subject[s]) <= end:
                            matched = True
                    elif pattern[p] == subject[s]:
                        matched = True
                    p += 1
                    plen -= 1
                if negate:
                    matched = not matched
                if not matched:
                    return False
                s += 1
                slen -= 1
            else:
                if c == BACKSLASH and plen >= 2:
                    p += 1
                    plen -= 1
                if pattern[p] != subject[s]:
                    return False
                s += 1
                slen -= 1
            p += 1
            plen -= 1
            if slen == 0:
                while byte_at(p) == STAR:
                    p += 1
                    plen -= 1
                break
        return plen == 0 and slen == 0

    return rec(0, 0, 0)


# --------------------------------------------------------------------------
# 1. Explicit table
# --------------------------------------------------------------------------

CASES: list[tuple[bytes, bytes, bool]] = [
    # empty pattern / empty subject
    (b"", b"", True),
    (b"", b"a", False),
    (b"*", b"", False),
    (b"**", b"", False),
    (b"?", b"", False),
    (b"a*", b"", False),
    # literals
    (b"abc", b"abc", True),
    (b"abc", b"abd", False),
    (b"abc", b"ab", False),
    (b"abc", b"abcd", False),
    (b"a\x00b", b"a\x00b", True),
    (b"\xff\x80", b"\xff\x80", True),
    # stars
    (b"*", b"a", True),
    (b"*", b"\x00", True),
    (b"***", b"anything", True),
    (b"a*", b"a", True),
    (b"a*", b"abc", True),
    (b"a*", b"ba", False),
    (b"*a", b"a", True),
    (b"*a", b"bba", True),
    (b"*a", b"ab", False),
    (b"a*b", b"ab", True),
    (b"a*b", b"axxb", True),
    (b"a*b", b"axxbc", False),
    (b"a**b", b"ab", True),
    (b"*b*", b"b", True),
    (b"*b*", b"abc", True),
    (b"*b*", b"ac", False),
    (b"a*b*c", b"abbbc", True),
    (b"a*b*c", b"acb", False),
    (b"*a*a*a", b"aaa", True),
    (b"*a*a*a", b"aa", False),
    (b"a*?", b"a", False),
    (b"a*?", b"ab", True),
    # ?
    (b"?", b"a", True),
    (b"?", b"\xff", True),
    (b"?", b"ab", False),
    (b"a?c", b"abc", True),
    (b"a?c", b"ac", False),
    (b"??", b"ab", True),
    # escapes outside classes
    (b"\\*", b"*", True),
    (b"\\*", b"a", False),
    (b"\\?", b"?", True),
    (b"\\?", b"a", False),
    (b"\\[a]", b"[a]", True),
    (b"\\a", b"a", True),
    (b"\\\\", b"\\", True),
    (b"\\", b"\\", True),
    (b"a\\", b"a\\", True),
    (b"a\\", b"a", False),
    (b"*\\", b"x\\", True),
    # classes
    (b"[abc]", b"b", True),
    (b"[abc]", b"d", False),
    (b"[abc]", b"", False),
    (b"[^abc]", b"d", True),
    (b"[^abc]", b"a", False),
    (b"[!a]", b"!", True),
    (b"[!a]", b"a", True),
    (b"[!a]", b"b", False),
    (b"[a-c]", b"b", True),
    (b"[a-c]", b"d", False),
    (b"[z-a]", b"m", True),
    (b"[z-a]", b"A", False),
    (b"[^a-c]", b"b", False),
    (b"[^a-c]", b"d", True),
    (b"[-]", b"-", True),
    (b"[-a]", b"-", True),
    (b"[-a]", b"a", True),
    (b"[-a]", b"b", False),
    (b"[--a]", b"Z", True),  # range '-'..'a'
    (b"[a-]", b"]", True),  # range ']'..'a'
    (b"[a-]", b"^", True),
    (b"[a-]", b"_", True),
    (b"[a-]", b"`", True),
    (b"[a-]", b"\\", False),
    (b"[a-]", b"-", False),
    (b"[a-]", b"b", False),
    (b"[a-]x]", b"x", True),  # class continues after the ']' range end
    (b"[a-]x]", b"a", True),
    (b"[a-", b"a", True),  # only 2 bytes left: no range
    (b"[a-", b"-", True),
    (b"[a-", b"b", False),
    (b"[a-z", b"q", True),  # unterminated range class
    (b"[\\]]", b"]", True),
    (b"a[\\]]c", b"a]c", True),
    (b"a[]]c", b"a]c", False),
    (b"[]", b"]", False),
    (b"[]", b"a", False),
    (b"[]]", b"]", False),
    (b"[]a", b"a", False),
    (b"[^]", b"a", True),
    (b"[^]", b"]", True),
    (b"[^]", b"", False),
    (b"[^]", b"ab", False),
    (b"[\\a-z]", b"a", True),  # escaped 'a', literal '-', literal 'z'
    (b"[\\a-z]", b"-", True),
    (b"[\\a-z]", b"z", True),
    (b"[\\a-z]", b"m", False),
    (b"[a-\\]", b"\\", True),  # range end is a backslash
    (b"[a-\\]", b"_", True),
    (b"[\\\\]", b"\\", True),
    (b"[\\", b"\\", True),  # final backslash in class is literal
    (b"[\\", b"\x00", False),
    (b"[^^]", b"^", False),
    (b"[^^]", b"a", True),
    (b"[*]", b"*", True),
    (b"[*]", b"a", False),
    (b"[?]", b"?", True),
    (b"[?]", b"a", False),
    (b"[[]", b"[", True),
    # unterminated classes
    (b"a[", b"a[", False),
    (b"a[", b"a", False),
    (b"a[c", b"a[c", False),
    (b"a[c", b"ac", True),
    (b"a[bc", b"ac", True),
    (b"[^", b"x", True),  # negated empty class at pattern end: any byte
    (b"a[^", b"ax", True),
    (b"a[^", b"a", False),
    (b"[", b"[", False),
    (b"*[", b"a[", False),
    # signed-char ranges
    (b"[\x01-\xff]", b"\x00", True),
    (b"[\x01-\xff]", b"\x01", True),
    (b"[\x01-\xff]", b"\xff", True),
    (b"[\x01-\xff]", b"\x02", False),
    (b"[\x01-\xff]", b"\x80", False),
    (b"[\x01-\xff]", b"\xfe", False),
    (b"[\x80-\xff]", b"\x80", True),
    (b"[\x80-\xff]", b"\xc0", True),
    (b"[\x80-\xff]", b"\xff", True),
    (b"[\x80-\xff]", b"\x7f", False),
    (b"[\x80-\xff]", b"\x00", False),
    (b"[a-\x80]", b"\x00", True),  # range -128..97
    (b"[a-\x80]", b"a", True),
    (b"[a-\x80]", b"b", False),
    (b"[a-\x80]", b"\xff", True),
    (b"[\x7f-\x80]", b"\x7e", True),
    # bytes are never case-folded
    (b"A", b"a", False),
    (b"[A-Z]", b"a", False),
]


@pytest.mark.parametrize(("pattern", "subject", "expected"), CASES)
def test_table(pattern: bytes, subject: bytes, expected: bool) -> None:
    assert compile_pattern(pattern)(subject) is expected
    assert match(pattern, subject) is expected
    assert reference_match(pattern, subject) is expected


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (b"", b""),
        (b"abc", b"abc"),
        (b"abc*", b"abc"),
        (b"ab?c", b"ab"),
        (b"ab[c]", b"ab"),
        (b"a\\*b*", b"a*b"),
        (b"a\\[b", b"a[b"),
        (b"\\\\x", b"\\x"),
        (b"a\\", b"a\\"),
        (b"*abc", b""),
        (b"news.\xff.*", b"news.\xff."),
    ],
)
def test_literal_prefix(pattern: bytes, prefix: bytes) -> None:
    assert literal_prefix(pattern) == prefix


# --------------------------------------------------------------------------
# Abuse protection: many stars must stay fast; Redis's nesting guard.
# --------------------------------------------------------------------------


def test_many_stars_do_not_blow_up() -> None:
    started = time.monotonic()
    assert not match(b"*a" * 60 + b"b", b"a" * 20_000)
    assert not match(b"a*" * 30 + b"*[b]", b"a" * 5_000)
    assert match(b"*a*b" * 40, b"ab" * 1_000)
    assert not match(b"?*" * 200 + b"c", b"x" * 3_000)
    assert time.monotonic() - started < 5


def test_star_nesting_limit() -> None:
    # 1000 star groups followed by bytes still work; a 1001st one does not.
    assert match(b"*a" * 1000, b"a" * 1000)
    assert match(b"*a" * 1000, b"a" * 1500)
    assert not match(b"*a" * 1001, b"a" * 1001)
    assert not match(b"*a" * 1000 + b"*b", b"a" * 1000 + b"b")
    # ...unless the 1001st star group is the trailing one.
    assert match(b"*a" * 1000 + b"*", b"a" * 1000 + b"b")
    assert match(b"*a" * 1000 + b"***", b"a" * 1000)
    assert not match(b"*?" * 1001, b"x" * 2000)
    assert match(b"*?" * 1000, b"x" * 2000)


def test_match_accepts_bytearray_pattern() -> None:
    assert match(bytearray(b"a*"), b"ab")


# --------------------------------------------------------------------------
# 2. Property tests against the reference implementation
# --------------------------------------------------------------------------

PATTERN_ALPHABET = [*b"**??[[]]^^--\\\\", *b"ab", 0x00, 0x80, 0xFF]
SUBJECT_ALPHABET = [*b"ab]^-\\[*?`_", 0x00, 0x7F, 0x80, 0xFF]
SMALL_UNIVERSE = (
    [b""]
    + [bytes([c]) for c in SUBJECT_ALPHABET]
    + [bytes([c, d]) for c in b"a]-\\\x80\xff" for d in b"ab]-\xff"]
)

patterns = st.lists(st.sampled_from(PATTERN_ALPHABET), max_size=12).map(bytes)
subjects = st.lists(st.sampled_from(SUBJECT_ALPHABET), max_size=10).map(bytes)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=patterns, extra=st.lists(subjects, max_size=8))
@example(pattern=b"[a-]", extra=[])
@example(pattern=b"a[^", extra=[b"ab"])
@example(pattern=b"[\x01-\xff]", extra=[])
def test_matches_reference(pattern: bytes, extra: list[bytes]) -> None:
    matcher = compile_pattern(pattern)
    prefix = literal_prefix(pattern)
    for subject in SMALL_UNIVERSE + extra:
        expected = reference_match(pattern, subject)
        assert matcher(subject) is expected, (pattern, subject)
        if expected:
            assert subject.startswith(prefix), (pattern, subject, prefix)


@st.composite
def pattern_and_likely_subject(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A pattern plus a subject built from its bytes, so matches are common."""
    pattern = draw(patterns)
    pool = sorted(set(pattern) - {STAR, LBRACKET, BACKSLASH, QMARK}) or [0x61]
    pieces = []
    for byte in pattern:
        if byte == STAR:
            pieces.extend(draw(st.lists(st.sampled_from(pool + SUBJECT_ALPHABET), max_size=3)))
        elif draw(st.booleans()):
            pieces.append(byte)
        else:
            pieces.append(draw(st.sampled_from(pool + SUBJECT_ALPHABET)))
    return pattern, bytes(pieces)


@settings(max_examples=600, deadline=None)
@given(pattern_and_likely_subject())
def test_matches_reference_on_related_subjects(case: tuple[bytes, bytes]) -> None:
    pattern, subject = case
    expected = reference_match(pattern, subject)
    assert compile_pattern(pattern)(subject) is expected
    assert match(pattern, subject) is expected
    if expected:
        assert subject.startswith(literal_prefix(pattern))


# --------------------------------------------------------------------------
# 3. Differential test against a real redis-server (PUBSUB CHANNELS pattern)
# --------------------------------------------------------------------------


def _encode(*args: bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        out.append(b"$%d\r\n%s\r\n" % (len(arg), arg))
    return b"".join(out)


class _RespReader:
    """Minimal RESP2 reader over a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        self.buf += chunk

    def read(self) -> object:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            if kind == b"-":
                raise RuntimeError(rest.decode(errors="replace"))
            return rest
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            while len(self.buf) < size + 2:
                self._fill()
            data, self.buf = self.buf[:size], self.buf[size + 2 :]
            return data
        if kind == b"*":
            return [self.read() for _ in range(int(rest))]
        raise RuntimeError(f"unexpected RESP line {line!r}")


def _connect(port: int, timeout: float) -> tuple[socket.socket, _RespReader]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock, _RespReader(sock)


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    """A real redis-server of this module's own: its channels are this test's alone."""
    with real_redis() as port:
        yield port


CHANNELS: list[bytes] = sorted(
    {b""}
    | {bytes([c]) for c in range(256)}
    | {bytes([c, d]) for c in b"ab]^-\\[*?\x00\x80\xff" for d in b"ab]^-\\[\x00\x7f\x80\xff"}
    | {b"a[c", b"a]c", b"abc", b"abd", b"a\\b", b"news.sport", b"news.\xff", b"\xff\x80\x00"}
    | {b"a" * 1000, b"a" * 1001, b"a" * 1000 + b"b", b"ab" * 600}
)

FIXED_PATTERNS: list[bytes] = sorted(
    {pattern for pattern, _, _ in CASES}
    | {b"*", b"?", b"??", b"???", b"*?", b"?*", b"*a*", b"[\\", b"[^", b"\\"}
    | {b"*a" * 1000, b"*a" * 1001, b"*a" * 1000 + b"*", b"*a" * 1000 + b"*b"}
    | {b"*?" * 1000, b"*?" * 1001, b"*a*b" * 300}
)


def _random_patterns(count: int) -> list[bytes]:
    rng = random.Random(20240607)
    alphabet = [*PATTERN_ALPHABET, *b"]-\\"]
    return [bytes(rng.choice(alphabet) for _ in range(rng.randint(0, 9))) for _ in range(count)]


def test_against_real_redis(redis_port: int) -> None:
    sub_sock, sub_reader = _connect(redis_port, 10.0)
    query_sock, query_reader = _connect(redis_port, 10.0)
    with contextlib.closing(sub_sock), contextlib.closing(query_sock):
        sub_sock.sendall(_encode(b"SUBSCRIBE", *CHANNELS))
        for _ in CHANNELS:  # one confirmation per channel: all are registered
            kind, _channel, _count = sub_reader.read()  # type: ignore[misc]
            assert kind == b"subscribe"
        query_sock.sendall(_encode(b"PUBSUB", b"CHANNELS"))
        assert sorted(query_reader.read()) == CHANNELS  # type: ignore[arg-type]

        patterns_to_check = FIXED_PATTERNS + _random_patterns(400)
        # Pipeline the queries, then read the answers in order.
        query_sock.sendall(b"".join(_encode(b"PUBSUB", b"CHANNELS", p) for p in patterns_to_check))
        mismatches = []
        for pattern in patterns_to_check:
            from_redis = set(query_reader.read())  # type: ignore[arg-type]
            matcher = compile_pattern(pattern)
            ours = {channel for channel in CHANNELS if matcher(channel)}
            if ours != from_redis:
                mismatches.append((pattern[:40], sorted(ours ^ from_redis)[:5]))
            prefix = literal_prefix(pattern)
            assert all(channel.startswith(prefix) for channel in from_redis)
            if len(pattern) <= 16:  # also validate the reference itself
                short = {channel for channel in CHANNELS if len(channel) <= 3}
                by_reference = {channel for channel in short if reference_match(pattern, channel)}
                assert by_reference == from_redis & short, pattern
        assert not mismatches
