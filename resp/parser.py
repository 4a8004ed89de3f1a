"""Request parsing: bytes in, commands out, no I/O.

Rules, as Redis 7 applies them to client requests:
- A request starting with `*` is a multibulk array of bulk strings; anything else is
  an inline command, one line of words as typed into telnet (quotes as in redis-cli).
- Every complete request in the buffer is taken out at once; an incomplete one waits.
- `*0` and `*-1` are ignored, and so is an empty inline line.
- A malformed request yields Redis's `Protocol error: ...` text: the requests before it
  are still returned, and the caller replies the error and closes the connection.

The fast path feeds multibulk requests to hiredis's C `Reader` and checks, from the
parsed arguments alone, that they occupied exactly the bytes received (a canonical
encoding of bulk strings only). Anything else - inline commands, unauthenticated
clients, odd encodings, hiredis errors - goes through `parse_exact`, a direct
implementation of Redis's rules over the raw bytes, which gives the exact error.
The raw bytes of an incomplete request are kept so that it can be checked against
the limits hiredis does not know (count and length ranges, 64 KiB header lines).
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
_SPACES = b" \t\n\r\x0b\x0c"
_SEPARATORS = b" \n\r\t"
_ESCAPES = {ord("n"): 10, ord("r"): 13, ord("t"): 9, ord("b"): 8, ord("a"): 7}
_HEX = b"0123456789abcdefABCDEF"
_BYTES_ONLY = {bytes}


class _Incomplete(Exception):
    """The buffer ends inside a request."""


class _Malformed(Exception):
    """The request breaks the protocol; args[0] is Redis's error text."""


def _parse_int(text: bytes) -> int | None:
    """Parse an integer as Redis's string2ll does, or return None."""
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


def _multibulk(buf: bytes | bytearray, pos: int, max_bulk: int, unauth: bool):
    """Parse one multibulk request at pos: (args or None when empty, next position)."""
    n = len(buf)
    eol = _find_cr(buf, pos)
    if eol < 0:
        if n - pos > INLINE_MAX:
            raise _Malformed("Protocol error: too big mbulk count string")
        raise _Incomplete
    if eol + 2 > n:
        raise _Incomplete
    count = _parse_int(bytes(buf[pos + 1:eol]))
    if count is None or count > INT_MAX:
        raise _Malformed("Protocol error: invalid multibulk length")
    if unauth and count > UNAUTH_MAX_MULTIBULK:
        raise _Malformed("Protocol error: unauthenticated multibulk length")
    p = eol + 2
    if count <= 0:
        return None, p
    args = []
    for _ in range(count):
        eol = _find_cr(buf, p)
        if eol < 0:
            if n - p > INLINE_MAX:
                raise _Malformed("Protocol error: too big bulk count string")
            raise _Incomplete
        if eol + 2 > n:
            raise _Incomplete
        if buf[p] != 0x24:
            raise _Malformed(b"Protocol error: expected '$', got '%c'" % buf[p])
        length = _parse_int(bytes(buf[p + 1:eol]))
        if length is None or length < 0 or length > max_bulk:
            raise _Malformed("Protocol error: invalid bulk length")
        if unauth and length > UNAUTH_MAX_BULK:
            raise _Malformed("Protocol error: unauthenticated bulk length")
        start = eol + 2
        p = start + length + 2  # Redis skips the two bytes after the data unchecked
        if p > n:
            raise _Incomplete
        args.append(bytes(buf[start:start + length]))
    return args, p


def _inline(buf: bytes | bytearray, pos: int):
    """Parse one inline command line at pos: (args or None when blank, next position)."""
    eol = _find_cr(buf, pos, b"\n")
    if eol < 0:
        if len(buf) - pos > INLINE_MAX:
            raise _Malformed("Protocol error: too big inline request")
        raise _Incomplete
    end = eol - 1 if eol > pos and buf[eol - 1] == 0x0D else eol
    args = split_args(bytes(buf[pos:end]))
    if args is None:
        raise _Malformed("Protocol error: unbalanced quotes in request")
    return (args or None), eol + 1


