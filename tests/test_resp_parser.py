"""Request parsing without a network: Redis 7's rules, fed whole, in pieces, or byte by byte.

The expected results follow Redis's networking.c and sdssplitargs, and were checked
against a real redis-server 7.0.15 (tests/test_protocol.py compares the same kinds of
streams byte for byte). Three ways of parsing must agree on each: `parse_exact` over
the whole stream, `RequestParser` fed the whole stream (the hiredis fast path where it
applies), and `RequestParser` fed it in small pieces.
"""

from __future__ import annotations

import itertools
import random

import hiredis
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import resp.parser
from resp.parser import (
    DEFAULT_MAX_BULK,
    INLINE_MAX,
    RequestParser,
    parse_exact,
    split_args,
)

Commands = list[list[bytes]]

MULTIBULK_LENGTH = b"Protocol error: invalid multibulk length"
BULK_LENGTH = b"Protocol error: invalid bulk length"
UNBALANCED = b"Protocol error: unbalanced quotes in request"
TOO_BIG_INLINE = b"Protocol error: too big inline request"
TOO_BIG_MBULK = b"Protocol error: too big mbulk count string"
TOO_BIG_BULK = b"Protocol error: too big bulk count string"
UNAUTH_MULTIBULK = b"Protocol error: unauthenticated multibulk length"
UNAUTH_BULK = b"Protocol error: unauthenticated bulk length"


def expected_dollar(got: bytes) -> bytes:
    return b"Protocol error: expected '$', got '%b'" % got


def encode(*args: bytes) -> bytes:
    """A request in Redis's own multibulk encoding."""
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def feed(data: bytes, pieces: list[bytes] | None = None, *, unauth: bool = False,
         max_bulk: int = DEFAULT_MAX_BULK) -> tuple[Commands, bytes | None]:
    """Feed a fresh RequestParser the pieces (or data whole) until the first error,
    taking held requests as the server does (with empty feeds)."""
    parser = RequestParser(max_bulk)
    parser.unauthenticated = unauth
    commands: Commands = []
    for piece in [data] if pieces is None else pieces:
        got, problem = parser.feed(piece)
        commands += got
        while problem is None and parser.held:
            got, problem = parser.feed(b"")
            commands += got
        if problem is not None:
            return commands, problem
    return commands, None


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def exact(data: bytes, *, unauth: bool = False,
          max_bulk: int = DEFAULT_MAX_BULK) -> tuple[Commands, bytes | None]:
    commands, _, problem = parse_exact(data, 0, max_bulk, unauth)
    return commands, problem


WAYS = ["exact", "whole", "pieces"]


def parse(way: str, data: bytes, **limits) -> tuple[Commands, bytes | None]:
    """Parse data one of the three ways (pieces: byte by byte, or 997 bytes for big data)."""
    if way == "exact":
        return exact(data, **limits)
    if way == "whole":
        return feed(data, **limits)
    return feed(data, split(data, 1 if len(data) < 4096 else 997), **limits)


@pytest.fixture(params=WAYS)
def way(request: pytest.FixtureRequest) -> str:
    return request.param


# --- inline commands --------------------------------------------------------------------

