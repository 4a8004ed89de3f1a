"""Expiry lag: how late `expired` events arrive when many keys have a TTL.

Starts respd (and redis-server, when installed, for comparison) on free loopback
ports, subscribes to `__keyevent@0__:expired`, then sets N keys with absolute
deadlines (`SET key value PXAT <ms>`, the deadline in the key's name) in pipelined
batches, and times each event's arrival against its key's deadline. Two shapes:

* spread: deadlines spread evenly over a window (the usual cache);
* burst: every key with the same deadline (the worst case for the one expiring).

Reported per server: events received, lag p50 / p99 / max in ms, and DBSIZE and
`expired_keys` afterwards (the keys are gone without ever being read). Redis's
active expiry samples keys, so its events lag; respd keeps the deadlines in a heap.

Usage: ``python scripts/bench_cache.py [--keys N] [--window MS] [--lead MS]
[--only respd|redis] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hiredis

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
READY_TIMEOUT = 20.0
BATCH = 1000  # SETs per pipelined write


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def encode(*args: bytes | str) -> bytes:
    parts = [a.encode() if isinstance(a, str) else a for a in args]
    return b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%b\r\n" % (len(p), p) for p in parts)


class Client:
    """A blocking RESP client over a raw socket, replies parsed by hiredis."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=30)
        self.reader = hiredis.Reader()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self) -> object:
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError
            self.reader.feed(chunk)

    def call(self, *args: bytes | str) -> object:
        self.send(encode(*args))
        return self.read()

    def close(self) -> None:
        self.sock.close()


@contextmanager
def server(kind: str) -> Iterator[tuple[int, subprocess.Popen]]:
    """Start respd or redis-server on a free port; stop it by its PID afterwards."""
    port = free_port()
    if kind == "respd":
        command = [sys.executable, "-m", "server", "--port", str(port), "--bind", HOST,
                   "--loglevel", "warning"]
    else:
        command = [shutil.which("redis-server") or "redis-server", "--port", str(port),
                   "--bind", HOST, "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        end = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                Client(port).call("PING")
                break
            except OSError:
                if time.monotonic() > end or proc.poll() is not None:
                    raise RuntimeError(f"{kind} did not start") from None
                time.sleep(0.05)
        yield port, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def run_shape(port: int, keys: int, window: int, lead: int, burst: bool) -> dict[str, float]:
    """Set keys with deadlines `lead` ms from now (spread over `window` unless burst) and
    measure each expired event's lag."""
    admin = Client(port)
    admin.call("FLUSHALL")
    admin.call("CONFIG", "SET", "notify-keyspace-events", "Ex")
    expired_before = _info_int(admin, "stats", "expired_keys")
    sub = Client(port)
    sub.call("SUBSCRIBE", "__keyevent@0__:expired")
    lags: list[float] = []

    def listen() -> None:
        sub.sock.settimeout(max(10.0, (lead + window) / 1000 + 10))
        try:
            while len(lags) < keys:
                message = sub.read()
                arrived = time.time() * 1000
                deadline = int(message[2].split(b":")[1])
                lags.append(arrived - deadline)
        except (OSError, EOFError):
            pass

    listener = threading.Thread(target=listen)
    listener.start()
    start = int(time.time() * 1000) + lead
    writer = Client(port)
    for first in range(0, keys, BATCH):
        batch = []
        for i in range(first, min(first + BATCH, keys)):
            deadline = start if burst else start + window * i // keys
            batch.append(encode("SET", b"k%d:%d" % (i, deadline), b"v" * 32, "PXAT",
                                str(deadline)))
        writer.send(b"".join(batch))
        for _ in batch:
            writer.read()
    set_done = time.time() * 1000
    listener.join()
    left = admin.call("DBSIZE")
    expired = _info_int(admin, "stats", "expired_keys") - expired_before
    for client in (admin, sub, writer):
        client.close()
    if set_done > start:
        print(f"  warning: setting took longer than --lead ({set_done - start:.0f} ms late)",
              file=sys.stderr)
    ordered = sorted(lags)
    return {
        "received": len(lags),
        "lag_p50_ms": statistics.median(ordered) if ordered else float("nan"),
        "lag_p99_ms": ordered[int(len(ordered) * 0.99) - 1] if ordered else float("nan"),
        "lag_max_ms": ordered[-1] if ordered else float("nan"),
        "dbsize_after": left,
        "expired_keys": expired,
    }


def _info_int(client: Client, section: str, field: str) -> int:
    text = client.call("INFO", section).decode()
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split(":")[1])
    raise KeyError(field)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--window", type=int, default=2000, help="ms the deadlines span")
    parser.add_argument("--lead", type=int, default=3000,
                        help="ms from the start to the first deadline (time to set the keys)")
    parser.add_argument("--only", choices=["respd", "redis"])
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    kinds = [options.only] if options.only else ["respd", "redis"]
    if "redis" in kinds and not shutil.which("redis-server"):
        print("redis-server not installed: measuring respd only", file=sys.stderr)
        kinds.remove("redis")
    results = {}
    print(f"{options.keys} keys, deadlines {options.lead} ms ahead, spread over "
          f"{options.window} ms (spread) or all at once (burst)")
    print(f"{'server':8} {'shape':7} {'received':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'max ms':>9} {'dbsize':>7} {'expired':>8}")
    for kind in kinds:
        with server(kind) as (port, _):
            for shape in ("spread", "burst"):
                row = run_shape(port, options.keys, options.window, options.lead,
                                shape == "burst")
                results[f"{kind}/{shape}"] = row
                print(f"{kind:8} {shape:7} {row['received']:>9} {row['lag_p50_ms']:>8.1f} "
                      f"{row['lag_p99_ms']:>8.1f} {row['lag_max_ms']:>9.1f} "
                      f"{row['dbsize_after']:>7} {row['expired_keys']:>8}", flush=True)
    if options.json:
        options.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
