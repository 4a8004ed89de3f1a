"""Fuzzing: malformed, truncated, oversized and random requests from many connections at
once, while a well-behaved publisher and subscriber check that every message arrives, in
order. The server must never crash, log an internal error, or stop answering.

Two generators: hypothesis (structured inputs it shrinks on failure) and a randomized
raw-socket client (16 threads, seeded, many short-lived connections). Each test prints
how many inputs it sent (`pytest -s` or `-rP` shows it).

Inputs never run commands that change the server for every client (SHUTDOWN, CONFIG,
CLIENT, ACL, CLUSTER): the point is what a single client can do to everyone else.
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlparse

import hiredis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.commands import TABLE
from server.serve import running
from tests.conftest import DEADLINE, RawClient, wait_until

pytestmark = pytest.mark.timeout(120)

CHANNEL = b"fuzz:check:channel"  # no generated input names it
EXCLUDED = {b"shutdown", b"config", b"client", b"acl", b"cluster", b"monitor"}
NAMES = [*sorted(name for name in TABLE if name not in EXCLUDED), b"nosuch", b"POST"]
TOKENS = [b"", b"a", b"ch", b"*", b"a*", b"[", b"[^a]", b"?", b"\\", b"0", b"-1", b"1",
          b"9223372036854775808", b"1.5", b"nan", b"EX", b"PX", b"GET", b"NX", b"KEEPTTL",
          b"\x00", b"\r\n", b"\xff\xfe", b" ", b'"', b"'", b"x" * 300]


# --- the well-behaved pair ---------------------------------------------------------

@dataclass
class Pair:
    """A publisher and a subscriber on CHANNEL, each in its own thread."""

    port: int
    published: int = 0
    received: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> list[threading.Thread]:
        subscriber = RawClient(self.port)
        subscriber.command("SUBSCRIBE", CHANNEL)
        subscriber.expect(b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%b\r\n:1\r\n"
                          % (len(CHANNEL), CHANNEL))
        threads = [threading.Thread(target=self._subscribe, args=(subscriber,), daemon=True),
                   threading.Thread(target=self._publish, daemon=True)]
        for thread in threads:
            thread.start()
        return threads

    def _publish(self) -> None:
        """Publish 0, 1, 2, ... in pipelines of 10; every reply must count the subscriber."""
        client = RawClient(self.port)
        replies = hiredis.Reader()
        while not self.stop.is_set():
            batch = range(self.published, self.published + 10)
            client.send(b"".join(b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%b\r\n$%d\r\n%d\r\n"
                                 % (len(CHANNEL), CHANNEL, len(str(n)), n) for n in batch))
            got = 0
            while got < 10:
                reply = replies.gets()
                if reply is False:
                    replies.feed(client.sock.recv(65536))
                    continue
                if not isinstance(reply, int) or reply < 1:
                    self.problems.append(f"PUBLISH replied {reply!r}")
                got += 1
            self.published += 10
        client.close()

    def _subscribe(self, client: RawClient) -> None:
        """Read messages; each must be the next number."""
        frames = hiredis.Reader()
        while True:
            data = client.sock.recv(65536)
            if not data:
                self.problems.append("the subscriber's connection closed")
                return
            frames.feed(data)
            while (frame := frames.gets()) is not False:
                if frame[0] != b"message" or int(frame[2]) != len(self.received):
                    self.problems.append(f"out of order or unexpected: {frame!r}")
                self.received.append(int(frame[2]))

    def finish(self, threads: list[threading.Thread]) -> None:
        self.stop.set()
        threads[1].join(DEADLINE)
        wait_until(lambda: len(self.received) >= self.published or bool(self.problems),
                   message="every published message to arrive")
        assert self.problems == []
        assert self.received == list(range(self.published))
        assert self.published > 0


class ErrorLog(logging.Handler):
    """Collects the server's error records (a command that raised, a crashed task)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(self.format(record))


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[int, ErrorLog]]:
    errors = ErrorLog()
    logger = logging.getLogger("respd")
    logger.addHandler(errors)
    try:
        with running(port=0, bind=["127.0.0.1"]) as url:
            yield urlparse(url).port, errors
    finally:
        logger.removeHandler(errors)


