"""Memory accounting: INFO's used_memory (what maxmemory bounds) against the real growth.

used_memory counts, per key, the key and value objects plus a measured per-key and
per-TTL overhead (server/keyspace.py, `cost`). Here a respd of its own process is
filled and the growth of used_memory is compared with the growth of its resident
memory (used_memory_rss): they must agree within 25%.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest

from tests.conftest import DEADLINE

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def own_respd() -> Iterator[int]:
    """A respd in a process of its own (so its RSS is its own); stopped by PID."""
    proc = subprocess.Popen([sys.executable, "-m", "server", "--port", "0", "--bind",
                             "127.0.0.1", "--loglevel", "warning"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("respd listening on "), line
        yield int(line.rsplit(":", 1)[1])
    finally:
        proc.terminate()
        proc.wait(DEADLINE)


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.parser = hiredis.Reader()

    def pipeline(self, commands: list[list[bytes]]) -> list[object]:
        self.sock.sendall(b"".join(
            b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in c)
            for c in commands))
        replies: list[object] = []
        while len(replies) < len(commands):
            reply = self.parser.gets()
            if reply is False:
                self.parser.feed(self.sock.recv(1 << 16))
            else:
                replies.append(reply)
        return replies

    def memory(self) -> tuple[int, int]:
        text = self.pipeline([[b"INFO", b"memory"]])[0].decode()
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        return int(fields["used_memory"]), int(fields["used_memory_rss"])


@pytest.mark.parametrize("value_size", [16, 200])
def test_used_memory_follows_the_process_growth(own_respd: int, value_size: int) -> None:
    client = Client(own_respd)
    used_before, rss_before = client.memory()
    value = b"v" * value_size
    for first in range(0, 100_000, 2000):
        commands = [[b"SET", b"cache:key:%d" % i, value] for i in range(first, first + 2000)]
        commands += [[b"EXPIRE", b"cache:key:%d" % i, b"1000"]
                     for i in range(first, first + 2000, 2)]
        client.pipeline(commands)
    used_after, rss_after = client.memory()
    ratio = (rss_after - rss_before) / (used_after - used_before)
    assert 0.8 <= ratio <= 1.25, ratio
    client.pipeline([[b"FLUSHALL"]])
    assert client.memory()[0] == used_before
