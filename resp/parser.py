"""Request parsing: bytes in, commands out, no I/O.

Rules, as Redis 7 applies them to client requests:
- A request starting with `*` is a multibulk array of bulk strings; anything else is
  an inline command, one line of words as typed into telnet (quotes as in redis-cli).
- Every complete request in the buffer is taken out at once; an incomplete one waits.
- `*0` and `*-1` are ignored, and so is an empty inline line.
- A malformed request yields Redis's `Protocol error: ...` text: the requests before it
  are still returned, and the caller replies the error and closes the connection.

How:
- The fast path feeds multibulk requests to hiredis's C `Reader`. hiredis reads replies,
  a wider language than requests (other types, nesting, `~` and `|` aggregates that also
  come out as lists, `+`, `(` and `=` strings that also come out as bytes), so a request
  it returns is taken only if it was in Redis's own encoding: an array of bulk strings
  whose type bytes sit where that encoding puts them (checked in `_fast`: hiredis
  reads only canonical numbers, as string2ll, and ends each header line at its first
  CRLF, so a `*` at the start and a `$` at each place the canonical `*n` / `$len`
  encoding of the list it returned puts one prove the bytes were that encoding).
- hiredis allocates a list of the announced size as soon as it reads an aggregate header,
  and freeing it unfilled takes time in proportion: `*2147483647`, which Redis accepts
  and waits on, would stall the server for seconds, and `*4294967295` raises MemoryError.
  A buffer where such a count may hide (`_may_hide_big_count`) is not given to hiredis.
- Everything else (inline commands, unauthenticated clients, what hiredis rejects or
  reads differently, a request left incomplete by a read) goes through the exact parser,
  a direct implementation of Redis's rules that gives Redis's error. Like Redis, it keeps
  the arguments already read of an incomplete multibulk request, so a request arriving
  in many pieces is read once, never rescanned from its start.
"""

from __future__ import annotations

import re

import hiredis

INLINE_MAX = 64 * 1024  # Redis's PROTO_INLINE_MAX_SIZE: a header or inline line limit
INT_MAX = 2**31 - 1
UNAUTH_MAX_MULTIBULK = 10  # limits for a client that has not authenticated yet
UNAUTH_MAX_BULK = 16384
DEFAULT_MAX_BULK = 512 * 1024 * 1024  # proto-max-bulk-len

# string2ll's accepted forms: no sign but '-', no leading zeros, no spaces.
_INTEGER = re.compile(rb"-?[1-9][0-9]{0,18}|0")
# Inline lines with none of these split like bytes.split(); others take the slow path.
_INLINE_SPECIAL = re.compile(rb"[\"'\x0b\x0c]")
_SPACES = b" \t\n\r\x0b\x0c"  # C's isspace()
_SEPARATORS = b" \n\r\t"  # what ends an unquoted word in sdssplitargs
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = b"0123456789abcdefABCDEF"
_STAR, _DOLLAR = ord("*"), ord("$")
# Aggregate type bytes that make hiredis allocate a list up front become `*`, digits `0`:
# a count of 10000 or more then shows as `*00000` in the translated buffer.
_COUNT_SHAPE = bytes(_STAR if i in b"*~|>" else 0x30 if 0x30 <= i <= 0x39 else 0x2E
                     for i in range(256))
_BIG_COUNT = b"*00000"
# Found with re rather than `in`: in a translated buffer full of digits (payloads of
# numbers, timestamps) `in` advanced about a byte per step (8.3 us per 100 PUBLISHes of
# digits, against 2.4 us for this search).
_FIND_BIG_COUNT = re.compile(re.escape(_BIG_COUNT)).search
_AGGREGATES = tuple(b"*~|>")
_SCAN_FROM = 4096  # from this size a buffer's sparse type bytes are looked at one by one
_SMALL = 10000
_DIGITS = tuple(len(str(i)) for i in range(_SMALL))  # decimal digits of small sizes
# Bytes of a bulk string of n bytes in Redis's encoding (`$n\r\n`, data, `\r\n`).
_SPAN = tuple(5 + size + _DIGITS[size] for size in range(_SMALL))