@pytest.mark.parametrize(("data", "commands"), [
    (b"PING\r\n", [[b"PING"]]),
    (b"PING\n", [[b"PING"]]),
    (b"set  a\tb   c \r\n", [[b"set", b"a", b"b", b"c"]]),
    (b"\r\n\n  \r\n\t\r\nPING\r\n", [[b"PING"]]),  # empty and blank lines are ignored
    (b"PING\r\r\n", [[b"PING"]]),  # a CR before the CRLF is a blank
    (b"PI\rNG\r\n", [[b"PI", b"NG"]]),  # CR inside a line separates words
    (b'SET "a b" \'c d\'\r\n', [[b"SET", b"a b", b"c d"]]),
    (b'ECHO "\\n\\r\\t\\b\\a\\\\\\"\\q"\r\n', [[b"ECHO", b'\n\r\t\x08\x07\\"q']]),
    (b'ECHO "\\x41\\x7a\\xFF" "\\x4" "\\xZZ" "\\x4g"\r\n',
     [[b"ECHO", b"Az\xff", b"x4", b"xZZ", b"x4g"]]),
    (b"ECHO 'it\\'s' 'a\\nb' 'x\"y'\r\n", [[b"ECHO", b"it's", b"a\\nb", b'x"y']]),
    (b"ECHO \"\" ''\r\n", [[b"ECHO", b"", b""]]),
    (b'""\r\n', [[b""]]),
    (b'ECHO a"b c"\r\n', [[b"ECHO", b"ab c"]]),  # a quote may start inside a word
    (b"ECHO a'b c' d\r\n", [[b"ECHO", b"ab c", b"d"]]),
    (b'ECHO "a"\x0bb\r\n', [[b"ECHO", b"a", b"b"]]),  # any isspace() may follow a quote
    (b"EC\x0bHO x\x0c\r\n", [[b"EC\x0bHO", b"x\x0c"]]),  # \v and \f do not end a word...
    (b"\x0b\x0cPING\r\n", [[b"PING"]]),  # ...but are skipped between words
    (b"ECHO \xc3\xa9\xff\r\n", [[b"ECHO", b"\xc3\xa9\xff"]]),
    (b"$4\r\n+PING\r\n:1\r\n", [[b"$4"], [b"+PING"], [b":1"]]),  # only `*` is multibulk
    (b"PING\r\nECHO a\nPING", [[b"PING"], [b"ECHO", b"a"]]),  # the last line is incomplete
])
def test_inline(way: str, data: bytes, commands: Commands) -> None:
    assert parse(way, data) == (commands, None)


def test_inline_nul_hides_the_newline(way: str) -> None:
    """Redis looks for the newline with strchr: a NUL byte before it stalls the request."""
    assert parse(way, b"PI\x00NG\r\nPING\r\n") == ([], None)
    assert parse(way, b"PING\r\nPI\x00NG\r\nPING\r\n") == ([[b"PING"]], None)
    # Until the line passes 64 KiB, when it is too big.
    assert parse(way, b"PI\x00NG\r\n" + b"x" * INLINE_MAX) == ([], TOO_BIG_INLINE)


@pytest.mark.parametrize("data", [
    b'get "a b"x\r\n', b'ECHO "abc\r\n', b"ECHO 'abc\r\n", b"ECHO 'a'b\r\n",
    b'ECHO "a\\"\r\n', b'ECHO "a\\\r\n', b"ECHO 'a\\'\r\n", b'"\r\n',
])
def test_unbalanced_quotes(way: str, data: bytes) -> None:
    assert parse(way, b"PING\r\n" + data + b"PING\r\n") == ([[b"PING"]], UNBALANCED)


def test_split_args_matches_sdssplitargs() -> None:
    assert split_args(b"") == []
    assert split_args(b"  \t ") == []
    assert split_args(b"a\x00b c") == [b"a"]  # a C string ends at NUL
    assert split_args(b'"a\x00b"') is None
    assert split_args(b'"a" "b"') == [b"a", b"b"]
    assert split_args(b'"a"') == [b"a"]
    assert split_args(b"'a'\"") is None


# --- multibulk requests -----------------------------------------------------------------

