"""Connection scale: 10,000 idle subscribers on one respd, and a publish reaching each.

respd runs as a child process (its resident memory read from /proc, its descriptors
its own); this process holds the 10,000 client sockets, so both raise their soft file
limit (the hard limit here is 20000). The memory per connection is printed
(`pytest -s` or `-rP`): the growth of respd's RSS divided by the number of clients.
"""

from __future__ import annotations

import resource
import selectors
import socket
from collections.abc import Iterator

import pytest

from tests.conftest import DEADLINE, respd_process, rss

pytestmark = pytest.mark.timeout(120)

CLIENTS = 10_000
BATCH = 1000  # connections opened before their confirmations are read (the accept queue)
SUBSCRIBED = b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"
MESSAGE = b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"


@pytest.fixture
def file_limit() -> Iterator[None]:
    """Room for 10,000 client sockets in this process (and in respd, which inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = CLIENTS + 1000
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard file limit ({hard}) is below {wanted}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def respd(file_limit: None) -> Iterator[tuple[int, int]]:
    """respd in a child process: (pid, port)."""
    with respd_process("--maxclients", str(CLIENTS + 100), "--tcp-backlog", "4096") as (
            proc, port):
        yield proc.pid, port


def read_exactly(socks: list[socket.socket], expected: bytes) -> None:
    """Read `expected` from every socket (all at once, with a selector)."""
    selector = selectors.DefaultSelector()
    got: dict[socket.socket, bytes] = {}
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
        got[sock] = b""
    pending = len(socks)
    while pending:
        events = selector.select(DEADLINE)
        assert events, f"{pending} sockets got nothing within {DEADLINE} s"
        for key, _ in events:
            sock = key.fileobj
            data = sock.recv(65536)
            assert data, "a subscriber's connection closed"
            got[sock] += data
            if len(got[sock]) >= len(expected):
                assert got[sock] == expected
                selector.unregister(sock)
                pending -= 1
    selector.close()


def test_ten_thousand_idle_subscribers(respd: tuple[int, int]) -> None:
    pid, port = respd
    with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as publisher:
        publisher.sendall(b"PING\r\n")
        assert publisher.recv(16) == b"+PONG\r\n"
        before = rss(pid)
        subscribers: list[socket.socket] = []
        try:
            for start in range(0, CLIENTS, BATCH):
                batch = [socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
                         for _ in range(min(BATCH, CLIENTS - start))]
                for sock in batch:
                    sock.sendall(b"SUBSCRIBE news\r\n")
                read_exactly(batch, SUBSCRIBED)
                subscribers += batch
            after = rss(pid)
            publisher.sendall(b"PUBLISH news hello\r\n")
            reply = b""
            while not reply.endswith(b"\r\n"):
                reply += publisher.recv(64)
            assert reply == b":%d\r\n" % CLIENTS
            read_exactly(subscribers, MESSAGE)
        finally:
            for sock in subscribers:
                sock.close()
    per_connection = (after - before) / CLIENTS
    print(f"\n{CLIENTS} idle subscribers: respd RSS grew {(after - before) / 2**20:.1f} MiB, "
          f"{per_connection / 1024:.1f} KiB per connection")
    assert per_connection < 32 * 1024