def _span(size: int) -> int:
    """Bytes of a bulk string of `size` bytes in Redis's encoding."""
    return _SPAN[size] if size < _SMALL else 5 + size + len(str(size))


def _canonical_end(buf: bytes | bytearray, pos: int, args: list) -> int:
    """Where the request at pos ends if it is args in Redis's encoding (the `*` checked
    by the caller, numbers canonical as hiredis reads them), else -1."""
    count = len(args)
    end = pos + 3 + (_DIGITS[count] if count < _SMALL else len(str(count)))
    for arg in args:
        if type(arg) is not bytes or buf[end] != _DOLLAR:
            return -1
        end += _span(len(arg))
    return end


class _Incomplete(Exception):
    """The buffer ends inside a request."""


class _Malformed(Exception):
    """The request breaks the protocol; args[0] is Redis's error text (bytes)."""


def _parse_int(text: bytes | bytearray) -> int | None:
    """Parse an integer as Redis's string2ll does, or return None."""
    if text.isdigit() and len(text) < 19 and (text[0] != 48 or len(text) == 1):
        return int(text)  # most: no sign, no leading zero, within a long long
    if _INTEGER.fullmatch(text) is None:
        return None
    value = int(text)
    if not -(2**63) <= value < 2**63:
        return None
    return value


def _find_cr(buf: bytes | bytearray, pos: int, char: bytes = b"\r") -> int:
    """Find `char` from pos as C's strchr would: a NUL byte ends the search."""
    end = buf.find(char, pos)
    if end >= 0 and buf.find(b"\x00", pos, end) >= 0:
        return -1
    return end


def split_args(line: bytes) -> list[bytes] | None:
    """Split an inline command line as Redis's sdssplitargs; None for unbalanced quotes."""
    line = line.split(b"\x00", 1)[0]
    if _INLINE_SPECIAL.search(line) is None:
        return line.split()
    args: list[bytes] = []
    i, n = 0, len(line)
    while True:
        while i < n and line[i] in _SPACES:
            i += 1
        if i >= n:
            return args
        current = bytearray()
        in_double = in_single = False
        while True:
            c = line[i] if i < n else 0
            if in_double:
                if c == 0x5C and i + 3 < n and line[i + 1] == 0x78 and line[i + 2] in _HEX \
                        and line[i + 3] in _HEX:
                    current.append(int(line[i + 2:i + 4], 16))
                    i += 3
                elif c == 0x5C and i + 1 < n:
                    i += 1
                    current.append(_ESCAPES.get(line[i], line[i]))
                elif c == 0x22:
                    if i + 1 < n and line[i + 1] not in _SPACES:
                        return None
                    i += 1
                    break
                elif i >= n:
                    return None
                else:
                    current.append(c)
            elif in_single:
                if c == 0x5C and i + 1 < n and line[i + 1] == 0x27:
                    i += 1
                    current.append(0x27)
                elif c == 0x27:
                    if i + 1 < n and line[i + 1] not in _SPACES:
                        return None
                    i += 1
                    break
                elif i >= n:
                    return None
                else:
                    current.append(c)
            elif i >= n or c in _SEPARATORS:
                break
            elif c == 0x22:
                in_double = True
            elif c == 0x27:
                in_single = True
            else:
                current.append(c)
            i += 1
        args.append(bytes(current))


def _inline(buf: bytes | bytearray, pos: int) -> tuple[list[bytes], int]:
    """Read the inline command line at pos: (its words, possibly none; next position)."""
    eol = _find_cr(buf, pos, b"\n")
    if eol < 0:
        if len(buf) - pos > INLINE_MAX:
            raise _Malformed(b"Protocol error: too big inline request")
        raise _Incomplete
    end = eol - 1 if eol > pos and buf[eol - 1] == 0x0D else eol
    args = split_args(bytes(buf[pos:end]))
    if args is None:
        raise _Malformed(b"Protocol error: unbalanced quotes in request")
    return args, eol + 1


