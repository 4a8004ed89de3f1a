"""Reply encoders: the exact bytes Redis writes, in RESP2 and RESP3."""

from __future__ import annotations

import pytest

from resp.encode import (
    EMPTY_ARRAY,
    EMPTY_BULK,
    NULL3,
    NULL_ARRAY,
    NULL_BULK,
    OK,
    PONG,
    QUEUED,
    array,
    array_header,
    boolean,
    bulk,
    bulk_array,
    double,
    error,
    integer,
    map_,
    null,
    null_array,
    push_header,
    set_,
    simple,
    verbatim,
)

PROTOCOLS = [2, 3]


def test_constants() -> None:
    assert OK == b"+OK\r\n"
    assert PONG == b"+PONG\r\n"
    assert QUEUED == b"+QUEUED\r\n"
    assert EMPTY_ARRAY == b"*0\r\n"
    assert EMPTY_BULK == b"$0\r\n\r\n"
    assert NULL_BULK == b"$-1\r\n"
    assert NULL_ARRAY == b"*-1\r\n"
    assert NULL3 == b"_\r\n"


@pytest.mark.parametrize(("text", "expected"), [
    ("OK", b"+OK\r\n"),
    (b"PONG", b"+PONG\r\n"),
    ("", b"+\r\n"),
    ("caf\u00e9", b"+caf\xc3\xa9\r\n"),
])
def test_simple(text: str | bytes, expected: bytes) -> None:
    assert simple(text) == expected


@pytest.mark.parametrize(("args", "expected"), [
    (("unknown command 'FOO'",), b"-ERR unknown command 'FOO'\r\n"),
    ((b"Protocol error: invalid bulk length",), b"-ERR Protocol error: invalid bulk length\r\n"),
    (("Authentication required.", "NOAUTH"), b"-NOAUTH Authentication required.\r\n"),
    (("", "ERR"), b"-ERR \r\n"),
    # Redis turns CR and LF inside error text into spaces, so the reply stays one line.
    ((b"Protocol error: expected '$', got '\r'",),
     b"-ERR Protocol error: expected '$', got ' '\r\n"),
    (("a\r\nb\nc",), b"-ERR a  b c\r\n"),
    ((b"got '\xff'",), b"-ERR got '\xff'\r\n"),
])
def test_error(args: tuple, expected: bytes) -> None:
    assert error(*args) == expected


@pytest.mark.parametrize(("n", "expected"), [
    (0, b":0\r\n"), (1, b":1\r\n"), (-1, b":-1\r\n"), (1024, b":1024\r\n"),
    (1025, b":1025\r\n"), (-2, b":-2\r\n"), (2**63 - 1, b":9223372036854775807\r\n"),
    (-(2**63), b":-9223372036854775808\r\n"), (True, b":1\r\n"),
])
def test_integer(n: int, expected: bytes) -> None:
    assert integer(n) == expected


@pytest.mark.parametrize(("data", "expected"), [
    (b"", b"$0\r\n\r\n"),
    (b"hello", b"$5\r\nhello\r\n"),
    (b"a\r\nb\x00", b"$5\r\na\r\nb\x00\r\n"),
    (b"x" * 1000, b"$1000\r\n" + b"x" * 1000 + b"\r\n"),
    (bytearray(b"ba"), b"$2\r\nba\r\n"),
    (memoryview(b"mv"), b"$2\r\nmv\r\n"),
])
def test_bulk(data: bytes, expected: bytes) -> None:
    assert bulk(data) == expected


def test_nulls() -> None:
    assert null(2) == b"$-1\r\n"
    assert null(3) == b"_\r\n"
    assert null_array(2) == b"*-1\r\n"
    assert null_array(3) == b"_\r\n"


@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000])
def test_array_header(n: int) -> None:
    assert array_header(n) == b"*%d\r\n" % n


def test_array_header_negative_is_not_a_cached_header() -> None:
    assert array_header(-1) == b"*-1\r\n"


def test_array() -> None:
    assert array([]) == b"*0\r\n"
    assert array([integer(1), bulk(b"a"), NULL_BULK]) == b"*3\r\n:1\r\n$1\r\na\r\n$-1\r\n"
    assert array(bulk(x) for x in (b"a", b"bc")) == b"*2\r\n$1\r\na\r\n$2\r\nbc\r\n"
    assert array([array([integer(1)])]) == b"*1\r\n*1\r\n:1\r\n"
    assert array([OK] * 70) == b"*70\r\n" + b"+OK\r\n" * 70