def answers(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
        sock.sendall(b"*2\r\n$4\r\nECHO\r\n$5\r\nalive\r\n")
        return sock.recv(64) == b"$5\r\nalive\r\n"


def send_all(port: int, streams: list[list[bytes]]) -> int:
    """Open one connection per stream and send their chunks interleaved; return how
    many chunks went out (a connection the server has closed takes no more)."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
             for _ in streams]
    sent = 0
    try:
        for turn in range(max(map(len, streams))):
            for sock, chunks in zip(socks, streams, strict=True):
                if turn < len(chunks):
                    with contextlib.suppress(OSError):
                        sock.sendall(chunks[turn])
                        sent += 1
    finally:
        for sock in socks:
            sock.close()
    return sent


# --- inputs ------------------------------------------------------------------------

def encode(args: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


commands = st.tuples(st.sampled_from(NAMES), st.lists(st.sampled_from(TOKENS), max_size=5)
                     ).map(lambda c: [c[0], *c[1]])
numbers = st.sampled_from([b"0", b"-1", b"-5", b"1", b"10", b"2147483647", b"2147483648",
                           b"4294967295", b"99999999999999999999", b"abc", b"", b" 1", b"1x"])
chunks = st.one_of(
    commands.map(encode),  # valid multibulk
    commands.map(lambda c: b" ".join(c) + b"\r\n"),  # inline, quotes and all
    st.tuples(commands.map(encode), st.integers(0, 200)).map(lambda t: t[0][:t[1]]),
    numbers.map(lambda n: b"*" + n + b"\r\n"),  # multibulk counts
    numbers.map(lambda n: b"*1\r\n$" + n + b"\r\n"),  # bulk lengths
    st.sampled_from([b"*1\r\n:1\r\n", b"*2\r\n$3\r\nGET\r\n*1\r\n", b"*1\r\n$-1\r\n",
                     b"*1\r\n$3\r\nabcdef", b"$3\r\nabc\r\n", b"+OK\r\n", b"*1\r\n_\r\n",
                     b">1\r\n$1\r\na\r\n", b"~1\r\n$1\r\na\r\n", b"*1\r\n$600000000\r\nxyz",
                     b"*-1\r\n", b"*0\r\n", b"\r\n\r\n", b'"unbalanced\r\n', b"a\x00b\r\n",
                     b"x" * 70000, b"*" + b"9" * 70000]),
    st.binary(max_size=300),  # anything
)
streams = st.lists(st.lists(chunks, min_size=1, max_size=6), min_size=1, max_size=8)

counted = {"hypothesis": 0, "random": 0}


@settings(max_examples=1000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=streams)
def _fuzz_example(port: int, data: list[list[bytes]]) -> None:
    counted["hypothesis"] += send_all(port, data)


def test_hypothesis_fuzz_beside_a_pubsub_pair(server: tuple[int, ErrorLog]) -> None:
    port, errors = server
    pair = Pair(port)
    threads = pair.start()
    _fuzz_example(port)
    assert answers(port)
    pair.finish(threads)
    assert errors.records == []
    print(f"\nhypothesis fuzz: {counted['hypothesis']} inputs on up to 8 connections at "
          f"once; {pair.published} messages delivered in order")


# --- the randomized raw-socket client ----------------------------------------------

def random_input(rng: random.Random) -> bytes:
    """One chunk: mostly damaged versions of real requests, some noise."""
    args = [rng.choice(NAMES)] + [rng.choice(TOKENS) for _ in range(rng.randrange(5))]
    valid = encode(args)
    kind = rng.randrange(8)
    if kind == 0:
        return valid
    if kind == 1:
        return valid[:rng.randrange(len(valid))]  # truncated
    if kind == 2:  # one byte flipped
        at = rng.randrange(len(valid))
        return valid[:at] + bytes([rng.randrange(256)]) + valid[at + 1:]
    if kind == 3:
        return b" ".join(args) + rng.choice([b"\r\n", b"\n", b""])
    if kind == 4:
        return b"*%d\r\n$%d\r\n" % (rng.randrange(-3, 20), rng.choice(
            [0, 1, 16384, 1 << 20, 600 << 20, -7])) + rng.randbytes(rng.randrange(64))
    if kind == 5:
        return rng.randbytes(rng.randrange(1, 512))
    if kind == 6:
        return valid * rng.randrange(2, 50)  # a pipeline
    return rng.choice([b"x" * 66000, b"*1\r\n$" + b"1" * 66000, b"*100000\r\n",
                       b"*1\r\n$1048576\r\n" + b"y" * 100000])


def _random_client(port: int, seed: int, connections: int, sent: list[int]) -> None:
    rng = random.Random(seed)
    for _ in range(connections):
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
            sock.setblocking(False)
            for _ in range(rng.randrange(1, 12)):
                with contextlib.suppress(OSError):  # closed by the server, or full
                    sock.send(random_input(rng))
                    sent[0] += 1
                if rng.random() < 0.3:
                    with contextlib.suppress(OSError):
                        sock.recv(65536)  # read some replies, or none


def test_random_clients_beside_a_pubsub_pair(server: tuple[int, ErrorLog]) -> None:
    port, errors = server
    pair = Pair(port)
    threads = pair.start()
    sent = [[0] for _ in range(16)]
    clients = [threading.Thread(target=_random_client, args=(port, 1000 + i, 150, sent[i]))
               for i in range(16)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(DEADLINE * 6)
    counted["random"] = sum(s[0] for s in sent)
    assert answers(port)
    pair.finish(threads)
    assert errors.records == []
    print(f"\nrandom fuzz: {counted['random']} inputs from 16 threads, 2400 connections; "
          f"{pair.published} messages delivered in order")