@pytest.mark.parametrize(("data", "commands"), [
    (encode(b"PING"), [[b"PING"]]),
    (encode(b"ECHO", b"a\r\nb\x00") + encode(b"ECHO", b""), [[b"ECHO", b"a\r\nb\x00"],
                                                             [b"ECHO", b""]]),
    (b"*0\r\n*-1\r\n*-5\r\n*-9223372036854775808\r\nPING\r\n", [[b"PING"]]),  # count <= 0
    (b"*1\r\n$4\r\nPINGXX", [[b"PING"]]),  # the two bytes after the data are not checked
    (b"*2\r\n$4\r\nECHO\r\n$1\r\nvXX\r\n", [[b"ECHO", b"v"]]),  # nor is the \n after \r
    (b"*1\rX$4\r\nPING\r\n", [[b"PING"]]),
    (b"*1\r\n$4\rXPING\r\n", [[b"PING"]]),
    (b"*1\r\n$4\r\nPING\r\nPING\r\n" + encode(b"ECHO", b"x") + b"ECHO y\r\n",
     [[b"PING"], [b"PING"], [b"ECHO", b"x"], [b"ECHO", b"y"]]),
    # What hiredis would read as other RESP3 types is inline text for Redis.
    (encode(b"PING") + b"~1\r\n$4\r\nPING\r\n", [[b"PING"], [b"~1"], [b"$4"], [b"PING"]]),
    (encode(b"PING") + b"|1\r\n$4\r\nECHO\r\n$2\r\nhi\r\n",
     [[b"PING"], [b"|1"], [b"$4"], [b"ECHO"], [b"$2"], [b"hi"]]),
    (encode(b"PING") + b">1\r\n$4\r\nPING\r\n", [[b"PING"], [b">1"], [b"$4"], [b"PING"]]),
    (encode(b"PING") + b"%1\r\n$1\r\na\r\n$1\r\nb\r\n",
     [[b"PING"], [b"%1"], [b"$1"], [b"a"], [b"$1"], [b"b"]]),
    (encode(b"PING") + b"#f\r\n" + encode(b"PING"), [[b"PING"], [b"#f"], [b"PING"]]),
    (b"*-1\r\n" + encode(b"PING") * 3, [[b"PING"]] * 3),
])
def test_multibulk(way: str, data: bytes, commands: Commands) -> None:
    assert parse(way, data) == (commands, None)


@pytest.mark.parametrize("data", [
    b"*1\x00\r\n$4\r\nPING\r\n",  # strchr stops at the NUL: no end of line yet
    b"*1\r\n$4\x00\r\nPING\r\n",
    b"*2147483647\r\n",  # valid counts and lengths, waiting for data
    b"*1\r\n$536870912\r\n",
    b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nval",
    b"*1\r",
    b"A" * INLINE_MAX,  # limits are "more than 64 KiB"
    b"*" + b"1" * (INLINE_MAX - 1),
    b"*1\r\n$" + b"1" * (INLINE_MAX - 1),
])
def test_incomplete(way: str, data: bytes) -> None:
    assert parse(way, b"PING\r\n" + data) == ([[b"PING"]], None)


@pytest.mark.parametrize(("data", "problem"), [
    (b"*abc\r\n", MULTIBULK_LENGTH),
    (b"*1a\r\n", MULTIBULK_LENGTH),
    (b"*01\r\n", MULTIBULK_LENGTH),  # string2ll: no leading zeros,
    (b"*+1\r\n", MULTIBULK_LENGTH),  # no plus sign,
    (b"* 1\r\n", MULTIBULK_LENGTH),  # no spaces,
    (b"*1 \r\n", MULTIBULK_LENGTH),
    (b"*-0\r\n", MULTIBULK_LENGTH),  # no minus zero,
    (b"*\r\n", MULTIBULK_LENGTH),  # not empty
    (b"*1.0\r\n", MULTIBULK_LENGTH),
    (b"*2147483648\r\n", MULTIBULK_LENGTH),  # > INT_MAX
    (b"*4294967295\r\n", MULTIBULK_LENGTH),
    (b"*9223372036854775807\r\n", MULTIBULK_LENGTH),
    (b"*9223372036854775808\r\n", MULTIBULK_LENGTH),  # not a long long
    (b"*-9223372036854775809\r\n", MULTIBULK_LENGTH),
    (b"*1\r\n:1\r\n", expected_dollar(b":")),
    (b"*1\r\n+PING\r\n", expected_dollar(b"+")),
    (b"*1\r\n*1\r\n$1\r\na\r\n", expected_dollar(b"*")),
    (b"*1\r\n*2147483647\r\n", expected_dollar(b"*")),
    (b"*1\r\n\xff\r\n", expected_dollar(b"\xff")),
    (b"*1\r\n\r\n", expected_dollar(b"\r")),  # the error reply makes the CR a space
    (b"*2\r\n$4\r\nECHO\r\n_\r\n", expected_dollar(b"_")),
    (b"*1\r\n(123\r\n", expected_dollar(b"(")),
    (b"*2\r\n+0123456789\r\n=14\r\ntxt:0123456789\r\n", expected_dollar(b"+")),
    (b"*2\r\n$4\r\nECHO\r\n=6\r\ntxt:ab\r\n", expected_dollar(b"=")),
    (b"*1\r\n$-1\r\n", BULK_LENGTH),
    (b"*1\r\n$-0\r\n", BULK_LENGTH),
    (b"*1\r\n$01\r\n", BULK_LENGTH),
    (b"*1\r\n$+4\r\nPING\r\n", BULK_LENGTH),
    (b"*1\r\n$\r\n", BULK_LENGTH),
    (b"*1\r\n$4 \r\nPING\r\n", BULK_LENGTH),
    (b"*1\r\n$abc\r\n", BULK_LENGTH),
    (b"*1\r\n$536870913\r\n", BULK_LENGTH),  # > proto-max-bulk-len
    (b"*1\r\n$9223372036854775808\r\n", BULK_LENGTH),
])
def test_protocol_error(way: str, data: bytes, problem: bytes) -> None:
    """The commands before a bad request are returned; nothing after it is read."""
    before = encode(b"PING") + b"PING\r\n"
    after = encode(b"PING") + b"PING\r\n"
    assert parse(way, before + data + after) == ([[b"PING"], [b"PING"]], problem)


