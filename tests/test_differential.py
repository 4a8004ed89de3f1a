"""Differential tests: the same raw RESP sent to respd and to a real redis-server.

Each scenario is a list of steps, each sent by one of several named connections.
The scenario runs against the real redis-server, then against a fresh respd, under
RESP2 and under RESP3 (every connection sends `HELLO 3` first). After each step
every open connection is synchronised with a `PING <marker>`: what it received
before the marker's reply is that step's output for that connection, so "nothing
else arrived" is checked without sleeping. Outputs must match byte for byte, except
where a step names a normaliser for what must differ (client ids, versions, hash
order, INFO bodies), or where Redis 7.0 (the reference server) and Redis 7.4 (what
respd answers as) legitimately differ: such steps assert the documented 7.4 reply.

The redis-server is shared by the whole session: scenarios leave it as they found it
(RESET at the end, CONFIG SET only to the values in force, keys named `diff-*`).
`test_fixed_mismatches` keeps the cases this test once found different, now fixed.
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import pytest

from server.commands import TABLE
from tests.conftest import RawClient

EOF_WAIT = 2.0  # seconds to wait for a server to close a connection it must close
SYNC_WAIT = 5.0  # seconds to wait for the reply to a synchronising PING


# --- a tiny RESP reader that keeps the raw bytes ------------------------------------

class Value(NamedTuple):
    """A parsed reply: its RESP type byte and its data (bytes, list, or None for null)."""

    kind: str
    data: Any


class Frame(NamedTuple):
    """One complete reply or push, raw and parsed."""

    raw: bytes
    value: Value


_CLOSED = Frame(b"<EOF>", Value("EOF", None))
_NOT_CLOSED = Frame(b"<still open>", Value("open", None))
_NO_SYNC = Frame(b"<no reply to PING>", Value("stuck", None))
_UNUSABLE = Frame(b"<connection closed or stuck>", Value("unusable", None))


def parse(buf: bytes, pos: int = 0) -> tuple[Value, int] | None:
    """Parse one RESP2/RESP3 value at pos; None when it is not complete yet."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line, pos = chr(buf[pos]), buf[pos + 1:end], end + 2
    if kind in "+-:,#(_":
        return Value(kind, line), pos
    if kind in "$=!":
        size = int(line)
        if size < 0:
            return Value(kind, None), pos
        if len(buf) < pos + size + 2:
            return None
        return Value(kind, buf[pos:pos + size]), pos + size + 2
    if kind in "*>~%":
        count = int(line)
        if count < 0:
            return Value(kind, None), pos
        items = []
        for _ in range(2 * count if kind == "%" else count):
            parsed = parse(buf, pos)
            if parsed is None:
                return None
            item, pos = parsed
            items.append(item)
        return Value(kind, items), pos
    raise ValueError(f"not RESP: {buf[pos - 1:pos + 40]!r}")


class Peer:
    """One raw connection that reads whole frames, and knows its client id."""

    def __init__(self, port: int) -> None:
        self.client = RawClient(port)
        self.open = True
        self.send(encode("CLIENT", "ID"))
        self.id = text(self.read_frame().value)  # for `{id:<client>}` in requests

    def send(self, data: bytes) -> None:
        self.client.send(data)

    def read_frame(self) -> Frame:
        """The next complete reply or push (EOFError when the server closes)."""
        client = self.client
        while True:
            parsed = parse(client.buffer) if client.buffer else None
            if parsed is not None:
                value, end = parsed
                raw, client.buffer = client.buffer[:end], client.buffer[end:]
                return Frame(raw, value)
            chunk = client.sock.recv(65536)
            if not chunk:
                raise EOFError
            client.buffer += chunk

    def ping(self, marker: bytes) -> None:
        """Send `PING marker`; a connection the server has closed shows as `<EOF>` later."""
        with contextlib.suppress(OSError):
            self.send(encode("PING", marker))

    def read_until_marker(self, marker: bytes) -> list[Frame]:
        """Frames before the reply to `PING marker` (a bulk, or RESP2's subscribed array),
        ending with `<EOF>` if the server has closed the connection, or with `<no reply
        to PING>` (and no further use of the connection) if the PING got no answer."""
        frames = []
        replies = (Value("$", marker), Value("*", [Value("$", b"pong"), Value("$", marker)]))
        self.client.sock.settimeout(SYNC_WAIT)
        try:
            while (frame := self.read_frame()).value not in replies:
                frames.append(frame)
        except (EOFError, ConnectionResetError):
            frames.append(_CLOSED)
            self.open = False
        except TimeoutError:
            frames.append(_NO_SYNC)
            self.open = False
        return frames

    def read_until_closed(self) -> list[Frame]:
        """Frames until the server closes; a `<still open>` frame if it does not."""
        frames = []
        self.client.sock.settimeout(EOF_WAIT)
        try:
            while True:
                frames.append(self.read_frame())
        except EOFError:
            frames.append(_CLOSED)
        except TimeoutError:
            frames.append(_NOT_CLOSED)
        self.open = False
        return frames

    def close(self) -> None:
        self.client.close()


def encode(*args: str | bytes) -> bytes:
    """A multibulk request."""
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


# --- scenarios: steps, and how their outputs are compared ---------------------------

Normaliser = Callable[[list[Frame]], object]


def exact(frames: list[Frame]) -> object:
    """Byte for byte."""
    return [f.raw for f in frames]


@dataclass(frozen=True)
class Step:
    """One request from one connection, and how to judge what every connection got."""

    client: str
    request: tuple[bytes, ...] | bytes  # a command's arguments, or raw bytes to send
    check: Normaliser = exact
    closes: bool = False  # the server must close this connection after replying
    frames: int | None = None  # read this many frames, not up to a PING (queued in MULTI)
    expect: bytes | None = None  # respd must send exactly this (Redis 7.4 only behaviour)
    requires: str | None = None  # skip until respd implements this command


