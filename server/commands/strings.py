"""String commands: GET, SET and its variants, MGET/MSET, APPEND, ranges, counters."""

from __future__ import annotations

import re
from fractions import Fraction
from typing import TYPE_CHECKING

from resp.encode import EMPTY_BULK, OK, array_header, bulk, error, integer, null
from resp.parser import _parse_int as parse_integer
from server.keyspace import GENERIC, STRING, STRING_TYPES, FloatString, Keyspace
from server.commands import command, wrong_arity

if TYPE_CHECKING:
    from server.connection import Connection

WRONGTYPE = error("Operation against a key holding the wrong kind of value", "WRONGTYPE")
NOT_INTEGER = error("value is not an integer or out of range")
NOT_FLOAT = error("value is not a valid float")
SYNTAX = error("syntax error")
TOO_BIG = error("string exceeds maximum allowed size (proto-max-bulk-len)")
ZERO = integer(0)
ONE = integer(1)

_FLAGS_WRITE = "write denyoom"
_CAT_WRITE = "write string slow"


def expire_time_error(name: str) -> bytes:
    """Redis's reply to an expiry time that is not positive or overflows."""
    return error(f"invalid expire time in '{name}' command")


def to_absolute(conn: Connection, amount: int, unit: int, relative: bool) -> int | None:
    """An EX/PX/EXAT/PXAT amount as an absolute ms time; None if not positive or too big."""
    if amount <= 0 or amount > (1 << 63) // unit:
        return None
    when = amount * unit
    if relative:
        when += conn.server.keyspace.now()
    return when if when < 1 << 63 else None


def _deadline(conn: Connection, amount: bytes, expiry: tuple[int, bool],
              name: str) -> int | bytes:
    """The absolute time of SET's or GETEX's EX/PX/EXAT/PXAT option, or the error reply."""
    number = parse_integer(amount)
    if number is None:
        return NOT_INTEGER
    when = to_absolute(conn, number, *expiry)
    return expire_time_error(name) if when is None else when


# The expiry options of SET and GETEX: name -> (unit in ms, relative to now).
_EXPIRY = {b"ex": (1000, True), b"px": (1, True), b"exat": (1000, False), b"pxat": (1, False)}


# GET key
@command("get", 2, "readonly fast", "read string fast", group="string", since="1.0.0",
         summary="Returns the string value of a key.", keys=(1, 1, 1))