@pytest.mark.parametrize(("data", "problem"), [
    (b"A" * (INLINE_MAX + 1), TOO_BIG_INLINE),
    (b"*" + b"1" * INLINE_MAX, TOO_BIG_MBULK),
    (b"*1\x00" + b"1" * INLINE_MAX, TOO_BIG_MBULK),
    (b"*1\r\n$" + b"1" * INLINE_MAX, TOO_BIG_BULK),
    (b"*2\r\n$4\r\nECHO\r\n" + b"x" * (INLINE_MAX + 1), TOO_BIG_BULK),
])
def test_too_big(way: str, data: bytes, problem: bytes) -> None:
    """More than 64 KiB without the end of a line (or header) that is awaited.

    Redis checks when it has read the bytes and found no end of line, so the outcome
    for a longer line that does end depends on how the reads fell; not tested here.
    """
    before = encode(b"PING") + b"PING\r\n"
    assert parse(way, before + data) == ([[b"PING"], [b"PING"]], problem)


def test_error_inside_a_request_resumed_in_a_later_feed() -> None:
    parser = RequestParser()
    assert parser.feed(b"*3\r\n$4\r\nECHO\r\n") == ([], None)
    assert parser.feed(b"$1\r\na\r\n") == ([], None)
    assert parser.feed(b":1\r\n") == ([], expected_dollar(b":"))


@pytest.mark.parametrize("max_bulk", [1024 * 1024, 16])
def test_proto_max_bulk_len(way: str, max_bulk: int) -> None:
    limit = {"max_bulk": max_bulk}
    ok = encode(b"ECHO", b"x" * max_bulk)
    assert parse(way, ok, **limit) == ([[b"ECHO", b"x" * max_bulk]], None)
    too_long = encode(b"ECHO", b"x" * (max_bulk + 1))
    assert parse(way, ok + too_long, **limit) == ([[b"ECHO", b"x" * max_bulk]], BULK_LENGTH)
    header = b"*1\r\n$%d\r\n" % (max_bulk + 1)
    assert parse(way, header, **limit) == ([], BULK_LENGTH)


def test_parser_uses_a_changed_max_bulk_len() -> None:
    parser = RequestParser()
    parser.max_bulk_len = 4
    assert parser.feed(encode(b"ECHO", b"hello")) == ([], BULK_LENGTH)


# --- unauthenticated clients ------------------------------------------------------------