def test_bulk_array() -> None:
    assert bulk_array([]) == b"*0\r\n"
    assert bulk_array([b"ch", b""]) == b"*2\r\n$2\r\nch\r\n$0\r\n\r\n"
    assert bulk_array(iter([b"a\r\n"])) == b"*1\r\n$3\r\na\r\n\r\n"


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_map(proto: int) -> None:
    pairs = [(bulk(b"server"), bulk(b"redis")), (bulk(b"proto"), integer(proto))]
    body = b"$6\r\nserver\r\n$5\r\nredis\r\n$5\r\nproto\r\n:%d\r\n" % proto
    head = b"%2\r\n" if proto == 3 else b"*4\r\n"
    assert map_(pairs, proto) == head + body
    assert map_(iter(pairs), proto) == head + body
    assert map_([], proto) == (b"%0\r\n" if proto == 3 else b"*0\r\n")


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_set(proto: int) -> None:
    items = [simple("readonly"), simple("fast")]
    head = b"~2\r\n" if proto == 3 else b"*2\r\n"
    assert set_(items, proto) == head + b"+readonly\r\n+fast\r\n"
    assert set_([], proto) == (b"~0\r\n" if proto == 3 else b"*0\r\n")


# Redis 7.2+ (d2string): whole numbers within +-2**62 as integers, others by fpconv_dtoa.
@pytest.mark.parametrize(("value", "text"), [
    (0.0, b"0"), (-0.0, b"-0"), (1.0, b"1"), (-3.0, b"-3"), (1.5, b"1.5"), (-2.5, b"-2.5"),
    (0.1, b"0.1"), (0.3, b"0.3"), (3.14159, b"3.14159"), (100.5, b"100.5"),
    (0.000123, b"0.000123"), (1e-6, b"0.000001"), (1e-7, b"1e-7"), (1.23e-7, b"1.23e-7"),
    (1e16, b"10000000000000000"), (2.0**62, b"4611686018427387904"),
    (2.0**63, b"9223372036854776000"), (1e21, b"1e+21"), (1e22, b"1e+22"),
    (1.5e300, b"1.5e+300"), (1e300, b"1e+300"), (5e-324, b"5e-324"),
    (1.7976931348623157e308, b"1.7976931348623157e+308"), (12345678.9, b"12345678.9"),
    (float("inf"), b"inf"), (float("-inf"), b"-inf"), (float("nan"), b"nan"),
])
@pytest.mark.parametrize("proto", PROTOCOLS)
def test_double(value: float, text: bytes, proto: int) -> None:
    expected = b",%b\r\n" % text if proto == 3 else b"$%d\r\n%b\r\n" % (len(text), text)
    assert double(value, proto) == expected


@pytest.mark.parametrize(("value", "resp2", "resp3"), [
    (True, b":1\r\n", b"#t\r\n"),
    (False, b":0\r\n", b"#f\r\n"),
])
def test_boolean(value: bool, resp2: bytes, resp3: bytes) -> None:
    assert boolean(value, 2) == resp2
    assert boolean(value, 3) == resp3


def test_verbatim() -> None:
    assert verbatim(b"id=1\n", 3) == b"=9\r\ntxt:id=1\n\r\n"
    assert verbatim(b"id=1\n", 2) == b"$5\r\nid=1\n\r\n"
    assert verbatim(b"", 3) == b"=4\r\ntxt:\r\n"
    assert verbatim(b"# x", 3, b"mkd") == b"=7\r\nmkd:# x\r\n"
    # The format is always three bytes (addReplyVerbatim pads with spaces, cuts the rest).
    assert verbatim(b"x", 3, b"md") == b"=5\r\nmd :x\r\n"
    assert verbatim(b"x", 3, b"text") == b"=5\r\ntex:x\r\n"


@pytest.mark.parametrize("n", [0, 3, 63, 64, 200])
def test_push_header(n: int) -> None:
    assert push_header(n, 3) == b">%d\r\n" % n
    assert push_header(n, 2) == b"*%d\r\n" % n


def test_push_header_negative_is_not_a_cached_header() -> None:
    assert push_header(-1, 3) == b">-1\r\n"
