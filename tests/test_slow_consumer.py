"""A subscriber that never reads cannot grow the server's memory or slow anyone else.

The server runs as a separate process so its resident memory can be read from /proc.
"""

from __future__ import annotations

import socket
import threading

import hiredis
import pytest

from tests.conftest import DEADLINE, RawClient, respd_process, rss, wait_until

PAYLOAD = 64 * 1024
MESSAGES = 1600  # 100 MiB in all


@pytest.fixture
def server_process():
    """respd as a child process with the default pub/sub output-buffer limits."""
    with respd_process() as (proc, port):
        yield proc, port


def read_messages(client: RawClient, count: int, out: list[int]) -> None:
    """Read `count` message frames, recording each payload's sequence number."""
    reader = hiredis.Reader()
    while len(out) < count:
        data = client.sock.recv(1 << 20)
        if not data:
            return
        reader.feed(data)
        while (frame := reader.gets()) is not False:
            if frame[0] == b"message":
                out.append(int(frame[2][:10]))


def test_a_subscriber_that_never_reads_is_disconnected_and_memory_stays_bounded(
        server_process) -> None:
    proc, port = server_process
    slow, good, publisher = RawClient(port), RawClient(port), RawClient(port)
    slow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    for client in (slow, good):
        client.command("SUBSCRIBE", "ch")
    good.expect(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
    slow.expect(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n")
    received: list[int] = []
    reading = threading.Thread(target=read_messages, args=(good, MESSAGES, received))
    reading.start()
    before = rss(proc.pid)
    peak = before
    filler = b"x" * (PAYLOAD - 10)
    replies = hiredis.Reader()
    counts = []
    for seq in range(MESSAGES):
        publisher.command("PUBLISH", "ch", b"%010d" % seq + filler)
        while (reply := replies.gets()) is False:
            replies.feed(publisher.sock.recv(65536))
        counts.append(reply)
        if seq % 100 == 0:
            peak = max(peak, rss(proc.pid))
    reading.join(timeout=DEADLINE * 3)
    # Everyone who reads gets everything, in order.
    assert received == list(range(MESSAGES))
    # The slow subscriber went over 32 MiB of queued messages and was dropped: the
    # publisher's counts fall from 2 to 1 and never come back.
    assert counts[0] == 2
    assert counts[-1] == 1
    first_drop = counts.index(1)
    assert set(counts[first_drop:]) == {1}
    assert first_drop * PAYLOAD >= 32 * 1024 * 1024 - 4 * 1024 * 1024
    # What was queued for it is freed: memory grew by about the limit, not by the 100 MiB sent.
    assert peak - before < 80 * 1024 * 1024
    print(f"\nslow consumer: {MESSAGES * PAYLOAD / 2**20:.0f} MiB published, dropped after "
          f"{first_drop * PAYLOAD / 2**20:.1f} MiB; respd peak RSS growth "
          f"{(peak - before) / 2**20:.1f} MiB")
    wait_until(lambda: _client_list(port).count(b"flags=P") == 1, message="slow client to go")
    for client in (slow, good, publisher):
        client.close()


def _client_list(port: int) -> bytes:
    client = RawClient(port)
    client.command("CLIENT", "LIST")
    header = b""
    while not header.endswith(b"\r\n"):
        header += client.read_exactly(1)
    body = client.read_exactly(int(header[1:-2]) + 2)
    client.close()
    return body