# In a run of inline lines, these need the line-by-line rules (quotes, NUL, \v \f, and a
# line starting a multibulk request).
_INLINE_RUN_SPECIAL = re.compile(rb"[\"'\x0b\x0c\x00]|\n\*")


def _inline_run(buf: bytes | bytearray, pos: int, commands: list[list[bytes]]) -> int:
    """Take every complete inline line from pos at once, if all are plain words.

    Telnet sessions and redis-benchmark's PING_INLINE send such runs; splitting them in
    two C calls is several times faster than a line at a time. Returns pos unchanged
    when the run needs the exact rules.
    """
    last = buf.rfind(b"\n", pos)
    if last < 0:
        return pos
    run = bytes(buf[pos:last + 1])
    if _INLINE_RUN_SPECIAL.search(run) is not None:
        return pos
    commands.extend([args for args in map(bytes.split, run.split(b"\n")) if args])
    return last + 1


def _count(buf: bytes | bytearray, pos: int, unauth: bool) -> tuple[int, int]:
    """Read the `*count` line of a multibulk request at pos: (count, next position)."""
    eol = _find_cr(buf, pos)
    if eol < 0:
        if len(buf) - pos > INLINE_MAX:
            raise _Malformed(b"Protocol error: too big mbulk count string")
        raise _Incomplete
    if eol + 2 > len(buf):  # the byte after '\r' must be there; Redis does not check it
        raise _Incomplete
    count = _parse_int(buf[pos + 1:eol])
    if count is None or count > INT_MAX:
        raise _Malformed(b"Protocol error: invalid multibulk length")
    if unauth and count > UNAUTH_MAX_MULTIBULK:
        raise _Malformed(b"Protocol error: unauthenticated multibulk length")
    return count, eol + 2


def _bulks(buf: bytes | bytearray, pos: int, args: list[bytes], left: int, *, max_bulk: int,
           unauth: bool) -> tuple[int, int]:
    """Read up to `left` bulk strings at pos into args: (next position, bulks still due)."""
    n = len(buf)
    while left:
        eol = _find_cr(buf, pos)
        if eol < 0:
            if n - pos > INLINE_MAX:
                raise _Malformed(b"Protocol error: too big bulk count string")
            break
        if eol + 2 > n:
            break
        if buf[pos] != _DOLLAR:
            raise _Malformed(b"Protocol error: expected '$', got '%c'" % buf[pos])
        length = _parse_int(buf[pos + 1:eol])
        if length is None or length < 0 or length > max_bulk:
            raise _Malformed(b"Protocol error: invalid bulk length")
        if unauth and length > UNAUTH_MAX_BULK:
            raise _Malformed(b"Protocol error: unauthenticated bulk length")
        start = eol + 2
        if start + length + 2 > n:
            break
        args.append(bytes(memoryview(buf)[start:start + length]))  # one copy, even of a bytearray
        pos = start + length + 2  # Redis skips the two bytes after the data unchecked
        left -= 1
    return pos, left


def parse_exact(buf: bytes | bytearray, pos: int = 0, max_bulk: int = DEFAULT_MAX_BULK,
                unauth: bool = False) -> tuple[list[list[bytes]], int, bytes | None]:
    """Take every complete request from buf[pos:] by Redis's rules, all at once.

    Returns the commands, the position where the first incomplete or malformed request
    starts (len(buf) when all was taken), and the protocol error that stopped parsing,
    Redis's text without the `ERR ` prefix (None if the buffer simply ran out).
    This is the reference that RequestParser, fed any way, must agree with.
    """
    commands: list[list[bytes]] = []
    n = len(buf)
    try:
        while pos < n:
            if buf[pos] != _STAR:
                args, end = _inline(buf, pos)
            else:
                count, end = _count(buf, pos, unauth)
                args = []
                end, left = _bulks(buf, end, args, max(count, 0), max_bulk=max_bulk,
                                   unauth=unauth)
                if left:
                    break
            if args:
                commands.append(args)
            pos = end
    except _Incomplete:
        pass
    except _Malformed as exc:
        return commands, pos, exc.args[0]
    return commands, pos, None


