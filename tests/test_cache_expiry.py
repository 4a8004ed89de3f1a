"""Active expiry at scale: 100k keys with short TTLs go without ever being read.

The lag of each `expired` event behind its deadline is measured by
scripts/bench_cache.py, not asserted here (no timing assertions in tests).
"""

from __future__ import annotations

import socket
import threading

import hiredis
import pytest
import redis

from tests.conftest import DEADLINE, wait_until

pytestmark = pytest.mark.timeout(60)

KEYS = 100_000
BATCH = 2000


def _encode(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


class Reader:
    """Replies from a raw socket, parsed by hiredis (fast enough for 100k messages)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.parser = hiredis.Reader()

    def read(self) -> object:
        while True:
            reply = self.parser.gets()
            if reply is not False:
                return reply
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError
            self.parser.feed(chunk)


def test_100k_short_ttls_expire_unread_with_one_event_each(respd_port: int) -> None:
    r = redis.Redis(port=respd_port)
    r.config_set("notify-keyspace-events", "Ex")
    baseline = r.info("memory")["used_memory"]
    sub = Reader(respd_port)
    sub.sock.sendall(_encode(b"SUBSCRIBE", b"__keyevent@0__:expired"))
    assert sub.read()[0] == b"subscribe"
    received: list[bytes] = []

    def listen() -> None:
        while len(received) < KEYS:
            received.append(sub.read()[2])

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    writer = Reader(respd_port)
    for first in range(0, KEYS, BATCH):
        writer.sock.sendall(b"".join(
            _encode(b"SET", b"key:%d" % i, b"value", b"PX", b"%d" % (200 + i % 300))
            for i in range(first, first + BATCH)))
        for _ in range(BATCH):
            assert writer.read() == b"OK"
    # Nothing reads the keys: the expiry task alone removes them.
    wait_until(lambda: r.dbsize() == 0, message="every key to expire")
    listener.join(DEADLINE)
    assert len(received) == KEYS
    assert set(received) == {b"key:%d" % i for i in range(KEYS)}
    info = r.info()
    assert info["expired_keys"] == KEYS
    assert "db0" not in r.info("keyspace")
    assert info["used_memory"] == baseline  # the accounted memory is all given back
    for client in (sub, writer):
        client.sock.close()
    r.close()
