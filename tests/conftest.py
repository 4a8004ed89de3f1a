"""Shared fixtures: a respd server per test, a real redis-server when installed, raw clients."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from server.serve import running

DEADLINE = 10.0  # seconds any wait in the tests may take before it fails


class RawClient:
    """A plain socket speaking raw RESP, for protocol edge cases and exact bytes."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=DEADLINE)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def command(self, *args: bytes | str) -> None:
        """Send one multibulk request."""
        parts = [a.encode() if isinstance(a, str) else a for a in args]
        self.send(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p)
                                                      for p in parts))

    def read_exactly(self, n: int) -> bytes:
        """Wait (within the deadline) for exactly n bytes."""
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"closed after {self.buffer!r}")
            self.buffer += chunk
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def expect(self, data: bytes) -> None:
        """Read len(data) bytes and check they are data."""
        got = self.read_exactly(len(data))
        assert got == data

    def read_until_closed(self) -> bytes:
        """Everything until the server closes the connection."""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                data, self.buffer = self.buffer, b""
                return data
            self.buffer += chunk

    def read_available(self, wait: float = 0.2) -> bytes:
        """Whatever arrives within `wait` seconds (for comparing two servers' output)."""
        self.sock.settimeout(wait)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buffer += chunk
        except TimeoutError:
            pass
        finally:
            self.sock.settimeout(DEADLINE)
        data, self.buffer = self.buffer, b""
        return data

    def close(self) -> None:
        self.sock.close()


# Redis's refusal of other commands to a RESP2 client in subscribed mode.
SUBSCRIBED_ONLY = ("only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed "
                   "in this context")


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def protocol(request: pytest.FixtureRequest) -> int:
    """The RESP version a redis-py client speaks: each test runs with both."""
    return request.param


class Child:
    """A child process run in the background, its output (stdout and stderr together)
    read line by line by a thread, so a test can wait for a line within the deadline."""

    def __init__(self, argv: list[str], **popen: object) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, **popen)
        self.lines: queue.Queue[str | None] = queue.Queue()  # None: the output ended
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def next_line(self, failure: str) -> str | None:
        """The next line printed (None once the output has ended), or AssertionError(failure)
        if none comes within the deadline."""
        try:
            return self.lines.get(timeout=DEADLINE)
        except queue.Empty:
            raise AssertionError(failure) from None

    def stop(self, kill: bool = False) -> None:
        """End the process if it is still running (SIGTERM, or SIGKILL), close its output."""
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            self.proc.wait(DEADLINE)
        self.reader.join(DEADLINE)
        assert self.proc.stdout is not None
        self.proc.stdout.close()


def wait_until(condition, timeout: float = DEADLINE, message: str = "condition") -> None:
    """Poll a condition until it holds, failing after the deadline (no fixed sleeps)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(0.005)


@pytest.fixture
def respd_url() -> Iterator[str]:
    """A fresh respd server on an ephemeral loopback port, in a background thread."""
    with running(port=0, bind=["127.0.0.1"]) as url:
        yield url


@pytest.fixture
def respd_port(respd_url: str) -> int:
    return urlparse(respd_url).port


@pytest.fixture
def raw(respd_port: int) -> Iterator[RawClient]:
    """A raw RESP client connected to a fresh respd."""
    client = RawClient(respd_port)
    yield client
    client.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def respd_process(*options: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`python -m server --port 0 --bind 127.0.0.1 OPTIONS` as a child process, once it
    has printed its port: (process, port). Stopped (if still running) at the end."""
    proc = subprocess.Popen([sys.executable, "-m", "server", "--port", "0", "--bind",
                             "127.0.0.1", *options], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    try:
        port = None
        for line in proc.stdout:
            found = re.search(r"listening on redis://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port is not None, "respd did not report its port"
        threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=DEADLINE)


def rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@contextlib.contextmanager
def real_redis(*options: str, bind: str = "127.0.0.1") -> Iterator[int]:
    """A real redis-server with these options on a free port; skips when not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", bind, "--save", "",
                             "--appendonly", "no", *options], stdout=subprocess.DEVNULL)
    try:
        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(1) in (b"+", b"-")  # -NOAUTH when a password is set
            except OSError:
                return False
        wait_until(answers, message="redis-server to start")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE)


@pytest.fixture(scope="session")
def redis_port() -> Iterator[int]:
    """A real redis-server for differential tests; skipped when it is not installed."""
    with real_redis() as port:
        yield port
