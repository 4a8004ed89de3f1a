"""Redis-compatible glob matching for pub/sub patterns.

Reproduces the result of Redis's ``stringmatchlen`` (case-sensitive, byte-wise)
for every (pattern, subject) pair, including its quirks:

* ``*`` matches any run of bytes, but an empty subject is matched only by the
  empty pattern.
* ``?`` matches one byte; ``\\x`` matches ``x``; a final lone ``\\`` is literal.
* ``[...]`` classes: ``^`` negates, ``\\x`` adds ``x``, ``a-b`` is an inclusive
  range (swapped when reversed) compared as C *signed* chars, a range needs
  three bytes left in the pattern, ``]`` closes (so ``[]`` is empty) and an
  unterminated class runs to the end of the pattern.
* A pattern whose 1001st group of stars is followed by more pattern never
  matches (Redis's recursion-depth guard).

Patterns are parsed once into tokens and translated into a ``re`` bytes regex
that uses atomic groups, so matching is linear-ish and never backtracks
exponentially, whatever the number of stars.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["MAX_STAR_NESTING", "compile_pattern", "literal_prefix", "match"]

#: Redis gives up (no match) past this many nested ``*`` recursions.
MAX_STAR_NESTING = 1000

_STAR = 0x2A  # *
_QUESTION = 0x3F  # ?
_OPEN = 0x5B  # [
_CLOSE = 0x5D  # ]
_ESCAPE = 0x5C  # \
_CARET = 0x5E  # ^
_DASH = 0x2D  # -

_ALL_BYTES = frozenset(range(256))
_EMPTY: frozenset[int] = frozenset()

# A token is either None (a star) or the frozenset of byte values that the
# single subject byte at that position may take.
_Token = frozenset[int] | None


def _signed(byte: int) -> int:
    """Value of ``byte`` as a C signed char (x86-64 ``char``)."""
    return byte - 256 if byte >= 0x80 else byte


def _signed_range(first: int, last: int) -> frozenset[int]:
    """Bytes inside the (possibly reversed) range, compared as signed chars."""
    low, high = sorted((_signed(first), _signed(last)))
    return frozenset(b for b in range(256) if low <= _signed(b) <= high)


def _parse_class(pattern: bytes, pos: int) -> tuple[frozenset[int], int]:
    """Parse a class whose ``[`` was just consumed; return (bytes, next pos)."""
    end = len(pattern)
    negate = pos < end and pattern[pos] == _CARET
    if negate:
        pos += 1
    members: set[int] = set()
    while pos < end:
        byte = pattern[pos]
        if byte == _ESCAPE and end - pos >= 2:
            members.add(pattern[pos + 1])
            pos += 2
        elif byte == _CLOSE:
            pos += 1
            break
        elif end - pos >= 3 and pattern[pos + 1] == _DASH:
            members |= _signed_range(byte, pattern[pos + 2])
            pos += 3
        else:
            members.add(byte)
            pos += 1
    chosen = frozenset(members)
    return (_ALL_BYTES - chosen if negate else chosen), pos


def _tokenize(pattern: bytes) -> list[_Token]:
    """Split a pattern into tokens, collapsing consecutive stars."""
    tokens: list[_Token] = []
    pos, end = 0, len(pattern)
    while pos < end:
        byte = pattern[pos]
        if byte == _STAR:
            if not tokens or tokens[-1] is not None:
                tokens.append(None)
            pos += 1
        elif byte == _QUESTION:
            tokens.append(_ALL_BYTES)
            pos += 1
        elif byte == _OPEN:
            members, pos = _parse_class(pattern, pos + 1)
            tokens.append(members)
        elif byte == _ESCAPE and end - pos >= 2:
            tokens.append(frozenset((pattern[pos + 1],)))
            pos += 2
        else:
            tokens.append(frozenset((byte,)))
            pos += 1
    return tokens


def literal_prefix(pattern: bytes) -> bytes:
    """Return the literal bytes that every subject matching ``pattern`` starts with.

    Stops at the first ``*``, ``?`` or ``[``; ``\\`` escapes are resolved.
    """
    out = bytearray()
    pos, end = 0, len(pattern)
    while pos < end:
        byte = pattern[pos]
        if byte in (_STAR, _QUESTION, _OPEN):
            break
        if byte == _ESCAPE and end - pos >= 2:
            out.append(pattern[pos + 1])
            pos += 2
        else:
            out.append(byte)
            pos += 1
    return bytes(out)


def _byte_set_regex(members: frozenset[int]) -> bytes:
    """Regex (bytes) matching exactly one byte from ``members``."""
    if len(members) == 256:
        return b"."
    if not members:
        return b"(?!)"
    if len(members) == 1:
        return re.escape(bytes(members))
    values = sorted(members)
    parts: list[bytes] = []
    start = prev = values[0]
    for value in [*values[1:], -1]:
        if value == prev + 1:
            prev = value
            continue
        if start == prev:
            parts.append(b"\\x%02x" % start)
        else:
            parts.append(b"\\x%02x-\\x%02x" % (start, prev))
        start = prev = value
    return b"[" + b"".join(parts) + b"]"


def _segment_regex(segment: list[frozenset[int]]) -> bytes:
    return b"".join(_byte_set_regex(members) for members in segment)


def _as_literal(segment: list[frozenset[int]]) -> bytes | None:
    """The segment as plain bytes if every position allows a single byte."""
    if all(len(members) == 1 for members in segment):
        return bytes(next(iter(members)) for members in segment)
    return None


def _never(subject: bytes) -> bool:
    return False


def compile_pattern(pattern: bytes) -> Callable[[bytes], bool]:
    """Compile ``pattern`` once into a ``subject -> bool`` matcher (Redis rules)."""
    pattern = bytes(pattern)
    tokens = _tokenize(pattern)
    if not tokens:
        return lambda subject: not subject

    # Split into star-separated runs of single-byte tokens:
    # head * middle_1 * ... * middle_k * tail   (head/tail possibly empty).
    segments: list[list[frozenset[int]]] = [[]]
    for token in tokens:
        if token is None:
            segments.append([])
        else:
            segments[-1].append(token)
    stars = len(segments) - 1
    non_trailing_stars = stars if segments[-1] else stars - 1
    if non_trailing_stars > MAX_STAR_NESTING:
        return _never

    if any(not members for segment in segments for members in segment):
        return _never  # an empty class can never match a byte

    head, tail = segments[0], segments[-1]
    literals = [_as_literal(segment) for segment in segments]

    # Fast paths for common shapes (every shape below needs a non-empty subject,
    # which the literal checks or explicit tests guarantee).
    if stars == 0 and literals[0] is not None:
        exact = literals[0]
        return lambda subject: subject == exact
    if stars == 1 and not tail and literals[0] is not None:
        prefix = literals[0]
        if not prefix:
            return lambda subject: len(subject) > 0
        return lambda subject: subject.startswith(prefix)
    if stars == 1 and not head and literals[1] is not None:
        suffix = literals[1]
        return lambda subject: subject.endswith(suffix)
    if stars == 2 and not head and not tail and literals[1] is not None:
        infix = literals[1]
        return lambda subject: infix in subject

    # General case. Each segment consumes a fixed number of bytes, so taking
    # the leftmost occurrence of every middle segment is always optimal: atomic
    # groups commit to it and rule out catastrophic backtracking.
    parts = [_segment_regex(head)]
    if stars:
        parts.extend(b"(?>.*?" + _segment_regex(seg) + b")" for seg in segments[1:-1])
        parts.append(b".*" + _segment_regex(tail))
    fullmatch = re.compile(b"".join(parts), re.DOTALL).fullmatch
    # At least one byte-consuming token exists here, so b"" can never match.

    def matcher(subject: bytes) -> bool:
        return fullmatch(subject) is not None

    return matcher


_compile_cached = lru_cache(maxsize=4096)(compile_pattern)


def match(pattern: bytes, subject: bytes) -> bool:
    """Return True if ``subject`` matches the Redis glob ``pattern``."""
    return _compile_cached(bytes(pattern))(subject)