def get(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    value = ks.read(ks.dbs[conn.db], args[1])
    if value is None:
        return null(conn.proto)
    if type(value) not in STRING_TYPES:
        return WRONGTYPE
    return b"$%d\r\n%b\r\n" % (len(value), value)


_SET_WORDS = (b"nx", b"xx", b"get", b"keepttl")
_GETEX_WORDS = (b"persist",)
_OTHER = {b"nx": b"xx", b"xx": b"nx"}  # options that exclude each other
_NO_EXPIRY = frozenset((b"keepttl", b"persist"))  # options that exclude an expiry


def _options(args: list[bytes], start: int, allowed: tuple[bytes, ...]
             ) -> tuple[set[bytes], tuple[int, bool] | None, bytes] | bytes:
    """SET's and GETEX's options from args[start:], by Redis's rules (one parser for both,
    as parseExtendedStringArgumentsOrReply): the allowed words, NX and XX not together,
    KEEPTTL or PERSIST only without an expiry, one kind of expiry (repeatable, the last
    amount counts). Returns (words, expiry kind, amount), or the SYNTAX error."""
    words: set[bytes] = set()
    expiry: tuple[int, bool] | None = None
    amount = b""
    i = start
    while i < len(args):
        option = args[i].lower()
        if option in allowed and _OTHER.get(option) not in words \
                and (expiry is None or option not in _NO_EXPIRY):
            words.add(option)
        elif option in _EXPIRY and not words & _NO_EXPIRY and i + 1 < len(args) \
                and (expiry is None or expiry == _EXPIRY[option]):
            expiry = _EXPIRY[option]
            amount = args[i + 1]
            i += 1
        else:
            return SYNTAX
        i += 1
    return words, expiry, amount


# SET key value [NX | XX] [GET] [EX seconds | PX milliseconds | EXAT unix-time-seconds |
#     PXAT unix-time-milliseconds | KEEPTTL]
@command("set", -3, _FLAGS_WRITE, _CAT_WRITE, group="string", since="1.0.0",
         summary="Sets the string value of a key, ignoring its type. The key is created if it "
                 "doesn't exist.", keys=(1, 1, 1))
def set_(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    key = args[1]
    if len(args) == 3:
        ks.store(db, key, args[2])
        if ks.events:
            ks.notify(STRING, b"set", key, db.index)
        return OK
    parsed = _options(args, 3, _SET_WORDS)
    if type(parsed) is bytes:
        return parsed
    words, expiry, amount = parsed
    nx, xx, with_get, keepttl = (w in words for w in _SET_WORDS)
    when = None
    if expiry is not None:
        when = _deadline(conn, amount, expiry, "set")
        if type(when) is bytes:
            return when
    reply = OK
    if with_get:
        old = ks.read(db, key)
        if old is not None and type(old) not in STRING_TYPES:
            return WRONGTYPE
        reply = null(conn.proto) if old is None else bulk(old)
        found = old is not None
    else:
        found = ks.write(db, key) is not None
    if (nx and found) or (xx and not found):
        return reply if with_get else null(conn.proto)
    ks.store(db, key, args[2], keepttl)
    ks.notify(STRING, b"set", key, db.index)
    if when is not None:
        ks.set_expire(db, key, when)
        ks.notify(GENERIC, b"expire", key, db.index)
    return reply


def _set_with_expiry(conn: Connection, args: list[bytes], unit: int) -> bytes:
    """SETEX and PSETEX: SET key value EX|PX amount."""
    number = parse_integer(args[2])
    if number is None:
        return NOT_INTEGER
    when = to_absolute(conn, number, unit, True)
    if when is None:
        return expire_time_error(args[0].lower().decode(errors="replace"))
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    ks.write(db, args[1])
    ks.store(db, args[1], args[3])
    ks.notify(STRING, b"set", args[1], db.index)
    ks.set_expire(db, args[1], when)
    ks.notify(GENERIC, b"expire", args[1], db.index)
    return OK


# SETEX key seconds value
@command("setex", 4, _FLAGS_WRITE, _CAT_WRITE, group="string", since="2.0.0",
         summary="Sets the string value and expiration time of a key. Creates the key if it "
                 "doesn't exist.", keys=(1, 1, 1))
def setex(conn: Connection, args: list[bytes]) -> bytes:
    return _set_with_expiry(conn, args, 1000)


# PSETEX key milliseconds value
@command("psetex", 4, _FLAGS_WRITE, _CAT_WRITE, group="string", since="2.6.0",
         summary="Sets both string value and expiration time in milliseconds of a key. The key "
                 "is created if it doesn't exist.", keys=(1, 1, 1))
def psetex(conn: Connection, args: list[bytes]) -> bytes:
    return _set_with_expiry(conn, args, 1)


# SETNX key value
@command("setnx", 3, "write denyoom fast", "write string fast", group="string", since="1.0.0",
         summary="Set the string value of a key only when the key doesn't exist.",
         keys=(1, 1, 1))
def setnx(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    if ks.write(db, args[1]) is not None:
        return ZERO
    ks.store(db, args[1], args[2])
    ks.notify(STRING, b"set", args[1], db.index)
    return ONE


# GETSET key value
@command("getset", 3, "write denyoom fast", "write string fast", group="string",
         since="1.0.0", summary="Returns the previous string value of a key after setting it "
                                "to a new value.", keys=(1, 1, 1))
def getset(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    old = ks.read(db, args[1])
    if old is not None and type(old) not in STRING_TYPES:
        return WRONGTYPE
    ks.store(db, args[1], args[2])
    ks.notify(STRING, b"set", args[1], db.index)
    return null(conn.proto) if old is None else bulk(old)


# GETDEL key
@command("getdel", 2, "write fast", "write string fast", group="string", since="6.2.0",
         summary="Returns the string value of a key after deleting the key.", keys=(1, 1, 1))
def getdel(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    value = ks.read(db, args[1])
    if value is None:
        return null(conn.proto)
    if type(value) not in STRING_TYPES:
        return WRONGTYPE
    ks.delete(db, args[1])
    ks.notify(GENERIC, b"del", args[1], db.index)
    return bulk(value)


# GETEX key [EX seconds | PX milliseconds | EXAT unix-time-seconds |
#     PXAT unix-time-milliseconds | PERSIST]
@command("getex", -2, "write fast", "write string fast", group="string", since="6.2.0",
         summary="Returns the string value of a key after setting its expiration time.",
         keys=(1, 1, 1))
def getex(conn: Connection, args: list[bytes]) -> bytes:
    parsed = _options(args, 2, _GETEX_WORDS)
    if type(parsed) is bytes:
        return parsed
    words, expiry, amount = parsed
    persist = b"persist" in words
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    key = args[1]
    value = ks.read(db, key)
    if value is None:
        return null(conn.proto)
    if type(value) not in STRING_TYPES:
        return WRONGTYPE
    if expiry is not None:
        when = _deadline(conn, amount, expiry, "getex")
        if type(when) is bytes:
            return when
        if not expiry[1] and when <= ks.now():
            ks.delete(db, key)
            ks.notify(GENERIC, b"del", key, db.index)
        else:
            ks.set_expire(db, key, when)
            ks.notify(GENERIC, b"expire", key, db.index)
    elif persist and ks.persist(db, key):
        ks.notify(GENERIC, b"persist", key, db.index)
    return bulk(value)


# MGET key [key ...]
@command("mget", -2, "readonly fast", "read string fast", group="string", since="1.0.0",
         summary="Atomically returns the string values of one or more keys.", keys=(1, -1, 1))
def mget(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    missing = null(conn.proto)
    parts = [array_header(len(args) - 1)]
    for key in args[1:]:
        value = ks.read(db, key)
        if value is None or type(value) not in STRING_TYPES:
            parts.append(missing)
        else:
            parts.append(b"$%d\r\n%b\r\n" % (len(value), value))
    return b"".join(parts)


# MSET key value [key value ...]
@command("mset", -3, "write denyoom", "write string slow", group="string", since="1.0.1",
         summary="Atomically creates or modifies the string values of one or more keys.",
         keys=(1, -1, 2))
def mset(conn: Connection, args: list[bytes]) -> bytes:
    if len(args) % 2 == 0:
        return wrong_arity("mset")
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    for i in range(1, len(args), 2):
        ks.store(db, args[i], args[i + 1])
        ks.notify(STRING, b"set", args[i], db.index)
    return OK


# MSETNX key value [key value ...]
@command("msetnx", -3, "write denyoom", "write string slow", group="string", since="1.0.1",
         summary="Atomically modifies the string values of one or more keys only when all keys "
                 "don't exist.", keys=(1, -1, 2))
def msetnx(conn: Connection, args: list[bytes]) -> bytes:
    if len(args) % 2 == 0:
        return wrong_arity("msetnx")
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    for i in range(1, len(args), 2):
        if ks.write(db, args[i]) is not None:
            return ZERO
    for i in range(1, len(args), 2):
        ks.store(db, args[i], args[i + 1])
        ks.notify(STRING, b"set", args[i], db.index)
    return ONE


def _too_big(conn: Connection, total: int) -> bool:
    """Whether a string of total bytes passes proto-max-bulk-len (checkStringLength)."""
    return total > conn.server.config["proto-max-bulk-len"]


# APPEND key value
@command("append", 3, "write denyoom fast", "write string fast", group="string",
         since="2.0.0", summary="Appends a string to the value of a key. Creates the key if it "
                                "doesn't exist.", keys=(1, 1, 1))
def append(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    key = args[1]
    value = ks.write(db, key)
    if value is None:
        ks.store(db, key, args[2])
        length = len(args[2])
    else:
        if type(value) not in STRING_TYPES:
            return WRONGTYPE
        if _too_big(conn, len(value) + len(args[2])):
            return TOO_BIG
        # Appending in place (a bytearray, Redis's raw encoding) keeps repeated APPENDs linear.
        grown = value if type(value) is bytearray else bytearray(value)
        grown += args[2]
        ks.replace(db, key, grown)
        length = len(grown)
    ks.notify(STRING, b"append", key, db.index)
    return integer(length)


# STRLEN key
@command("strlen", 2, "readonly fast", "read string fast", group="string", since="2.2.0",
         summary="Returns the length of a string value.", keys=(1, 1, 1))
def strlen(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    value = ks.read(ks.dbs[conn.db], args[1])
    if value is None:
        return ZERO
    if type(value) not in STRING_TYPES:
        return WRONGTYPE
    return integer(len(value))


# GETRANGE key start end
@command("getrange", 4, "readonly", "read string slow", group="string", since="2.4.0",
         summary="Returns a substring of the string stored at a key.", keys=(1, 1, 1))
def getrange(conn: Connection, args: list[bytes]) -> bytes:
    start = parse_integer(args[2])
    end = parse_integer(args[3])
    if start is None or end is None:
        return NOT_INTEGER
    ks = conn.server.keyspace
    value = ks.read(ks.dbs[conn.db], args[1])
    if value is None:
        return EMPTY_BULK
    if type(value) not in STRING_TYPES:
        return WRONGTYPE
    length = len(value)
    if start < 0 and end < 0 and start > end:
        return EMPTY_BULK
    start = max(0, start + length if start < 0 else start)
    end = max(0, end + length if end < 0 else end)
    end = min(end, length - 1)
    if start > end or length == 0:
        return EMPTY_BULK
    return bulk(value[start:end + 1])


# SUBSTR key start end: GETRANGE's name before Redis 2.0, still answered
command("substr", 4, "readonly", "read string slow", group="string", since="1.0.0",
        summary="Returns a substring from a string value.", keys=(1, 1, 1))(getrange)


# SETRANGE key offset value
@command("setrange", 4, "write denyoom", "write string slow", group="string", since="2.2.0",
         summary="Overwrites a part of a string value with another by an offset. Creates the "
                 "key if it doesn't exist.", keys=(1, 1, 1))
def setrange(conn: Connection, args: list[bytes]) -> bytes:
    offset = parse_integer(args[2])
    if offset is None:
        return NOT_INTEGER
    if offset < 0:
        return error("offset is out of range")
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    key, piece = args[1], args[3]
    value = ks.write(db, key)
    if value is not None and type(value) not in STRING_TYPES:
        return WRONGTYPE
    if not piece:
        return integer(0 if value is None else len(value))
    if _too_big(conn, offset + len(piece)):
        return TOO_BIG
    grown = bytearray() if value is None else \
        value if type(value) is bytearray else bytearray(value)
    if len(grown) < offset:
        grown += bytes(offset - len(grown))
    grown[offset:offset + len(piece)] = piece
    if value is None:
        ks.store(db, key, grown)
    else:
        ks.replace(db, key, grown)
    ks.notify(STRING, b"setrange", key, db.index)
    return integer(len(grown))


# --- counters ----------------------------------------------------------------------

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1


def _increment(conn: Connection, key: bytes, by: int) -> bytes:
    """INCR/DECR/INCRBY/DECRBY: add to an integer string (a missing key counts as 0)."""
    ks: Keyspace = conn.server.keyspace
    db = ks.dbs[conn.db]
    value = ks.write(db, key)
    if value is None:
        current = 0
    else:
        if type(value) not in STRING_TYPES:
            return WRONGTYPE
        current = parse_integer(value)
        if current is None:
            return NOT_INTEGER
    result = current + by
    if not _INT64_MIN <= result <= _INT64_MAX:
        return error("increment or decrement would overflow")
    encoded = b"%d" % result
    if value is None:
        ks.store(db, key, encoded)
    else:
        ks.replace(db, key, encoded)
    ks.notify(STRING, b"incrby", key, db.index)
    return integer(result)


# INCR key
@command("incr", 2, "write denyoom fast", "write string fast", group="string", since="1.0.0",
         summary="Increments the integer value of a key by one. Uses 0 as initial value if the "
                 "key doesn't exist.", keys=(1, 1, 1))
def incr(conn: Connection, args: list[bytes]) -> bytes:
    return _increment(conn, args[1], 1)


# DECR key
@command("decr", 2, "write denyoom fast", "write string fast", group="string", since="1.0.0",
         summary="Decrements the integer value of a key by one. Uses 0 as initial value if the "
                 "key doesn't exist.", keys=(1, 1, 1))
def decr(conn: Connection, args: list[bytes]) -> bytes:
    return _increment(conn, args[1], -1)


# INCRBY key increment
@command("incrby", 3, "write denyoom fast", "write string fast", group="string",
         since="1.0.0", summary="Increments the integer value of a key by a number. Uses 0 as "
                                "initial value if the key doesn't exist.", keys=(1, 1, 1))
def incrby(conn: Connection, args: list[bytes]) -> bytes:
    by = parse_integer(args[2])
    if by is None:
        return NOT_INTEGER
    return _increment(conn, args[1], by)


# DECRBY key decrement
@command("decrby", 3, "write denyoom fast", "write string fast", group="string",
         since="1.0.0", summary="Decrements a number from the integer value of a key. Uses 0 "
                                "as initial value if the key doesn't exist.", keys=(1, 1, 1))
def decrby(conn: Connection, args: list[bytes]) -> bytes:
    by = parse_integer(args[2])
    if by is None:
        return NOT_INTEGER
    if by == _INT64_MIN:
        return error("decrement would overflow")
    return _increment(conn, args[1], -by)


# Redis computes INCRBYFLOAT in x87 long double (64-bit significand) and prints it with
# "%.17Lf" minus trailing zeros; exact fractions rounded to 64 bits reproduce its digits.
_LD_BITS = 64
_LD_MAX_EXP = 16384  # 2**16384 overflows a long double
_DECIMAL = re.compile(rb"([-+]?)(\d*)(?:\.(\d*))?(?:[eE]([-+]?\d+))?")
_INFINITY = re.compile(rb"[-+]?(inf|infinity)", re.IGNORECASE)


class _Infinite(Exception):
    """A long double that overflowed (or was written as inf)."""


def _round_long_double(value: Fraction) -> Fraction:
    """value rounded to the nearest long double (ties to even); _Infinite on overflow."""
    if value == 0:
        return value
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    exponent = magnitude.numerator.bit_length() - magnitude.denominator.bit_length()
    if magnitude < Fraction(2) ** exponent:
        exponent -= 1
    shift = exponent - (_LD_BITS - 1)
    scaled = magnitude / Fraction(2) ** shift
    significand = round(scaled)
    result = Fraction(significand) * Fraction(2) ** shift
    if result >= Fraction(2) ** _LD_MAX_EXP:
        raise _Infinite
    return sign * result


def _parse_long_double(text: bytes) -> Fraction | None:
    """Parse as Redis's string2ld (strtold, no spaces, no NaN); None if not a valid float.

    Raises _Infinite for `inf`, which Redis accepts as a value but not as a result.
    """
    text = bytes(text).split(b"\0", 1)[0]
    if not text or len(text) >= 5 * 1024:
        return None
    if _INFINITY.fullmatch(text):
        raise _Infinite
    found = _DECIMAL.fullmatch(text)
    if found is None or not (found[2] or found[3]):
        return _parse_hex(text)
    sign, whole, fraction, exponent = found[1], found[2], found[3] or b"", found[4]
    digits = (whole + fraction).lstrip(b"0")
    power = int(exponent or 0) - len(fraction)
    if not digits:
        return Fraction(0)
    magnitude = len(digits) + power  # the value is below 10**magnitude
    if magnitude > 4940 or magnitude < -4960:
        return None  # strtold's ERANGE: overflow to HUGE_VAL or underflow to zero
    value = Fraction(int(digits)) * Fraction(10) ** power
    try:
        value = _round_long_double(value)
    except _Infinite:
        return None
    return -value if sign == b"-" else value


def _parse_hex(text: bytes) -> Fraction | None:
    """strtold's hexadecimal floats (0x1.8p1); None for anything else."""
    if not text.lstrip(b"+-").lower().startswith(b"0x"):
        return None
    try:
        return Fraction(float.fromhex(text.decode()))
    except (ValueError, OverflowError):
        return None


def format_long_double(value: Fraction) -> bytes:
    """"%.17Lf" with trailing zeros (and a bare point) removed, and -0 shown as 0."""
    scaled = round(value * 10**17)
    digits = b"%018d" % abs(scaled)
    text = digits[:-17] + b"." + digits[-17:]
    text = text.rstrip(b"0").rstrip(b".")
    return b"-" + text if scaled < 0 else text


# INCRBYFLOAT key increment
@command("incrbyfloat", 3, "write denyoom fast", "write string fast", group="string",
         since="2.6.0", summary="Increment the floating point value of a key by a number. Uses "
                                "0 as initial value if the key doesn't exist.", keys=(1, 1, 1))
def incrbyfloat(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    key = args[1]
    value = ks.write(db, key)
    if value is not None and type(value) not in STRING_TYPES:
        return WRONGTYPE
    try:
        current = Fraction(0) if value is None else _parse_long_double(value)
        by = _parse_long_double(args[2]) if current is not None else None
        if current is None or by is None:
            return NOT_FLOAT
        result = _round_long_double(current + by)
    except _Infinite:
        return error("increment would produce NaN or Infinity")
    encoded = FloatString(format_long_double(result))
    if value is None:
        ks.store(db, key, encoded)
    else:
        ks.replace(db, key, encoded)
    ks.notify(STRING, b"incrbyfloat", key, db.index)
    return bulk(encoded)
