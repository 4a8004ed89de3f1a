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
# Redis prints a double that is a whole number within +-2**62 as an integer (double2ll).
_DOUBLE_INT_LIMIT = 2.0**62


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
    return _ARRAY_HEADERS[n] if 0 <= n < 64 else b"*%d\r\n" % n


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


def _format_double(value: float) -> bytes:
    """A double as Redis 7.2+ prints it (d2string): integers plainly, others as fpconv_dtoa.

    fpconv_dtoa writes the shortest digits that read back as the value (its Grisu2 finds
    the same digits as repr in all but rare cases), without an exponent from 1e-6 up to
    below 1e+(digits + 7), otherwise as `1.5e+300` or `1e-7` (no exponent padding).
    """
    if math.isnan(value):
        return b"nan"
    if math.isinf(value):
        return b"inf" if value > 0 else b"-inf"
    if value == 0:
        return b"-0" if math.copysign(1.0, value) < 0 else b"0"
    if -_DOUBLE_INT_LIMIT <= value <= _DOUBLE_INT_LIMIT and value.is_integer():
        return b"%d" % int(value)
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    power = int(exponent or 0) - len(fraction)  # value = digits * 10**power
    stripped = digits.rstrip("0")
    power += len(digits) - len(stripped)
    digits, count = stripped, len(stripped)
    magnitude = abs(power + count - 1)
    if power >= 0 and magnitude < count + 7:
        text = digits + "0" * power
    elif power < 0 and (power > -7 or magnitude < 4):
        point = count + power
        text = ("0." + "0" * -point + digits if point <= 0
                else digits[:point] + "." + digits[point:])
    else:
        text = (digits[0] + ("." + digits[1:] if count > 1 else "") + "e"
                + ("-" if power + count - 1 < 0 else "+") + str(magnitude))
    return (sign + text).encode()


def double(value: float, proto: int) -> bytes:
    """A double: `,value` in RESP3, a bulk string in RESP2 (formatted as Redis 7.2+ does)."""
    text = _format_double(value)
    return b",%b\r\n" % text if proto == 3 else bulk(text)


def boolean(value: bool, proto: int) -> bytes:
    """A boolean: `#t`/`#f` in RESP3, `:1`/`:0` in RESP2."""
    if proto == 3:
        return b"#t\r\n" if value else b"#f\r\n"
    return integer(1 if value else 0)


def verbatim(text: bytes, proto: int, fmt: bytes = b"txt") -> bytes:
    """A verbatim string: `=len fmt:text` in RESP3, a bulk string in RESP2.

    The format is always three bytes: Redis pads a shorter one with spaces and cuts a
    longer one.
    """
    if proto == 3:
        return b"=%d\r\n%b:%b\r\n" % (len(text) + 4, fmt[:3].ljust(3), text)
    return bulk(text)


def push_header(n: int, proto: int) -> bytes:
    """The header of an out-of-band push: `>n` in RESP3, an array in RESP2."""
    if proto == 3:
        return _PUSH_HEADERS[n] if 0 <= n < 64 else b">%d\r\n" % n
    return array_header(n)