def _may_hide_big_count(buf: bytes | bytearray, pos: int) -> bool:
    """Whether hiredis might read an aggregate header of 10000 or more in buf[pos:]:
    an aggregate type byte followed by five digits."""
    if len(buf) - pos >= _SCAN_FROM:
        # A large buffer of large requests is mostly payload with few type bytes: look
        # at each (a translated copy of 64 KiB cost 40% of the CPU of 16 KiB PUBLISHes).
        # Many small requests have too many: past one per KiB, translate the buffer.
        budget = (len(buf) - pos) >> 10
        last = len(buf) - 6  # a header of five digits needs six bytes from its type byte
        for byte in _AGGREGATES:
            at = buf.find(byte, pos)
            while at >= 0 and budget:
                # Most are a request's own `*` with a one-digit count: the second byte,
                # looked at first, rules them out without a slice.
                if at <= last and 47 < buf[at + 2] < 58 and buf[at + 1:at + 6].isdigit():
                    return True
                at = buf.find(byte, at + 1)
                budget -= 1
            if not budget:
                break
        else:
            return False
    return _FIND_BIG_COUNT(buf.translate(_COUNT_SHAPE), pos) is not None


class RequestParser:
    """Turns the bytes of one connection into commands, keeping what is incomplete."""

    __slots__ = ("_args", "_args_size", "_buf", "_left", "_reader", "held", "max_bulk_len",
                 "unauthenticated")

    def __init__(self, max_bulk_len: int = DEFAULT_MAX_BULK) -> None:
        self._reader = hiredis.Reader()  # empty between feeds
        self._buf = bytearray()  # unread bytes of an incomplete request
        self._args: list[bytes] = []  # arguments read so far of an incomplete multibulk
        self._args_size = 0  # their bytes, which count in the query buffer as in Redis
        self._left = 0  # bulks still due for that multibulk (0: at a request's start)
        self.max_bulk_len = max_bulk_len
        self.unauthenticated = False  # apply Redis's tighter limits before AUTH
        self.held = False  # complete requests may wait in the buffer (read one by one)

    @property
    def pending(self) -> int:
        """How many bytes of an incomplete request are held (the query buffer): its unread
        bytes and the arguments already read from it."""
        return len(self._buf) + self._args_size

    def feed(self, data: bytes) -> tuple[list[list[bytes]], bytes | None]:
        """Take all complete commands out of what has arrived so far.

        Returns the commands and, if the stream broke the protocol, Redis's error text
        without the `ERR ` prefix (the commands returned come before the bad request and
        are still to be run).
        """
        if self._left or self._buf:
            self._buf += data
            buf: bytes | bytearray = self._buf
        else:
            buf = data
        commands: list[list[bytes]] = []
        pos, n = 0, len(buf)
        fast = None  # whether hiredis may read this buffer, checked at its first use
        # Before AUTH, Redis reads each request with the limits in force once the one
        # before has run (an AUTH lifts them): then a feed takes one request, and
        # `held` says complete ones may wait in the buffer.
        one = self.unauthenticated
        self.held = False
        try:
            if self._left:
                pos = self._more_bulks(buf, pos, commands)
            while pos < n and not self._left:
                if one and commands:
                    self.held = True
                    break
                if buf[pos] == _STAR and not one:
                    if fast is None:
                        fast = not _may_hide_big_count(buf, pos)
                    if fast:
                        pos = self._fast(buf, pos, commands)
                        if pos == n:
                            break
                        fast = False  # the rest of this buffer goes to the exact parser
                elif buf[pos] != _STAR and not one:
                    start, pos = pos, _inline_run(buf, pos, commands)
                    if pos != start:
                        continue
                pos = self._exact(buf, pos, commands)
        except _Incomplete:
            pass
        except _Malformed as exc:
            self._buf, self._args, self._args_size, self._left = bytearray(), [], 0, 0
            return commands, exc.args[0]
        if pos >= n:
            self._buf = bytearray()
        elif buf is self._buf:
            del buf[:pos]
        else:
            self._buf = bytearray(memoryview(buf)[pos:])
        return commands, None

    def _fast(self, buf: bytes | bytearray, pos: int, commands: list[list[bytes]]) -> int:
        """Take requests from buf[pos:] with hiredis while they are in Redis's encoding.

        Returns where it stopped: len(buf), or the start of a request left for the
        exact parser (incomplete, or not in Redis's own encoding).
        """
        reader = self._reader
        reader.feed(buf, pos)
        gets = reader.gets
        max_bulk = self.max_bulk_len
        may_be_too_long = len(buf) - pos > max_bulk
        span = _SPAN
        append = commands.append
        try:
            while (args := gets()) is not False:
                # Redis's own encoding: a `*` here, and a `$` where each element starts.
                # A `$` there proves the element was a bulk string of len(arg) bytes (or
                # a null, whose len() raises TypeError), so the next one starts after it.
                if type(args) is not list or buf[pos] != _STAR:
                    break
                count = len(args)
                # Requests of one to three arguments (most), without a loop; the last
                # may be large (a value, a message). The last one's span is `_span`
                # inlined: the call cost 25 ns per request (16 pipelined SETs).
                if count == 3 and len(args[1]) < _SMALL:
                    name, first, second = args
                    at1 = pos + 4
                    at2 = at1 + span[len(name)]
                    at3 = at2 + span[len(first)]
                    if buf[at1] != _DOLLAR or buf[at2] != _DOLLAR or buf[at3] != _DOLLAR:
                        break
                    size = len(second)
                    end = at3 + (span[size] if size < _SMALL else _span(size))
                elif count == 2 and len(args[1]) < _SMALL:
                    name, first = args
                    at2 = pos + 4 + span[len(name)]
                    if buf[pos + 4] != _DOLLAR or buf[at2] != _DOLLAR:
                        break
                    end = at2 + span[len(first)]
                elif count == 1:
                    if buf[pos + 4] != _DOLLAR:
                        break
                    size = len(args[0])
                    end = pos + 4 + (span[size] if size < _SMALL else _span(size))
                else:
                    end = _canonical_end(buf, pos, args)
                    if end < 0:
                        break
                if may_be_too_long and max(map(len, args), default=0) > max_bulk:
                    break
                if count:
                    append(args)
                pos = end
            else:
                if pos == len(buf):  # every byte fed belongs to a request taken
                    return pos
        # TypeError: a null element, or a map with a list for key. IndexError: a `$`
        # looked for past the end, after an element that was not a bulk string.
        except (hiredis.ProtocolError, TypeError, IndexError):
            pass
        self._reader = hiredis.Reader()
        return pos

    def _exact(self, buf: bytes | bytearray, pos: int, commands: list[list[bytes]]) -> int:
        """Read one request at pos by Redis's rules; return the next position."""
        if buf[pos] != _STAR:
            args, pos = _inline(buf, pos)
            if args:
                commands.append(args)
            return pos
        count, pos = _count(buf, pos, self.unauthenticated)
        if count <= 0:
            return pos
        self._left = count
        return self._more_bulks(buf, pos, commands)

    def _more_bulks(self, buf: bytes | bytearray, pos: int,
                    commands: list[list[bytes]]) -> int:
        """Read the bulks still due for the current multibulk; keep them if some are missing."""
        before = len(self._args)
        pos, self._left = _bulks(buf, pos, self._args, self._left, max_bulk=self.max_bulk_len,
                                 unauth=self.unauthenticated)
        if not self._left:
            commands.append(self._args)
            self._args, self._args_size = [], 0
        else:
            self._args_size += sum(map(len, self._args[before:]))
        return pos