@pytest.mark.parametrize(("data", "commands", "problem"), [
    (b"*11\r\n", [], UNAUTH_MULTIBULK),
    (encode(*[b"x"] * 10), [[b"x"] * 10], None),
    (b"*1\r\n$16385\r\n", [], UNAUTH_BULK),
    (encode(b"x" * 16384), [[b"x" * 16384]], None),
    (b"*2147483648\r\n", [], MULTIBULK_LENGTH),  # the general checks come first
    (b"*1\r\n$536870913\r\n", [], BULK_LENGTH),
    (b"*-1\r\n*0\r\nPING\r\n", [[b"PING"]], None),
    (b"PING " + b"x " * 20 + b"\r\n", [[b"PING"] + [b"x"] * 20], None),  # inline: no limit
    (b"PING\r\n*11\r\n$4\r\nPING\r\n", [[b"PING"]], UNAUTH_MULTIBULK),
])
def test_unauthenticated_limits(way: str, data: bytes, commands: Commands,
                                problem: bytes | None) -> None:
    assert parse(way, data, unauth=True) == (commands, problem)
    if problem in (UNAUTH_MULTIBULK, UNAUTH_BULK):
        assert parse(way, data) == (commands, None)  # no limit once authenticated


def test_unauthenticated_reads_one_request_per_feed() -> None:
    """Before AUTH each request is read under the limits in force after the one before
    has run: a feed takes one, and an AUTH in between lifts the limits for the next."""
    parser = RequestParser()
    parser.unauthenticated = True
    data = encode(b"AUTH", b"pw") + encode(*[b"x"] * 11) + b"PING\r\n"
    assert parser.feed(data) == ([[b"AUTH", b"pw"]], None) and parser.held
    parser.unauthenticated = False  # the AUTH succeeded
    assert parser.feed(b"") == ([[b"x"] * 11, [b"PING"]], None) and not parser.held
    parser.unauthenticated = True
    assert parser.feed(b"PING\r\nPING\r\n*1\r\n$1") == ([[b"PING"]], None) and parser.held
    assert parser.feed(b"") == ([[b"PING"]], None) and parser.held
    assert parser.feed(b"") == ([], None) and not parser.held  # the rest is incomplete
    assert parser.feed(b"\r\nx\r\n*11\r\n") == ([[b"x"]], None) and parser.held
    assert parser.feed(b"") == ([], UNAUTH_MULTIBULK)


def test_unauthenticated_applies_from_the_next_feed() -> None:
    """AUTH or RESET in between: an incomplete request is checked under the new rules."""
    parser = RequestParser()
    assert parser.feed(b"*2\r\n$4\r\nECHO\r\n") == ([], None)
    parser.unauthenticated = True
    assert parser.feed(b"$16385\r\n") == ([], UNAUTH_BULK)
    parser = RequestParser()
    parser.unauthenticated = True
    assert parser.feed(b"*2\r\n$4\r\nECHO\r\n") == ([], None)
    parser.unauthenticated = False
    assert parser.feed(b"$16385\r\n") == ([], None)


# --- incremental feeding ----------------------------------------------------------------

def test_pending_counts_the_incomplete_request() -> None:
    parser = RequestParser()
    assert parser.pending == 0
    assert parser.feed(b"PING\r\nPI") == ([[b"PING"]], None)
    assert parser.pending == 2
    assert parser.feed(b"NG\r\n*2\r\n$4\r\nECHO\r\n$5\r\nhel") == ([[b"PING"]], None)
    assert 0 < parser.pending <= len(b"*2\r\n$4\r\nECHO\r\n$5\r\nhel")
    assert parser.feed(b"lo\r\n") == ([[b"ECHO", b"hello"]], None)
    assert parser.pending == 0


def test_empty_feed() -> None:
    parser = RequestParser()
    assert parser.feed(b"") == ([], None)
    assert parser.feed(b"*1\r\n$4\r\nPI") == ([], None)
    assert parser.feed(b"") == ([], None)
    assert parser.feed(b"NG\r\n") == ([[b"PING"]], None)


