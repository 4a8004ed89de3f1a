"""Python cost per command of a pipelined batch, without the network.

Runs `Connection.step` (recv, parse, dispatch, run, send) on a batch of 16 identical
pipelined requests, against a socket stand-in whose recv returns the batch and whose
send takes everything, and prints the microseconds per command. This is the part of
redis-benchmark -P16's server CPU that respd's own code decides (the rest is the
kernel's); use it to measure a change to the parser, the dispatcher or a command
before running scripts/bench.py.

    python scripts/micro_step.py [--batches N]
"""

from __future__ import annotations

import argparse
import socket
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pubsub.hub import CHANNEL
from server.config import Config
from server.connection import Connection
from server.serve import Server

PIPELINE = 16
CASES = {
    "PING": [b"PING"],
    "PUBLISH": [b"PUBLISH", b"ch", b"xxx"],
    "GET": [b"GET", b"key:__rand_int__"],
    "SET": [b"SET", b"key:__rand_int__", b"xxx"],
}


class _Kernel:
    """What `Connection.step` calls on the stdlib socket."""

    data = b""

    def recv(self, _size: int) -> bytes:
        return self.data

    def send(self, data: bytes) -> int:
        return len(data)


class _Socket:
    """A stand-in for the trio socket a Connection is made with."""

    family = socket.AF_INET

    def __init__(self) -> None:
        self._sock = _Kernel()

    def fileno(self) -> int:
        return -1

    def getpeername(self) -> tuple[str, int]:
        return ("127.0.0.1", 1)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", 2)


def encode(*args: bytes) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%b\r\n" % (len(a), a) for a in args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20000)
    args = parser.parse_args(argv)
    server = Server(Config())
    client = Connection(server, _Socket(), 1)
    subscriber = Connection(server, _Socket(), 2)  # PUBLISH reaches one subscriber
    server.hub.subscribe(subscriber, CHANNEL, [b"ch"])
    for name, request in CASES.items():
        client.raw.data = encode(*request) * PIPELINE

        def batch() -> None:
            client.step()
            subscriber.outbox.clear()

        batch()  # the key exists for GET, the command's spelling is known
        seconds = min(timeit.repeat(batch, number=args.batches, repeat=3))
        print(f"{name:8} {seconds / args.batches / PIPELINE * 1e6:.3f} us/command")
    return 0


if __name__ == "__main__":
    sys.exit(main())