def cmd(client: str, *args: str | bytes, **options: Any) -> Step:
    """A step sending one multibulk request; `{id:<client>}` in an argument becomes
    that connection's client id on the server at hand."""
    return Step(client, tuple(a.encode() if isinstance(a, str) else a for a in args), **options)


def raw(client: str, data: bytes, **options: Any) -> Step:
    """A step sending raw bytes (inline commands, pipelines, protocol errors)."""
    return Step(client, data, **options)


def with_protocol(steps: list[Step], proto: int) -> list[Step]:
    """Under RESP3, every connection starts with HELLO 3 (compared structurally)."""
    if proto == 2:
        return steps
    clients = dict.fromkeys(step.client for step in steps)
    return [cmd(c, "HELLO", "3", check=hello_shape) for c in clients] + steps


Output = dict[str, list[Frame]]
_CLIENT_ID = re.compile(rb"\{id:(\w+)\}")


def run(port: int, steps: list[Step]) -> list[Output]:
    """Run the steps on one server; each step's output per connection."""
    names = list(dict.fromkeys(step.client for step in steps))
    peers = {name: Peer(port) for name in names}
    outputs = []
    try:
        for number, step in enumerate(steps):
            peer = peers[step.client]
            if not peer.open:
                outputs.append({step.client: [_UNUSABLE]})
                continue
            if isinstance(step.request, bytes):
                peer.send(step.request)
            else:
                peer.send(encode(*(_CLIENT_ID.sub(lambda m: peers[m[1].decode()].id, arg)
                                   for arg in step.request)))
            # The sender's replies first: then whatever the step sent others is on its way.
            marker = b"sync-%d" % number
            if step.closes:
                output = {step.client: peer.read_until_closed()}
            elif step.frames is not None:
                output = {step.client: [peer.read_frame() for _ in range(step.frames)]}
            else:
                peer.ping(marker)
                output = {step.client: peer.read_until_marker(marker)}
            others = [n for n in names if n != step.client and peers[n].open]
            for name in others:
                peers[name].ping(marker)
            for name in others:
                output[name] = peers[name].read_until_marker(marker)
            outputs.append(output)
        # Leave the session-wide redis-server as found: RESET drops subscriptions now.
        for peer in peers.values():
            if peer.open:
                peer.send(encode("RESET"))
                with contextlib.suppress(EOFError):
                    peer.read_frame()
    finally:
        for peer in peers.values():
            peer.close()
    return outputs


def show(frames: list[Frame], limit: int = 300) -> str:
    """Frames for a failure message, each cut to `limit` characters."""
    return " | ".join(repr(f.raw)[:limit] for f in frames) or "(nothing)"


