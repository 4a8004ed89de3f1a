"""Reply encoders for RESP2 and RESP3.

Every function returns finished bytes. Where RESP3 adds a type that RESP2 lacks
(map, set, double, boolean, verbatim, push, null), the function takes the
connection's protocol version and falls back to the RESP2 shape Redis uses.
Constant replies are precomputed once at import.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

OK = b"+OK\r\n"
PONG = b"+PONG\r\n"
QUEUED = b"+QUEUED\r\n"
EMPTY_ARRAY = b"*0\r\n"
EMPTY_BULK = b"$0\r\n\r\n"
NULL_BULK = b"$-1\r\n"  # RESP2 null for a missing string
NULL_ARRAY = b"*-1\r\n"  # RESP2 null for a missing array
NULL3 = b"_\r\n"  # RESP3 null

# Small integers are the most common replies (counts, booleans): build them once.
_SMALL_INTS = [b":%d\r\n" % i for i in range(-1, 1025)]
_ARRAY_HEADERS = [b"*%d\r\n" % i for i in range(64)]
_PUSH_HEADERS = [b">%d\r\n" % i for i in range(64)]


def simple(text: str | bytes) -> bytes:
    """A simple string (`+text`)."""
    if isinstance(text, str):
        text = text.encode()
    return b"+" + text + b"\r\n"


def error(text: str | bytes, code: str = "ERR") -> bytes:
    """An error reply: `-CODE text`.

    Redis replaces CR and LF inside error text with spaces so the reply stays one line.
    """
    if isinstance(text, str):
        text = text.encode()
    text = text.replace(b"\r", b" ").replace(b"\n", b" ")
    return b"-%b %b\r\n" % (code.encode(), text)


def integer(n: int) -> bytes:
    """An integer (`:n`)."""
    if -1 <= n <= 1024:
        return _SMALL_INTS[n + 1]
    return b":%d\r\n" % n


def bulk(data: bytes) -> bytes:
    """A bulk string."""
    return b"$%d\r\n%b\r\n" % (len(data), data)


def null(proto: int) -> bytes:
    """The null of a missing string: `$-1` in RESP2, `_` in RESP3."""
    return NULL3 if proto == 3 else NULL_BULK


def null_array(proto: int) -> bytes:
    """The null of a missing array: `*-1` in RESP2, `_` in RESP3."""
    return NULL3 if proto == 3 else NULL_ARRAY


def array_header(n: int) -> bytes:
    """The header of an array of n already-encoded elements."""
    return _ARRAY_HEADERS[n] if n < 64 else b"*%d\r\n" % n


def array(items: Iterable[bytes]) -> bytes:
    """An array of already-encoded elements."""
    items = list(items)
    return array_header(len(items)) + b"".join(items)


def bulk_array(items: Iterable[bytes]) -> bytes:
    """An array of bulk strings."""
    items = list(items)
    return array_header(len(items)) + b"".join([b"$%d\r\n%b\r\n" % (len(i), i) for i in items])


def map_(pairs: Iterable[tuple[bytes, bytes]], proto: int) -> bytes:
    """A map of already-encoded keys and values: `%n` in RESP3, a flat array in RESP2."""
    pairs = list(pairs)
    head = b"%%%d\r\n" % len(pairs) if proto == 3 else array_header(2 * len(pairs))
    return head + b"".join(k + v for k, v in pairs)


def set_(items: Iterable[bytes], proto: int) -> bytes:
    """A set of already-encoded elements: `~n` in RESP3, an array in RESP2."""
    items = list(items)
    head = b"~%d\r\n" % len(items) if proto == 3 else array_header(len(items))
    return head + b"".join(items)


def double(value: float, proto: int) -> bytes:
    """A double: `,value` in RESP3, a bulk string in RESP2 (formatted as Redis does)."""
    if value == float("inf"):
        text = b"inf"
    elif value == float("-inf"):
        text = b"-inf"
    elif math.isnan(value):
        text = b"nan"
    else:
        text = repr(value).encode()
        if text.endswith(b".0"):
            text = text[:-2]
    return b",%b\r\n" % text if proto == 3 else bulk(text)


def boolean(value: bool, proto: int) -> bytes:
    """A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2."""
    if proto == 3:
        return b"#t\r\n" if value else b"#f\r\n"
    return integer(1 if value else 0)


def verbatim(text: bytes, proto: int, fmt: bytes = b"txt") -> bytes:
    """A verbatim string: `=len fmt:text` in RESP3, a bulk string in RESP2."""
    if proto == 3:
        return b"=%d\r\n%b:%b\r\n" % (len(text) + 4, fmt, text)
    return bulk(text)


def push_header(n: int, proto: int) -> bytes:
    """The header of an out-of-band push: `>n` in RESP3, an array in RESP2."""
    if proto == 3:
        return _PUSH_HEADERS[n] if n < 64 else b">%d\r\n" % n
    return array_header(n)