def parse_exact(buf: bytes | bytearray, pos: int = 0, max_bulk: int = DEFAULT_MAX_BULK,
                unauth: bool = False) -> tuple[list[list[bytes]], int, bytes | str | None]:
    """Take every complete request from buf[pos:] by Redis's rules.

    Returns the commands, the position of the first byte not consumed, and the
    protocol error that stopped parsing (None if the buffer simply ran out).
    """
    commands: list[list[bytes]] = []
    n = len(buf)
    try:
        while pos < n:
            if buf[pos] == 0x2A:
                args, pos = _multibulk(buf, pos, max_bulk, unauth)
            else:
                args, pos = _inline(buf, pos)
            if args is not None:
                commands.append(args)
    except _Incomplete:
        pass
    except _Malformed as exc:
        return commands, pos, exc.args[0]
    return commands, pos, None


class RequestParser:
    """Turns the bytes of one connection into commands, keeping what is incomplete."""

    __slots__ = ("_in_reader", "_pending", "_reader", "max_bulk_len", "unauthenticated")

    def __init__(self, max_bulk_len: int = DEFAULT_MAX_BULK) -> None:
        self._reader = hiredis.Reader()
        self._pending: bytearray | None = None  # raw bytes of an incomplete request
        self._in_reader = False  # hiredis holds the same incomplete multibulk request
        self.max_bulk_len = max_bulk_len
        self.unauthenticated = False  # apply Redis's tighter limits before AUTH

    @property
    def pending(self) -> int:
        """How many bytes of an incomplete request are buffered (the query buffer)."""
        return len(self._pending) if self._pending is not None else 0

    def feed(self, data: bytes) -> tuple[list[list[bytes]], bytes | str | None]:
        """Take all complete commands out of what has arrived so far.

        Returns the commands and, if the stream broke the protocol, the error text
        (the commands returned come before the bad request and are still to be run).
        """
        if self._pending is not None:
            self._pending += data
            buf = self._pending
        else:
            buf = data
        if self._in_reader or (buf is data and data[:1] == b"*" and not self.unauthenticated):
            self._reader.feed(data)
        else:
            return self._exact(buf)
        return self._fast(buf)

    def _fast(self, buf: bytes | bytearray) -> tuple[list[list[bytes]], bytes | str | None]:
        """Parse with hiredis, checking the arguments account for every byte consumed."""
        commands = []
        consumed = 0
        gets = self._reader.gets
        try:
            while (args := gets()) is not False:
                if type(args) is not list:
                    return self._exact(buf)
                n = len(args)
                if n == 0:
                    consumed += 4
                    continue
                if {*map(type, args)} != _BYTES_ONLY:
                    return self._exact(buf)
                consumed += (3 + len(str(n)) + 5 * n + sum(map(len, args))
                             + sum(map(len, map(str, map(len, args)))))
                commands.append(args)
        except hiredis.ProtocolError:
            return self._exact(buf)
        if len(buf) > self.max_bulk_len and commands and \
                max(max(map(len, c)) for c in commands) > self.max_bulk_len:
            return self._exact(buf)
        if not self._reader.has_data():
            if consumed != len(buf):
                return self._exact(buf)
            self._pending = None
            self._in_reader = False
            return commands, None
        if consumed >= len(buf):
            return self._exact(buf)
        # Check the incomplete request against the limits hiredis does not apply.
        rest = buf if consumed == 0 else buf[consumed:]
        more, _, error = parse_exact(rest, 0, self.max_bulk_len)
        if error is not None:
            return commands, error
        if more:
            return self._exact(buf)
        self._pending = rest if type(rest) is bytearray else bytearray(rest)
        self._in_reader = True
        return commands, None

    def _exact(self, buf: bytes | bytearray) -> tuple[list[list[bytes]], bytes | str | None]:
        """Parse with Redis's rules in Python; hand a trailing multibulk back to hiredis."""
        self._reader = hiredis.Reader()
        self._in_reader = False
        commands, pos, error = parse_exact(buf, 0, self.max_bulk_len, self.unauthenticated)
        if error is not None or pos >= len(buf):
            self._pending = None
            return commands, error
        self._pending = bytearray(buf[pos:])
        if self._pending[:1] == b"*" and not self.unauthenticated:
            self._reader.feed(bytes(self._pending))
            self._in_reader = True
        return commands, None