def differential(steps: list[Step], proto: int, respd_port: int, redis_port: int) -> None:
    """Run steps against both servers and assert every step's outputs agree."""
    steps = [s for s in with_protocol(steps, proto) if s.requires is None
             or s.requires.encode() in TABLE]
    expected = run(redis_port, steps)
    got = run(respd_port, steps)
    problems = []
    for step, redis_out, respd_out in zip(steps, expected, got, strict=True):
        for name in redis_out.keys() | respd_out.keys():
            ours, theirs = respd_out.get(name, []), redis_out.get(name, [])
            if step.expect is not None and name == step.client:
                same = b"".join(f.raw for f in ours) == step.expect
                wanted = f"(Redis 7.4) {step.expect!r}"
            else:
                same = step.check(ours) == step.check(theirs)
                wanted = show(theirs)
            if not same:
                problems.append(f"{name} after {step.client}: {step.request!r}\n"
                                f"    redis: {wanted}\n    respd: {show(ours)}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# --- normalisers --------------------------------------------------------------------

def text(value: Value) -> bytes:
    """A string value's bytes (b"" for anything else)."""
    return value.data if isinstance(value.data, bytes) else b""


def pairs(value: Value) -> list[tuple[Value, Value]]:
    """Key/value pairs of a RESP3 map or of the flat array RESP2 uses instead."""
    items = value.data or []
    return list(zip(items[::2], items[1::2], strict=True))


def masked(*keys: bytes) -> Normaliser:
    """Each map (or RESP2 flat array) with the given keys' values reduced to their type."""
    def normalise(frames: list[Frame]) -> object:
        out = []
        for frame in frames:
            if frame.value.kind in "%*" and frame.value.data:
                out.append((frame.value.kind, [
                    (k, Value(v.kind, "?") if text(k) in keys else v)
                    for k, v in pairs(frame.value)]))
            else:
                out.append(frame.raw)
        return out
    return normalise


# HELLO: `id` and `version` differ (respd answers as Redis 7.4).
hello_shape = masked(b"id", b"version")


def shape(frames: list[Frame]) -> object:
    """Types only (CLIENT ID, COMMAND COUNT, DBSIZE of a shared server)."""
    return [f.value.kind for f in frames]


def sorted_elements(frames: list[Frame]) -> object:
    """An array in hash order: its type and its elements as a sorted list."""
    return [(f.value.kind, sorted(map(repr, f.value.data or []))) for f in frames]


def sorted_pairs(frames: list[Frame]) -> object:
    """A map or flat array of pairs in hash order (CONFIG GET)."""
    return [(f.value.kind, sorted(map(repr, pairs(f.value)))) for f in frames]


_CONFIRMATIONS = {b"subscribe", b"unsubscribe", b"psubscribe", b"punsubscribe", b"ssubscribe",
                  b"sunsubscribe"}


def any_order(frames: list[Frame]) -> object:
    """Frames sent in hash order (a bare UNSUBSCRIBE's channels, PUBLISH's patterns):
    a multiset of frames, and the (un)subscribe counts, which follow the order sent."""
    bodies, counts = [], []
    for frame in frames:
        items = frame.value.data if frame.value.kind in "*>" else None
        if items and text(items[0]) in _CONFIRMATIONS:
            bodies.append(repr((frame.value.kind, items[:-1])))
            counts.append(items[-1])
        else:
            bodies.append(repr(frame.raw))
    return sorted(bodies), counts


def help_shape(frames: list[Frame]) -> object:
    """HELP text differs between versions: an array of simple strings with Redis's
    first line and its closing `HELP` entry."""
    out = []
    for frame in frames:
        lines = frame.value.data or []
        out.append((frame.value.kind, all(v.kind == "+" for v in lines),
                    [text(v) for v in lines[:1] + lines[-2:]]))
    return out


def time_shape(frames: list[Frame]) -> object:
    """TIME: two bulk strings of digits, seconds within a few of the local clock."""
    out = []
    for frame in frames:
        seconds, micros = (text(v) for v in frame.value.data)
        out.append((frame.value.kind, [v.kind for v in frame.value.data],
                    abs(int(seconds) - time.time()) < 5, 0 <= int(micros) < 1_000_000))
    return out


def info_headers(frames: list[Frame]) -> object:
    """INFO: the reply type and the section headers; bodies differ between servers."""
    return [(f.value.kind, re.findall(rb"^# .*$", text(f.value).removeprefix(b"txt:"),
                                      re.MULTILINE)) for f in frames]


# CLIENT LIST fields added after Redis 7.0: `watch` (7.4), `lib-name`, `lib-ver` (7.2).
_NEWER_CLIENT_FIELDS = {b"watch", b"lib-name", b"lib-ver"}
# Fields whose values both servers must agree on for the same connection state.
_STATE_FIELDS = {b"name", b"db", b"sub", b"psub", b"ssub", b"flags", b"multi", b"cmd",
                 b"user", b"redir", b"resp"}


def client_lines(frames: list[Frame], prefix: bytes | None = None) -> object:
    """CLIENT LIST / INFO: reply type, then per line the fields (without those added
    after 7.0) and the values that describe connection state; with a prefix, only the
    lines of clients named with it (the shared redis-server may have other clients)."""
    out = []
    for frame in frames:
        body = text(frame.value).removeprefix(b"txt:")
        lines = []
        for line in body.split(b"\n")[:-1]:
            fields = [field.partition(b"=") for field in line.split(b" ")]
            state = {k: v for k, _, v in fields if k in _STATE_FIELDS}
            if prefix is None or state[b"name"].startswith(prefix):
                lines.append(([k for k, _, _ in fields if k not in _NEWER_CLIENT_FIELDS], state))
        out.append((frame.value.kind, body.endswith(b"\n") or not body, sorted(lines, key=repr)))
    return out


own_client_lines = functools.partial(client_lines, prefix=b"diff-")


# --- the scenarios ------------------------------------------------------------------

Check = Callable[[list[Step]], None]


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def proto(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture
def check(proto: int, respd_port: int, redis_port: int) -> Check:
    """Run a scenario against both servers under the test's protocol."""
    return lambda steps: differential(steps, proto, respd_port, redis_port)


def test_ping_and_echo(check: Check) -> None:
    check([
        cmd("c", "PING"), cmd("c", "ping", "hello"), cmd("c", "PING", ""),
        cmd("c", "PING", "a", "b"),
        raw("c", b"PING\r\nping x\r\n"),
        cmd("c", "ECHO", "x"), cmd("c", "ECHO", ""), cmd("c", "ECHO", b"a\r\nb\x00"),
        cmd("c", "ECHO"), cmd("c", "ECHO", "a", "b"),
        cmd("c", "SUBSCRIBE", "ch"),
        # RESP2 subscribers get a `pong` array; RESP3 ones the usual replies.
        cmd("c", "PING"), cmd("c", "PING", "x"), cmd("c", "PING", ""),
        cmd("c", "PING", "a", "b"),
        raw("c", b"PING\r\n"),
        cmd("c", "ECHO", "x"),
        cmd("c", "UNSUBSCRIBE"),
        cmd("c", "PING"), cmd("c", "PING", "x"),
        cmd("c", "SSUBSCRIBE", "sh"), cmd("c", "PING"), cmd("c", "SUNSUBSCRIBE"),
        cmd("c", "PSUBSCRIBE", "p*"), cmd("c", "PING", "y"), cmd("c", "PUNSUBSCRIBE"),
        cmd("c", "PING"),
    ])


def test_unknown_commands(check: Check) -> None:
    check([
        cmd("c", "FOO"), cmd("c", "foo", "bar", "baz"), cmd("c", "Foo", ""),
        cmd("c", "FOO", "a" * 100, "b" * 100, "c"),
        cmd("c", "FOO", "a" * 126, "b"), cmd("c", "FOO", "a" * 125, "b"),
        cmd("c", "FOO", *["x"] * 60),
        cmd("c", "F" * 200, "arg"),
        cmd("c", "FOO", "a\r\nb", "c\nd"),
        raw("c", b"foo bar\r\n"),
        cmd("c", "POSTX"),
    ])


def test_wrong_arity(check: Check) -> None:
    check([
        cmd("c", "PUBLISH"), cmd("c", "PUBLISH", "a"), cmd("c", "PUBLISH", "a", "b", "c"),
        cmd("c", "SPUBLISH", "a"), cmd("c", "SUBSCRIBE"), cmd("c", "PSUBSCRIBE"),
        cmd("c", "SSUBSCRIBE"), cmd("c", "ECHO"), cmd("c", "SELECT"),
        cmd("c", "SELECT", "1", "2"), cmd("c", "AUTH"), cmd("c", "RESET", "x"),
        cmd("c", "TIME", "x"), cmd("c", "DBSIZE", "x"),
        cmd("c", "CLIENT"), cmd("c", "CLIENT", "ID", "x"), cmd("c", "CLIENT", "GETNAME", "x"),
        cmd("c", "CLIENT", "SETNAME"), cmd("c", "CLIENT", "SETNAME", "a", "b"),
        cmd("c", "CLIENT", "KILL"), cmd("c", "CLIENT", "INFO", "x"),
        cmd("c", "CLIENT", "NO-EVICT"), cmd("c", "CLIENT", "HELP", "x"),
        cmd("c", "PUBSUB"), cmd("c", "PUBSUB", "NUMPAT", "x"), cmd("c", "PUBSUB", "HELP", "x"),
        cmd("c", "CONFIG"), cmd("c", "CONFIG", "GET"), cmd("c", "CONFIG", "SET", "maxclients"),
        cmd("c", "CONFIG", "RESETSTAT", "x"), cmd("c", "COMMAND", "COUNT", "x"),
        cmd("c", "GET", requires="get"),
        cmd("c", "GET", "a", "b", requires="get"),
    ])


def _arity_errors() -> list[Step]:
    """For every command and subcommand respd implements (and Redis 7.0 knows): one
    argument too few and, for a fixed arity, one too many. None of them runs."""
    steps = []
    for entry in TABLE.values():
        for command_ in [entry, *(entry.subcommands or {}).values()]:
            # EXEC's rejections have a form of their own (test_fixed_mismatches).
            if command_.handler is None or command_.name.encode() in _NEW_SINCE_70 \
                    or command_.name == "exec":
                continue
            words = command_.name.upper().split("|")
            size = abs(command_.arity)
            counts = [size - 1] if size - 1 >= len(words) else []
            if command_.arity > 0:
                counts.append(size + 1)
            steps += [cmd("c", *words, *["x"] * (n - len(words))) for n in counts]
    return steps


def test_wrong_arity_of_every_command(check: Check) -> None:
    check(_arity_errors())


def test_unknown_subcommands_and_help(check: Check) -> None:
    check([
        cmd("c", "CLIENT", "FOO"), cmd("c", "client", "foo", "bar"),
        cmd("c", "PUBSUB", "FOO"), cmd("c", "pubsub", "Foo"),
        cmd("c", "CONFIG", "FOO"), cmd("c", "COMMAND", "FOO"),
        cmd("c", "CLIENT", "X" * 200),
        # PUBSUB checks its own argument counts, with Redis's combined message.
        cmd("c", "PUBSUB", "CHANNELS", "a", "b"), cmd("c", "PUBSUB", "SHARDCHANNELS", "a", "b"),
    ])


def test_subscribe_and_unsubscribe(check: Check) -> None:
    check([
        # Never subscribed: one frame with a null channel (in RESP2 a plain reply).
        cmd("c", "UNSUBSCRIBE"), cmd("c", "PUNSUBSCRIBE"), cmd("c", "SUNSUBSCRIBE"),
        cmd("c", "UNSUBSCRIBE", "x", "y"),
        cmd("c", "SUBSCRIBE", "a", "b", "a"), cmd("c", "SUBSCRIBE", "c", ""),
        cmd("c", "UNSUBSCRIBE", "zz"), cmd("c", "UNSUBSCRIBE", "a", "a"),
        cmd("c", "UNSUBSCRIBE", check=any_order),
        cmd("c", "UNSUBSCRIBE"),
        cmd("c", "PSUBSCRIBE", "p*", "q?", "p*"), cmd("c", "PUNSUBSCRIBE", "x"),
        cmd("c", "SUBSCRIBE", "a"), cmd("c", "UNSUBSCRIBE", "b"),
        cmd("c", "PUNSUBSCRIBE", check=any_order), cmd("c", "PUNSUBSCRIBE"),
        cmd("c", "PSUBSCRIBE", "p*"), cmd("c", "UNSUBSCRIBE"), cmd("c", "UNSUBSCRIBE"),
        cmd("c", "PUNSUBSCRIBE", "p*"), cmd("c", "PING"),
    ])


def test_shard_counts_are_separate(check: Check) -> None:
    check([
        cmd("c", "SUBSCRIBE", "a", "b"), cmd("c", "PSUBSCRIBE", "p*"),
        cmd("c", "SSUBSCRIBE", "s"), cmd("c", "SSUBSCRIBE", "s", "t", "s"),
        cmd("c", "SUNSUBSCRIBE", "zz"), cmd("c", "SUNSUBSCRIBE", "s"),
        cmd("c", "UNSUBSCRIBE", "a"),
        cmd("c", "SUNSUBSCRIBE"), cmd("c", "SUNSUBSCRIBE"),
        cmd("c", "PUNSUBSCRIBE"), cmd("c", "UNSUBSCRIBE"),
        # Only a shard subscription left: still subscribed.
        cmd("c", "SSUBSCRIBE", "s"), cmd("c", "PING"), cmd("c", "ECHO", "x"),
        cmd("c", "UNSUBSCRIBE"), cmd("c", "SUNSUBSCRIBE", "s"), cmd("c", "PING"),
    ])


def test_publish(check: Check, proto: int) -> None:
    # In RESP3 the publisher is subscribed too: its pushes come before its :N reply.
    publisher_subscribes = [cmd("p", "SUBSCRIBE", "ch"), cmd("p", "PSUBSCRIBE", "c*")] \
        if proto == 3 else []
    check([
        cmd("s1", "SUBSCRIBE", "ch", ""), cmd("s2", "PSUBSCRIBE", "c*", "*h", "x*"),
        cmd("s3", "SUBSCRIBE", "ch"), cmd("s3", "PSUBSCRIBE", "*"),
        *publisher_subscribes,
        cmd("p", "PUBLISH", "ch", "hello", check=any_order),
        cmd("p", "PUBLISH", "nobody", "x"),
        cmd("p", "PUBLISH", "cx", b"bin\r\n\x00\xff", check=any_order),
        cmd("p", "PUBLISH", "", "empty"),
        cmd("p", "PUBLISH", "h", ""),
        cmd("s2", "PUNSUBSCRIBE", "*h"), cmd("p", "PUBLISH", "ch", "again", check=any_order),
        cmd("s1", "UNSUBSCRIBE", check=any_order),
        cmd("p", "PUBLISH", "ch", "3", check=any_order),
        raw("p", encode("PUBLISH", "ch", "1") + encode("PUBLISH", "zz", "2"), check=any_order),
        cmd("p", "SPUBLISH", "ch", "shard"),
        cmd("p", "PUBLISH", "cy", "x" * 100_000, check=any_order),
        cmd("s2", "PSUBSCRIBE", "c[h]", "c?", r"\*", "[^c]h", check=any_order),
        cmd("p", "PUBLISH", "ch", "globs", check=any_order),
        cmd("p", "PUBLISH", "*", "star", check=any_order),
    ])


def test_spublish(check: Check) -> None:
    check([
        cmd("s1", "SSUBSCRIBE", "sh"), cmd("s2", "SSUBSCRIBE", "sh", "other"),
        cmd("s3", "PSUBSCRIBE", "*"), cmd("s4", "SUBSCRIBE", "sh"),
        cmd("p", "SPUBLISH", "sh", "m"), cmd("p", "SPUBLISH", "other", b"a\r\nb"),
        cmd("p", "SPUBLISH", "none", "m"), cmd("p", "PUBLISH", "sh", "classic"),
        cmd("s2", "SUNSUBSCRIBE", "sh"), cmd("p", "SPUBLISH", "sh", "m2"),
    ])


def test_subscribed_context(check: Check) -> None:
    # RESP2 subscribers may only (un)subscribe, PING, QUIT, RESET; RESP3 has no rule.
    check([
        cmd("c", "SUBSCRIBE", "a"),
        cmd("c", "GET", "k", requires="get"),
        cmd("c", "CLIENT", "ID", check=shape),
        cmd("c", "PUBSUB", "SHARDCHANNELS"),
        cmd("c", "PUBSUB", "NUMSUB", "a"),
        cmd("c", "FOO", "bar"), cmd("c", "CLIENT", "FOO"), cmd("c", "ECHO"),
        cmd("c", "ECHO", "x"), cmd("c", "SELECT", "0"), cmd("c", "CONFIG", "GET", "hz"),
        cmd("c", "PUBLISH", "a", "x"),
        cmd("c", "SUBSCRIBE"), cmd("c", "PSUBSCRIBE", "x*"), cmd("c", "SSUBSCRIBE", "s"),
        cmd("c", "UNSUBSCRIBE", "a"), cmd("c", "PUNSUBSCRIBE"),
        cmd("c", "ECHO", "still"), cmd("c", "SUNSUBSCRIBE"), cmd("c", "ECHO", "free"),
        # A pipeline: the commands after SUBSCRIBE are judged in subscribed mode.
        raw("c", encode("ECHO", "a") + encode("SUBSCRIBE", "b") + encode("ECHO", "c")
            + b"PING\r\n" + encode("UNSUBSCRIBE") + encode("ECHO", "d")),
    ])


def test_pubsub_introspection(check: Check) -> None:
    check([
        cmd("q", "PUBSUB", "CHANNELS"), cmd("q", "PUBSUB", "NUMPAT"),
        cmd("q", "PUBSUB", "NUMSUB"), cmd("q", "PUBSUB", "SHARDNUMSUB"),
        cmd("x", "SUBSCRIBE", "a", "b", ""), cmd("y", "SUBSCRIBE", "a", "abc"),
        cmd("y", "PSUBSCRIBE", "p*", "p*", "a*"), cmd("z", "PSUBSCRIBE", "p*"),
        cmd("z", "SSUBSCRIBE", "s1", "s2"), cmd("x", "SSUBSCRIBE", "s1"),
        cmd("q", "PUBSUB", "CHANNELS", check=sorted_elements),
        cmd("q", "PUBSUB", "CHANNELS", "*", check=sorted_elements),
        cmd("q", "pubsub", "channels", "a*", check=sorted_elements),
        cmd("q", "PUBSUB", "CHANNELS", ""), cmd("q", "PUBSUB", "CHANNELS", "p*"),
        cmd("q", "PUBSUB", "NUMSUB", "a", "b", "", "zz", "p*", "a"),
        cmd("q", "PUBSUB", "NUMSUB"), cmd("q", "PUBSUB", "NUMPAT"),
        cmd("q", "PUBSUB", "SHARDCHANNELS", check=sorted_elements),
        cmd("q", "PUBSUB", "SHARDCHANNELS", "*1"), cmd("q", "PUBSUB", "SHARDCHANNELS", "a"),
        cmd("q", "PUBSUB", "SHARDNUMSUB", "s1", "s2", "a", ""),
        cmd("y", "PUNSUBSCRIBE", "p*"), cmd("q", "PUBSUB", "NUMPAT"),
        cmd("z", "PUNSUBSCRIBE"), cmd("q", "PUBSUB", "NUMPAT"),
        cmd("x", "UNSUBSCRIBE", ""), cmd("q", "PUBSUB", "CHANNELS", check=sorted_elements),
        cmd("q", "PUBSUB", "CHANNELS", "a", "b"), cmd("q", "PUBSUB", "NUMPAT", "x"),
    ])


def test_hello(check: Check) -> None:
    check([
        cmd("c", "HELLO", check=hello_shape), cmd("c", "hello", "2", check=hello_shape),
        cmd("c", "PING"), cmd("c", "HELLO", "3", check=hello_shape), cmd("c", "PING", "x"),
        cmd("c", "HELLO", check=hello_shape),
        cmd("c", "HELLO", "4"), cmd("c", "HELLO", "1"), cmd("c", "HELLO", "-1"),
        cmd("c", "HELLO", "x"), cmd("c", "HELLO", "3.0"), cmd("c", "HELLO", ""),
        cmd("c", "HELLO", "99999999999999999999"),
        cmd("c", "HELLO", "3", "FOO"), cmd("c", "HELLO", "2", "setname"),
        cmd("c", "HELLO", "3", "AUTH", "default"),
        cmd("c", "HELLO", "3", "SETNAME", "bad name"), cmd("c", "CLIENT", "GETNAME"),
        cmd("c", "HELLO", "3", "SETNAME", "good", check=hello_shape),
        cmd("c", "CLIENT", "GETNAME"),
        cmd("c", "HELLO", "2", "AUTH", "default", "x", check=hello_shape),
        cmd("c", "HELLO", "3", "AUTH", "foo", "bar"),
        cmd("c", "HELLO", "3", "auth", "default", "x", "SETNAME", "n2", check=hello_shape),
        cmd("c", "CLIENT", "GETNAME"),
        cmd("c", "HELLO", "2", "AUTH", "foo", "bar", "SETNAME", "n3"),
        cmd("c", "CLIENT", "GETNAME"),
        cmd("c", "SUBSCRIBE", "a"), cmd("c", "HELLO", "3", check=hello_shape),
        cmd("c", "PING"), cmd("c", "HELLO", "2", check=hello_shape), cmd("c", "PING"),
    ])


def test_hello_checks_the_name_first(check: Check, proto: int) -> None:
    # Redis 7.2+ checks SETNAME's name while parsing the options, authenticates after
    # parsing them all, and sets the name only once authenticated; 7.0 authenticated
    # and set the name as it parsed, even when HELLO then failed.
    null = b"$-1\r\n" if proto == 2 else b"_\r\n"
    check([
        cmd("c", "HELLO", "3", "SETNAME", "a b", "FOO"),
        cmd("c", "HELLO", "3", "SETNAME", "a b", "AUTH", "foo", "bar"),
        cmd("c", "HELLO", "3", "AUTH", "foo", "bar", "SETNAME", "a b", expect=b"-ERR Client "
            b"names cannot contain spaces, newlines or special characters.\r\n"),
        cmd("c", "HELLO", "3", "SETNAME", "a", "SETNAME", "b c"),
        cmd("c", "HELLO", "3", "SETNAME", "ok", "FOO"), cmd("c", "CLIENT", "GETNAME", expect=null),
        cmd("c", "HELLO", "3", "SETNAME", "ok", "AUTH", "foo", "bar"),
        cmd("c", "CLIENT", "GETNAME", expect=null),
    ])


def test_auth_without_password(check: Check) -> None:
    check([
        cmd("c", "AUTH", "x"), cmd("c", "AUTH", "default", "x"), cmd("c", "AUTH", "foo", "bar"),
        cmd("c", "AUTH", "a", "b", "c"), cmd("c", "auth", "default", ""),
    ])


def test_select(check: Check) -> None:
    check([
        cmd("c", "SELECT", "0"), cmd("c", "SELECT", "15"), cmd("c", "SELECT", "16"),
        cmd("c", "SELECT", "-1"), cmd("c", "SELECT", "x"), cmd("c", "SELECT", ""),
        cmd("c", "SELECT", "1.0"), cmd("c", "SELECT", " 1"), cmd("c", "SELECT", "01"),
        cmd("c", "SELECT", "+1"), cmd("c", "SELECT", "2147483648"),
        cmd("c", "SELECT", "99999999999999999999"), cmd("c", "SELECT", "-0"),
        cmd("c", "CLIENT", "INFO", check=client_lines),
        # The session-wide redis-server holds no keys in db 15.
        cmd("c", "SELECT", "15"), cmd("c", "DBSIZE"),
    ])


def test_client_commands(check: Check) -> None:
    check([
        cmd("c", "CLIENT", "GETNAME"), cmd("c", "CLIENT", "SETNAME", "me"),
        cmd("c", "CLIENT", "GETNAME"), cmd("c", "client", "setname", "a b"),
        cmd("c", "CLIENT", "SETNAME", "a\nb"), cmd("c", "CLIENT", "SETNAME", b"\xc3\xa9"),
        cmd("c", "CLIENT", "GETNAME"), cmd("c", "CLIENT", "SETNAME", ""),
        cmd("c", "CLIENT", "GETNAME"), cmd("c", "CLIENT", "ID", check=shape),
        cmd("c", "CLIENT", "NO-EVICT", "on"), cmd("c", "CLIENT", "NO-EVICT", "OFF"),
        cmd("c", "CLIENT", "NO-EVICT", "maybe"),
        # Redis 7.2 added NO-TOUCH and SETINFO; 7.0 answers "unknown subcommand".
        cmd("c", "CLIENT", "NO-TOUCH", "on", expect=b"+OK\r\n"),
        cmd("c", "CLIENT", "NO-TOUCH", "x", expect=b"-ERR syntax error\r\n"),
        cmd("c", "CLIENT", "SETINFO", "LIB-NAME", "mylib", expect=b"+OK\r\n"),
        cmd("c", "CLIENT", "SETINFO", "lib-ver", "1.0", expect=b"+OK\r\n"),
        cmd("c", "CLIENT", "SETINFO", "LIB-NAME", "a b",
            expect=b"-ERR LIB-NAME cannot contain spaces, newlines or special characters.\r\n"),
        cmd("c", "CLIENT", "SETINFO", "foo", "x", expect=b"-ERR Unrecognized option 'foo'\r\n"),
        cmd("c", "CLIENT", "KILL", "1.2.3.4:5"), cmd("c", "CLIENT", "KILL", "ID", "abc"),
        cmd("c", "CLIENT", "KILL", "ID", "0"), cmd("c", "CLIENT", "KILL", "ID", "99999999"),
        cmd("c", "CLIENT", "KILL", "ADDR", "1.1.1.1:1"), cmd("c", "CLIENT", "KILL", "FOO", "x"),
        cmd("c", "CLIENT", "KILL", "TYPE", "foo"), cmd("c", "CLIENT", "KILL", "TYPE", "master"),
        cmd("c", "CLIENT", "KILL", "USER", "nobody"),
        cmd("c", "CLIENT", "KILL", "SKIPME", "maybe"), cmd("c", "CLIENT", "KILL", "ID", "1", "x"),
        cmd("c", "CLIENT", "LIST", "TYPE", "foo"), cmd("c", "CLIENT", "LIST", "ID", "x"),
        cmd("c", "CLIENT", "LIST", "ID", "0"), cmd("c", "CLIENT", "LIST", "FOO"),
        cmd("c", "CLIENT", "LIST", "ID", "99999999"),
        cmd("s", "CLIENT", "SETNAME", "diff-s"),
        cmd("c", "CLIENT", "LIST", "TYPE", "pubsub", check=own_client_lines),
        cmd("c", "CLIENT", "LIST", "TYPE", "normal", check=own_client_lines),
        cmd("s", "SUBSCRIBE", "a"), cmd("s", "PSUBSCRIBE", "b*"), cmd("s", "SSUBSCRIBE", "c"),
        cmd("c", "CLIENT", "LIST", "TYPE", "pubsub", check=own_client_lines),
        cmd("c", "CLIENT", "LIST", "TYPE", "normal", check=own_client_lines),
        cmd("c", "CLIENT", "LIST", check=own_client_lines),
        cmd("c", "CLIENT", "LIST", "TYPE", "master"),
        cmd("c", "CLIENT", "LIST", "ID", "{id:s}", "{id:c}", check=client_lines),
        cmd("c", "CLIENT", "INFO", check=client_lines),
        # Filters are ANDed; the ids keep other clients of the shared redis-server alive.
        cmd("c", "CLIENT", "KILL", "TYPE", "normal", "ID", "{id:s}"),
        cmd("c", "CLIENT", "KILL", "TYPE", "pubsub", "ID", "{id:s}"),
        cmd("c", "CLIENT", "KILL", "ID", "{id:s}"),
        cmd("c", "CLIENT", "KILL", "ADDR", "1.1.1.1:1", "ID", "{id:c}"),
        cmd("c", "CLIENT", "KILL", "ID", "{id:c}"),
        cmd("c", "CLIENT", "KILL", "ID", "{id:c}", "SKIPME", "no", closes=True),
    ])


def test_quit(check: Check) -> None:
    check([
        cmd("a", "QUIT", closes=True),
        cmd("b", "quit", "extra", closes=True),
        cmd("c", "SUBSCRIBE", "x"), raw("c", encode("QUIT") + encode("PING"), closes=True),
        raw("d", b"PING\r\nQUIT\r\nPING\r\n", closes=True),
    ])


def test_reset(check: Check) -> None:
    check([
        cmd("s", "SUBSCRIBE", "a", "b"), cmd("s", "PSUBSCRIBE", "*"), cmd("s", "SSUBSCRIBE", "c"),
        cmd("s", "CLIENT", "SETNAME", "n"), cmd("s", "RESET"),
        cmd("p", "PUBLISH", "a", "x"), cmd("p", "SPUBLISH", "c", "x"),
        cmd("s", "CLIENT", "GETNAME"), cmd("s", "PING"),
        cmd("s", "CLIENT", "INFO", check=client_lines),
        cmd("s", "SELECT", "3"), cmd("s", "HELLO", "3", "SETNAME", "n", check=hello_shape),
        cmd("s", "reset"), cmd("s", "CLIENT", "INFO", check=client_lines),
        cmd("s", "PUBSUB", "NUMPAT"), cmd("s", "UNSUBSCRIBE"),
    ])


def test_reset_ends_transactions(check: Check) -> None:
    # RESET discards MULTI and forgets WATCHed keys.
    check([
        cmd("c", "MULTI", frames=1, requires="multi"),
        cmd("c", "PING", frames=1, requires="multi"),
        cmd("c", "RESET"), cmd("c", "EXEC", requires="multi"),
        cmd("c", "WATCH", "diff-k", requires="multi"), cmd("c", "RESET"),
        cmd("o", "SET", "diff-k", "v", requires="multi"),
        cmd("c", "MULTI", frames=1, requires="multi"),
        cmd("c", "PING", frames=1, requires="multi"),
        cmd("c", "EXEC", requires="multi"), cmd("o", "DEL", "diff-k", requires="multi"),
    ])


def test_subscribe_inside_multi(check: Check) -> None:
    # SUBSCRIBE and PSUBSCRIBE run inside EXEC (the client is then subscribed);
    # SSUBSCRIBE is refused there, as EXEC's client may not block.
    check([
        cmd("c", "MULTI", frames=1, requires="multi"),
        cmd("c", "SSUBSCRIBE", "diff-s", frames=1, requires="multi"),
        cmd("c", "SUBSCRIBE", "diff-a", frames=1, requires="multi"),
        cmd("c", "PSUBSCRIBE", "diff-p*", frames=1, requires="multi"),
        cmd("c", "EXEC", frames=1, requires="multi"),
        cmd("c", "PUBSUB", "NUMSUB", "diff-a"),
        cmd("c", "RESET"),
    ])


def test_config(check: Check) -> None:
    check([
        *(cmd("c", "CONFIG", "GET", name) for name in (
            "maxclients", "client-output-buffer-limit", "proto-max-bulk-len", "save",
            "appendonly", "notify-keyspace-events", "maxmemory-p*",
            "maxmemory", "requirepass", "no-such-parameter", "databases", "timeout",
            "tcp-keepalive", "hz", "client-query-buffer-limit")),
        cmd("c", "CONFIG", "GET", "maxclients", "save", "hz", "maxclients", check=sorted_pairs),
        cmd("c", "CONFIG", "SET", "no-such-parameter", "1"),
        cmd("c", "CONFIG", "SET", "maxclients", "abc"), cmd("c", "CONFIG", "SET", "hz", "abc"),
        cmd("c", "CONFIG", "SET", "databases", "3"),
        cmd("c", "CONFIG", "SET", "appendonly", "maybe"),
        cmd("c", "CONFIG", "SET", "maxmemory", "lots"),
        cmd("c", "CONFIG", "SET", "maxmemory-policy", "bogus"),
        cmd("c", "CONFIG", "SET", "notify-keyspace-events", "Q"),
        cmd("c", "CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb"),
        cmd("c", "CONFIG", "SET", "client-output-buffer-limit", "bogus 1 2 3"),
        cmd("c", "CONFIG", "SET", "hz", "10", "hz", "10"),
        cmd("c", "CONFIG", "SET", "hz", "10", "nope", "1"),
        # Setting the values already in force leaves the shared redis-server as it was.
        cmd("c", "CONFIG", "SET", "maxclients", "10000"),
        cmd("c", "CONFIG", "SET", "hz", "10", "timeout", "0"),
        cmd("c", "CONFIG", "GET", "hz"),
        cmd("c", "CONFIG", "REWRITE"), cmd("c", "CONFIG", "RESETSTAT"),
    ])


def test_server_commands(check: Check) -> None:
    check([
        cmd("c", "TIME", check=time_shape), cmd("c", "COMMAND", "COUNT", check=shape),
        cmd("c", "COMMAND", "INFO", check=shape), cmd("c", "DBSIZE", check=shape),
        cmd("c", "INFO", check=info_headers), cmd("c", "INFO", "default", check=info_headers),
        cmd("c", "INFO", "server", check=info_headers),
        cmd("c", "INFO", "SERVER", "clients", check=info_headers),
        cmd("c", "INFO", "cluster"), cmd("c", "INFO", "no-such-section"),
        cmd("c", "INFO", "keyspace", check=info_headers),
    ])


def test_inline_and_pipelined(check: Check) -> None:
    check([
        raw("c", b"PING\nPING\r\n\r\n\r\nECHO \"a b\"\r\nECHO 'c d'\r\n"),
        raw("c", encode("PING") + b"PING\r\n" + encode("ECHO", "x") * 3),
        raw("c", b"*0\r\n*-1\r\nPING\r\n"),
        raw("c", b"subscribe a b\r\nping\r\n"),
        raw("c", b"unsubscribe\r\n", check=any_order),
        raw("c", b"ECHO \"a\"b\r\n", closes=True),
        raw("d", b"PING\r\n*abc\r\nPING\r\n", closes=True),
        raw("e", b"*1\r\n:1\r\n", closes=True),
        raw("f", b"*1\r\n$-5\r\n", closes=True),
    ])


# --- COMMAND INFO: metadata of every command respd implements ----------------------

def _metadata(entry: Value) -> tuple[object, ...]:
    """What must agree: name, arity, flags, key positions, ACL categories (in Redis's order)."""
    name, arity, flags, first, last, step, categories = entry.data[:7]
    return (text(name), text(arity), [text(f) for f in flags.data], text(first), text(last),
            text(step), [text(c) for c in categories.data])


# Redis 7.2 added these; respd answers as 7.4 (client-setinfo.json, client-no-touch.json).
_NEW_SINCE_70: dict[bytes, tuple[object, ...]] = {
    b"client|setinfo": (b"client|setinfo", b"4", [b"noscript", b"loading", b"stale"],
                        b"0", b"0", b"0", [b"@slow", b"@connection"]),
    b"client|no-touch": (b"client|no-touch", b"3", [b"noscript", b"loading", b"stale"],
                         b"0", b"0", b"0", [b"@slow", b"@connection"]),
}

@pytest.mark.parametrize("name", [pytest.param(name, id=name.decode()) for name in TABLE])
def test_command_info(name: bytes, proto: int, respd_port: int, redis_port: int) -> None:
    """Metadata of a command and its subcommands, as COMMAND INFO reports it."""
    steps = with_protocol([cmd("c", "COMMAND", "INFO", name)], proto)
    theirs, ours = (run(port, steps)[-1]["c"][0].value.data[0] for port in (redis_port,
                                                                            respd_port))
    wanted = {text(e.data[0]): _metadata(e) for e in [theirs, *theirs.data[9].data]
              if theirs.data} | _NEW_SINCE_70
    problems = []
    for entry in [ours, *ours.data[9].data]:
        got = _metadata(entry)
        if got != wanted.get(got[0]):
            problems.append(f"{got[0]!r}\n    redis: {wanted.get(got[0], 'no such command')}"
                            f"\n    respd: {got}")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


# --- mismatches found by this test and since fixed ----------------------------------

@pytest.mark.parametrize(("steps", "only"), [
    pytest.param([cmd("c", "FOO", b"a\x00b", "c"), cmd("c", b"F\x00OO", "a")], None,
                 id="unknown-command-quotes-up-to-nul"),
    pytest.param([cmd("c", "PUBSUB", "HELP"), cmd("c", "CONFIG", "HELP"),
                  cmd("c", "CLIENT", "HELP", check=help_shape),
                  cmd("c", "COMMAND", "HELP", check=help_shape)], None,
                 id="help-ends-with-prints-this-help"),
    pytest.param([cmd("c", "EXEC", "x", requires="exec"), cmd("c", "SUBSCRIBE", "a"),
                  cmd("c", "EXEC", requires="exec")], None,
                 id="exec-rejected-is-execabort"),
    pytest.param([cmd("c", "CONFIG", "SET", "maxclients", "10000", "hz")], None,
                 id="config-set-odd-arguments"),
    pytest.param([cmd("c", "COMMAND", "INFO", "no-such-command", "other"),
                  cmd("c", "COMMAND", "INFO", "client|no-such")], 2,
                 id="command-info-unknown-is-null-bulk"),
    pytest.param([cmd("c", "INFO", "all", check=info_headers),
                  cmd("c", "INFO", "everything", check=info_headers)], None,
                 id="info-all-sections"),
    pytest.param([cmd("c", "CONFIG", "GET", "MAXCLIENTS"),
                  cmd("c", "CONFIG", "GET", "Maxclients", "hz", check=sorted_pairs)], None,
                 id="config-get-echoes-exact-name"),
    pytest.param([cmd("c", "CONFIG", "SET", "maxclients", "0"),
                  cmd("c", "CONFIG", "SET", "maxclients", "-1")], None,
                 id="config-set-maxclients-range"),
])
def test_fixed_mismatches(check: Check, proto: int, steps: list[Step], only: int | None) -> None:
    if only not in (None, proto):
        pytest.skip(f"a RESP{only} difference")
    check(steps)