def test_big_value_in_many_reads() -> None:
    value = bytes(range(256)) * 4096  # 1 MiB, with every byte value, CR and LF included
    stream = encode(b"SET", b"k", value) + encode(b"PING")
    parser = RequestParser()
    commands: Commands = []
    for piece in split(stream, 65536):
        got, problem = parser.feed(piece)
        assert problem is None
        commands += got
        assert parser.pending < len(stream)
    assert commands == [[b"SET", b"k", value], [b"PING"]]
    assert parser.pending == 0


def test_many_arguments_in_many_reads() -> None:
    args = [b"%d" % i for i in range(30000)]
    stream = encode(*args) + encode(b"PING")
    assert feed(stream, split(stream, 4096)) == ([args, [b"PING"]], None)


def test_command_after_an_incomplete_one_is_taken_in_the_same_feed() -> None:
    parser = RequestParser()
    assert parser.feed(b"*1\r\n$4\r\nPI") == ([], None)
    assert parser.feed(b"NG\r\n" + encode(b"ECHO", b"a") + b"PING\r\n") == (
        [[b"PING"], [b"ECHO", b"a"], [b"PING"]], None)


HIREDIS_READER = hiredis.Reader


class SpyReader:
    """Wraps hiredis.Reader, recording what it is given."""

    fed: list[bytes] = []

    def __init__(self) -> None:
        self.reader = HIREDIS_READER()

    def feed(self, buf: bytes, offset: int = 0) -> None:
        SpyReader.fed.append(bytes(buf[offset:]))
        self.reader.feed(buf, offset)

    def gets(self) -> object:
        return self.reader.gets()


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    SpyReader.fed = []
    monkeypatch.setattr(resp.parser.hiredis, "Reader", SpyReader)
    return SpyReader.fed


def test_fast_path_takes_pipelined_requests(spy: list[bytes],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    stream = b"".join(encode(b"PUBLISH", b"ch", b"m%d" % i) for i in range(100))

    def no_exact(*args: object) -> None:
        raise AssertionError("the exact parser was used")

    monkeypatch.setattr(RequestParser, "_exact", no_exact)
    commands, problem = RequestParser().feed(stream)
    assert problem is None
    assert commands == [[b"PUBLISH", b"ch", b"m%d" % i] for i in range(100)]
    assert spy == [stream]


@pytest.mark.parametrize("data", [
    b"*2147483647\r\n",
    b"*1\r\n*2147483647\r\n",
    b"*1\r\n$4\r\nPING\r\n>2147483647\r\n",
    b"*1\r\n$4\r\nPING\r\n~4294967295\r\n",
    b"*1\r\n$4\r\nPING\r\n|10000\r\n",
    b"*2\r\n$1\r\nx\r\n$3\r\nabcXY*10000\r\n",
])
def test_hiredis_never_reads_a_big_aggregate_count(spy: list[bytes], data: bytes) -> None:
    """hiredis allocates the announced list at once, and freeing it takes time in proportion.

    `*2147483647` would stall the whole server for seconds, `*4294967295` raise MemoryError.
    """
    assert feed(data) == exact(data)
    assert spy == []


def test_hiredis_reads_small_counts(spy: list[bytes]) -> None:
    stream = encode(*[b"x"] * 9999)
    assert feed(stream) == ([[b"x"] * 9999], None)
    assert spy == [stream]


# --- properties -------------------------------------------------------------------------

ARG = st.one_of(
    st.binary(max_size=12),
    st.sampled_from([b"", b"\r\n", b"\r", b"\n", b"*1\r\n", b"$3\r\n", b'"', b"\x00", b" "]),
    st.binary(min_size=100, max_size=300),
)
COMMAND = st.lists(ARG, min_size=1, max_size=5)
SAFE_WORD = st.text("abcXYZ019_.:@-", min_size=1, max_size=12).map(str.encode)  # for inline
IGNORED = st.sampled_from([b"*0\r\n", b"*-1\r\n", b"\r\n", b"\n", b" \t\r\n"])


@st.composite
def request_streams(draw: st.DrawFn) -> tuple[Commands, bytes]:
    """Commands and a stream carrying them, multibulk or inline, with ignored requests."""
    commands: Commands = []
    parts: list[bytes] = []
    for _ in range(draw(st.integers(1, 8))):
        if draw(st.booleans()):
            command = draw(st.lists(SAFE_WORD, min_size=1, max_size=4))
            blanks = draw(st.lists(st.sampled_from([b" ", b"\t", b"  "]),
                                   min_size=len(command), max_size=len(command)))
            line = b"".join(b + w for b, w in zip(blanks, command, strict=True))
            parts.append(line + draw(st.sampled_from([b"\r\n", b"\n"])))
        else:
            command = draw(COMMAND)
            parts.append(encode(*command))
        commands.append(command)
        if draw(st.integers(0, 4)) == 0:
            parts.append(draw(IGNORED))
    return commands, b"".join(parts)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    bounds = [0, *sorted({p % (len(data) + 1) for p in points}), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(request_streams(), st.lists(st.integers(0, 10**6), max_size=12))
def test_any_split_yields_the_commands(stream: tuple[Commands, bytes], points: list[int]) -> None:
    commands, data = stream
    parser = RequestParser()
    got: Commands = []
    for piece in cut(data, points):
        more, problem = parser.feed(piece)
        assert problem is None
        got += more
    assert got == commands
    assert parser.pending == 0
    assert exact(data) == (commands, None)


TOKENS = st.sampled_from([
    b"*", b"$", b"\r", b"\n", b"\r\n", b"0", b"1", b"2", b"3", b"9", b"-", b"+", b":",
    b'"', b"'", b" ", b"\\", b"x", b"\x00", b"\xff", b"~", b"|", b">", b"=", b"(", b"#",
    b"PING", b"*1\r\n", b"*2\r\n", b"*3\r\n", b"$1\r\n", b"$4\r\n", b"*-1\r\n", b"*0\r\n",
    b"$-1\r\n", b"ECHO", b"\\x4", b"a\r\n", b"10\r\n", b"*11\r\n", b"$16385\r\n",
])
STREAM = st.lists(st.one_of(TOKENS, st.binary(max_size=3)), max_size=40).map(b"".join)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(STREAM, st.lists(st.integers(0, 10**6), max_size=8), st.booleans(),
       st.sampled_from([DEFAULT_MAX_BULK, 3]))
def test_feeding_agrees_with_parse_exact(data: bytes, points: list[int], unauth: bool,
                                         max_bulk: int) -> None:
    """Whole or in pieces, the parser finds the commands and error Redis's rules give."""
    expected = exact(data, unauth=unauth, max_bulk=max_bulk)
    assert feed(data, unauth=unauth, max_bulk=max_bulk) == expected
    assert feed(data, cut(data, points), unauth=unauth, max_bulk=max_bulk) == expected


REPLY_FRAME = st.sampled_from([
    b"+PING\r\n", b"+0123456789\r\n", b"(123\r\n", b"=6\r\ntxt:ab\r\n",
    b"=14\r\ntxt:0123456789\r\n",
    b"~1\r\n", b"~2\r\n", b"|1\r\n", b">1\r\n", b"%1\r\n", b"_\r\n", b"#t\r\n", b"#f\r\n",
    b",1.5\r\n", b":3\r\n", b"-ERR x\r\n", b"!3\r\nabc\r\n", b"$-1\r\n", b"*-1\r\n", b"*0\r\n",
    b"*1\r\n", b"*2\r\n", b"$3\r\nabc\r\n", b"$4\r\nPING\r\n", b"$1\r\nvXX", b"$0\r\n\r\n",
    b"*1\r\n$4\r\nPING\r\n", b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n", b"\r\n", b"PING\r\n",
])


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(REPLY_FRAME, COMMAND.map(lambda c: encode(*c))), max_size=12),
       st.lists(st.integers(0, 10**6), max_size=4))
def test_hiredis_fast_path_agrees_with_parse_exact(frames: list[bytes],
                                                   points: list[int]) -> None:
    """Streams hiredis can read as replies, opened by a request so the fast path runs."""
    data = encode(b"PING") + b"".join(frames)
    expected = exact(data)
    assert feed(data) == expected
    assert feed(data, cut(data, points)) == expected


# One element of a request: a bulk string, or another type hiredis reads as bytes (or
# as something else) in its place; Redis refuses all but the bulk string.
ELEMENT = st.one_of(
    st.binary(max_size=12).map(lambda arg: b"$%d\r\n%b\r\n" % (len(arg), arg)),
    st.sampled_from([b"+ab\r\n", b"+\r\n", b"(12\r\n", b"=6\r\ntxt:ab\r\n", b"$-1\r\n",
                     b"*1\r\n$1\r\na\r\n", b"~1\r\n$1\r\na\r\n", b"%1\r\n+a\r\n+b\r\n",
                     b":1\r\n", b"_\r\n", b"$10000\r\n" + b"x" * 10000 + b"\r\n"]),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(ELEMENT, min_size=0, max_size=4), min_size=1, max_size=6))
# Simple strings placed so that where the bulk string of the same length would end, a `$`
# follows: only the check of the first element's own type byte catches them.
@example([[b"+ab\r\n", b"+ab$\r\n"]])
@example([[b"+ab\r\n", b"+ab$\r\n", b"+abcde$\r\n"]])
def test_requests_with_any_element_type_agree_with_parse_exact(
        requests: list[list[bytes]]) -> None:
    """Requests of one to four elements, each possibly of a type Redis refuses: the fast
    path checks every element's position, whatever the request's length."""
    data = b"".join(b"*%d\r\n%b" % (len(elements), b"".join(elements))
                    for elements in requests)
    assert feed(data) == exact(data)


def test_random_mutations_agree_with_parse_exact() -> None:
    rng = random.Random(1234)
    base = (encode(b"PING") + encode(b"ECHO", b"hello\r\nworld") + b'ECHO "a b" \'c\'\r\n'
            + encode(b"PUBLISH", b"ch", b"x" * 40) + b"*0\r\nPING\r\n")
    for _ in range(2000):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            action = rng.randrange(3)
            if action == 0:
                data[i] = rng.choice(b"*$\r\n0123456789-+: \"'\x00~|>") if rng.random() < 0.7 \
                    else rng.randrange(256)
            elif action == 1:
                del data[i]
            else:
                data.insert(i, rng.choice(b"*$\r\n19-"))
        stream = bytes(data)
        expected = exact(stream)
        assert feed(stream) == expected, stream
        assert feed(stream, cut(stream, [rng.randrange(len(stream) + 1)
                                         for _ in range(3)])) == expected, stream


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"*", b"~", b"|", b">", b"1", b"0", b"9", b"x", b"\r\n",
                                 b"99999", b"12345", b"*1234", b"x" * 700]),
                max_size=60),
       st.integers(min_value=0, max_value=50))
@example([b"~", b"12345"], 0)  # a header in the buffer's last six bytes
def test_big_count_scan_of_a_large_buffer_agrees_with_the_translated_one(
        parts: list[bytes], pos: int) -> None:
    """A buffer past _SCAN_FROM is scanned type byte by type byte, a smaller one
    translated and searched: both must find exactly the aggregate headers of five or
    more digits that the translation finds."""
    buf = b"".join(parts)
    pos = min(pos, len(buf))
    translated = resp.parser._BIG_COUNT in buf[pos:].translate(resp.parser._COUNT_SHAPE)
    assert resp.parser._may_hide_big_count(buf, pos) == translated
    assert resp.parser._may_hide_big_count(bytearray(buf), pos) == translated
    padding = b"x" * (16 * resp.parser._SCAN_FROM)  # large, with sparse type bytes
    padded = buf + padding
    assert resp.parser._may_hide_big_count(padded, pos) == translated
    assert resp.parser._may_hide_big_count(bytearray(padded), pos) == translated
    # ... and with the parts at the end of a large buffer, where a header may be cut short.
    whole = resp.parser._BIG_COUNT in buf.translate(resp.parser._COUNT_SHAPE)
    assert resp.parser._may_hide_big_count(padding + buf, 0) == whole
