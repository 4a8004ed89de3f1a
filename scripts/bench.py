"""Benchmark respd against a real redis-server, side by side, in one run.

Both servers are started on free loopback ports, measured in interleaved
rounds and stopped at the end.  Three kinds of benchmark are run:

* ``redis-benchmark`` for PING_INLINE, PING_MBULK, PUBLISH, SET and GET, unpipelined and
  with a pipeline of 16: requests per second and server CPU per request;
* pub/sub fan-out: one pipelining publisher, S subscribers on one channel read
  with raw sockets in a separate process; delivered messages per second,
  server CPU per delivered message, and a check that every subscriber got
  every message exactly once and in order;
* the same with other shapes of load: 100 subscribers and a publisher that
  waits for each reply; 1,000 channels with one subscriber each and four
  publisher connections; 100 patterns ``p.<i>.*`` over 10 subscribers, each
  PUBLISH matching one; one subscriber and 16 KiB payloads (also MB/s);
* publish-to-receive latency at a fixed publish rate: p50 and p99 measured at
  every subscriber; and at half of the rate at which Redis saturates with S
  subscribers (measured first, in the same run), offered by a paced publisher.

Usage: ``python scripts/bench.py [--quick] [--rounds N] [--only NAMES]
[--json PATH]``.  The table shows, per figure, the median and the min-max range
over the rounds, and the ratio respd/redis of the medians.

For developing this script without respd, the hidden option ``--respd-cmd``
replaces respd's command line, e.g. ``--respd-cmd "redis-server --port {port}
--save '' --appendonly no"`` (ratios should then come out near 1.0).
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import io
import json
import multiprocessing
import os
import platform
import selectors
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from ctypes import c_int64
from dataclasses import asdict, dataclass, field, replace
from functools import cache, partial
from multiprocessing.connection import Connection
from pathlib import Path

import hiredis

REPO_ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 20.0  # seconds for a server to answer PING after start
IDLE_TIMEOUT = 10.0  # seconds without data before a subscriber gives up
RB_TIMEOUT = 60.0  # seconds before a redis-benchmark run is abandoned

CHANNEL = b"bench"
PAYLOAD_SIZE = 64
DIGITS = 20  # payload: b"<seq> <send time in ns>" in 20 digits each, padded
PIPELINE_BATCH = 100
FANOUT_MAX_LEAD = 20_000  # messages the publisher may run ahead of any subscriber
FANOUT_MAX_BACKLOG = 200_000  # ... and of all subscribers together (~20 MB)
SUBSCRIBER_MAX_BYTES = 4 << 20  # ... and of one subscriber, in bytes (redis: 8 MB soft limit)

RB_CLIENTS = 50
FANOUT_SUBSCRIBERS = (1, 10, 100)
NOPIPE_SUBSCRIBERS = 100  # fan-out with a publisher that waits for each reply
MANY_CHANNELS = 1_000  # channels, one subscriber each ...
MANY_CHANNELS_PUBLISHERS = 4  # ... published to over this many connections
PATTERNS = 100  # patterns p.<i>.* ...
PATTERN_SUBSCRIBERS = 10  # ... spread over this many subscribers
LARGE_PAYLOAD_SIZE = 16_384
LATENCY_SUBSCRIBERS = (1, 10, 100)
LATENCY_MAX_RATE = 5000  # messages/s published in the latency benchmark
LATENCY_MAX_DELIVERIES = 50_000  # ... capped so that rate * S stays below this

REDIS_ARGV = ["redis-server", "--port", "{port}", "--save", "", "--appendonly", "no"]
RESPD_ARGV = [sys.executable, "-m", "server", "--port", "{port}"]


# glibc mallopt parameters (malloc.h) for the clients' own processes (keep_heap).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
CLIENT_HEAP_KEEP = 64 << 20  # bytes freed at the top of the heap kept, not returned
CLIENT_HEAP_UP_TO = 32 << 20  # allocations up to this size come from the heap


def keep_heap() -> None:
    """Keep this client process's freed memory and serve large blocks from its heap.

    With glibc's defaults, the first runs of the 16 KiB case gave each 1.6 MB block of
    PUBLISHes (and each large read) back to the kernel and faulted it in again, page by
    page: the clients were then the limit for both servers (37,000-47,000 msg/s each,
    a ratio of 0.93 when the case ran alone), until glibc raised its own threshold in a
    later round (81,000-108,000). Set from the start, every round measures the servers.
    The servers are other programs (exec'd), so this does not reach them.
    """
    with suppress(OSError, AttributeError):  # a C library without mallopt: left as is
        mallopt = ctypes.CDLL(None).mallopt
        mallopt(M_TRIM_THRESHOLD, CLIENT_HEAP_KEEP)
        mallopt(M_MMAP_THRESHOLD, CLIENT_HEAP_UP_TO)


class BenchError(Exception):
    """A benchmark run failed or its correctness check did not pass."""


# --------------------------------------------------------------------------
# Data model


@dataclass(frozen=True)
class Metric:
    """One figure reported by a benchmark case."""

    key: str
    unit: str


@dataclass
class Sample:
    """The outcome of one run of one case against one server."""

    elapsed: float  # seconds of the measured phase
    metrics: dict[str, float]


@dataclass(frozen=True)
class Profile:
    """Run-length settings: --quick uses shorter runs and fewer rounds."""

    rounds: int
    target_seconds: float  # aimed duration of one throughput run
    latency_seconds: float  # duration of one latency run
    probe_seconds: float  # minimum duration of the calibration probe


@dataclass(frozen=True)
class Case:
    """A named benchmark that can be run against any server.

    ``run`` takes the server and a count.  Throughput cases are ``sized``: the
    count is calibrated per server so that a run lasts about
    ``Profile.target_seconds``, starting from ``count``.  Other cases always
    use ``count``.
    """

    name: str
    group: str
    label: str
    metrics: tuple[Metric, ...]
    run: Callable[[Server, int], Sample]
    count: int
    sized: bool


@dataclass
class Record:
    """One run as stored in the JSON output (round 0: failed calibration)."""

    case: str
    server: str
    round: int
    count: int  # requests (redis-benchmark) or messages published
    elapsed: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None


# --------------------------------------------------------------------------
# Server processes


@dataclass
class Server:
    """A server process started by this script, listening on ``port``."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    def cpu_times(self) -> tuple[float, float]:
        """Return the user and the system CPU time the server has used so far."""
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3, state
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def cpu_metrics(before: tuple[float, float], after: tuple[float, float],
                count: int) -> dict[str, float]:
    """The server's CPU per request or message between two cpu_times(): all of it, and
    the system part (in the JSON only: it tells a gap in the kernel from one in the
    server's own code)."""
    user, system = after[0] - before[0], after[1] - before[1]
    return {"cpu_us": (user + system) * 1e6 / count, "sys_us": system * 1e6 / count}

    def log_tail(self, lines: int = 20) -> str:
        """Return the last lines the server wrote to stdout/stderr."""
        text = self.log_path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    """Return a TCP port on the loopback interface that is currently free."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(name: str, argv: list[str], log_dir: Path) -> Server:
    """Start a server command (``{port}`` is substituted) and wait for it."""
    port = free_port()
    argv = [arg.replace("{port}", str(port)) for arg in argv]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(name, port, proc, log_path)
    try:
        wait_ready(server)
    except BaseException:
        stop_server(server)
        raise
    return server


def wait_ready(server: Server) -> None:
    """Poll the server with PING until it answers +PONG, or raise."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with status {server.proc.returncode}:\n{server.log_tail()}"
            )
        with suppress(OSError), connect(server.port, timeout=1.0) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            reply = b""
            while not reply.endswith(b"\r\n") and (chunk := sock.recv(64)):
                reply += chunk
            if reply == b"+PONG\r\n":
                return
        time.sleep(0.02)  # back off between attempts
    raise BenchError(f"{server.name} did not answer PING within {READY_TIMEOUT}s")


def stop_server(server: Server) -> None:
    """Terminate the server process (by PID) and wait for it to exit."""
    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()


# --------------------------------------------------------------------------
# RESP helpers for the raw-socket clients


def connect(port: int, timeout: float | None = None) -> socket.socket:
    """Open a TCP connection to the server with Nagle's algorithm disabled."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def encode_command(*args: bytes) -> bytes:
    """Encode a command as a RESP multibulk."""
    parts = [b"*%d\r\n" % len(args)]
    parts += [b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args]
    return b"".join(parts)


@cache
def publish_header(channel: bytes, size: int) -> bytes:
    """Return the RESP encoding of PUBLISH up to its payload's bytes."""
    return b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n" % (len(channel), channel, size)


def publish_command(
    seq: int, sent_ns: int = 0, channel: bytes = CHANNEL, size: int = PAYLOAD_SIZE
) -> bytes:
    """Encode PUBLISH of a payload carrying a sequence number and a time."""
    payload = b"%0*d %0*d" % (DIGITS, seq, DIGITS, sent_ns)
    return publish_header(channel, size) + payload.ljust(size, b".") + b"\r\n"


def read_reply(sock: socket.socket, reader: hiredis.Reader) -> object:
    """Read one complete RESP reply from the socket."""
    while (reply := reader.gets()) is False:
        data = sock.recv(65536)
        if not data:
            raise BenchError("server closed the connection")
        reader.feed(data)
    return reply


def expect_integer_replies(
    sock: socket.socket, reader: hiredis.Reader, count: int, expected: int
) -> None:
    """Read ``count`` PUBLISH replies and check each equals ``expected``."""
    for _ in range(count):
        reply = read_reply(sock, reader)
        if reply != expected:
            raise BenchError(
                f"PUBLISH replied {reply!r}, expected {expected} (subscriber disconnected?)"
            )


# --------------------------------------------------------------------------
# Subscriber worker (runs in a separate process)


@dataclass
class Stream:
    """One channel or pattern a subscriber is subscribed to, and its progress."""

    kind: bytes  # b"message" (SUBSCRIBE) or b"pmessage" (PSUBSCRIBE)
    target: bytes  # the channel or pattern subscribed to
    channel: bytes  # the channel its messages are published on
    count: int  # messages it must receive, with sequence numbers 0 to count-1
    received: int = 0  # frames received
    next_seq: int = 0  # sequence number expected in the next message


SUBSCRIBE_COMMANDS = {b"message": b"SUBSCRIBE", b"pmessage": b"PSUBSCRIBE"}


@dataclass
class Subscription:
    """One subscriber connection and the streams it receives."""

    index: int
    sock: socket.socket
    reader: hiredis.Reader
    streams: dict[bytes, Stream]  # by target

    def done(self) -> bool:
        """Return whether every stream has reached its last message."""
        return all(s.next_seq >= s.count for s in self.streams.values())


@dataclass
class SubscriberReport:
    """What the subscriber worker sends back to the publisher."""

    received: list[int]  # per stream, over all subscriptions
    expected: list[int]  # ... and what each should have received
    errors: list[str]
    last_ns: int
    latencies_ns: list[int]


def channel_layout(subscribers: int, count: int) -> list[list[Stream]]:
    """Return S subscribers of CHANNEL, each expecting ``count`` messages."""
    return [[Stream(b"message", CHANNEL, CHANNEL, count)] for _ in range(subscribers)]


def subscribe_all(port: int, layout: list[list[Stream]]) -> list[Subscription]:
    """Connect one subscriber per entry of ``layout`` and subscribe its streams.

    Sends every subscription first, then waits for all the confirmations.
    """
    subs: list[Subscription] = []
    confirmations: list[list[list[object]]] = []
    for index, streams in enumerate(layout):
        sock = connect(port, timeout=READY_TIMEOUT)
        subs.append(Subscription(index, sock, hiredis.Reader(), {}))
        expected: list[list[object]] = []
        for kind, command in SUBSCRIBE_COMMANDS.items():
            targets = [s.target for s in streams if s.kind == kind]
            if targets:
                sock.sendall(encode_command(command, *targets))
                for target in targets:
                    expected.append([command.lower(), target, len(expected) + 1])
        confirmations.append(expected)
        # Fresh copies: the layout may share one Stream between subscribers.
        subs[-1].streams = {s.target: replace(s) for s in streams}
    for sub, expected in zip(subs, confirmations, strict=True):
        for confirmation in expected:
            reply = read_reply(sub.sock, sub.reader)
            if reply != confirmation:
                raise BenchError(f"unexpected subscribe reply {reply!r}, wanted {confirmation!r}")
        sub.sock.settimeout(0)
    return subs


def subscriber_main(
    conn: Connection,
    delivered: c_int64,
    *,
    port: int,
    layout: list[list[Stream]],
    latency: bool,
) -> None:
    """Worker process: subscribe, report ready, receive, report the result."""
    keep_heap()  # as the parent, whichever way multiprocessing started this process
    subs = subscribe_all(port, layout)
    conn.send("ready")
    conn.send(receive_all(subs, latency, delivered))


def receive_all(subs: list[Subscription], latency: bool, delivered: c_int64) -> SubscriberReport:
    """Read every stream's messages 0 to count-1, checking their order.

    Keeps the total number of messages received in the shared ``delivered``.
    With ``latency``, also collect the publish-to-receive time of every
    message from the send time embedded in the payload.
    """
    selector = selectors.DefaultSelector()
    for sub in subs:
        if not sub.done():
            selector.register(sub.sock, selectors.EVENT_READ, sub)
    errors: list[str] = []
    latencies: list[int] = []
    last_ns = 0
    while selector.get_map():
        events = selector.select(timeout=IDLE_TIMEOUT)
        if not events:
            add_error(errors, f"no data for {IDLE_TIMEOUT}s")
            break
        for key, _ in events:
            sub: Subscription = key.data
            data = sub.sock.recv(262144)
            last_ns = time.perf_counter_ns()
            if not data:
                add_error(errors, f"subscriber {sub.index}: connection closed")
                selector.unregister(sub.sock)
                continue
            sub.reader.feed(data)
            frames = 0
            while (frame := sub.reader.gets()) is not False:
                frames += 1
                if check_frame(sub, frame, errors) and latency:
                    latencies.append(last_ns - int(frame[-1][DIGITS + 1 : 2 * DIGITS + 1]))
            delivered.value += frames
            if sub.done():
                selector.unregister(sub.sock)
    for sub in subs:
        sub.sock.close()
    streams = [stream for sub in subs for stream in sub.streams.values()]
    return SubscriberReport(
        received=[s.received for s in streams],
        expected=[s.count for s in streams],
        errors=errors,
        last_ns=last_ns,
        latencies_ns=latencies,
    )


def check_frame(sub: Subscription, frame: object, errors: list[str]) -> bool:
    """Count a pub/sub frame; return whether it is the next message in order.

    A frame is ``[message, channel, payload]`` or ``[pmessage, pattern,
    channel, payload]``, for one of the subscription's streams.
    """
    stream = sub.streams.get(frame[1]) if isinstance(frame, list) and len(frame) > 1 else None
    if not (
        stream is not None
        and len(frame) == (4 if stream.kind == b"pmessage" else 3)
        and frame[0] == stream.kind
        and frame[-2] == stream.channel
        and frame[-1][:DIGITS].isdigit()
    ):
        add_error(errors, f"subscriber {sub.index}: unexpected frame {frame!r:.100}")
        return False
    stream.received += 1
    seq = int(frame[-1][:DIGITS])
    expected, stream.next_seq = stream.next_seq, seq + 1
    if seq != expected:
        add_error(
            errors,
            f"subscriber {sub.index} ({stream.target.decode()}): "
            f"expected message {expected}, got {seq}",
        )
    return seq == expected


def add_error(errors: list[str], message: str) -> None:
    """Record an error message, keeping only the first few."""
    if len(errors) < 10:
        errors.append(message)


@dataclass
class SubscriberWorker:
    """The publisher's handle on a running subscriber worker process."""

    pipe: Connection
    delivered: c_int64  # messages received by all subscribers so far
    per_publish: int  # messages delivered per message published

    def wait_for_subscribers(self, published: int, max_lead: int) -> None:
        """Wait until every subscriber may be at most ``max_lead`` messages behind.

        This bounds what the server must buffer (redis drops subscribers that
        fall 32 MB behind).  Stops waiting if the worker has finished early.
        """
        target = (published - max_lead) * self.per_publish
        while self.delivered.value < target and not self.pipe.poll(0.0002):
            pass

    def report(self) -> SubscriberReport:
        """Wait for the worker's report and raise if any message went astray."""
        report: SubscriberReport = self.pipe.recv()
        wrong = [
            (got, want)
            for got, want in zip(report.received, report.expected, strict=True)
            if got != want
        ]
        if report.errors or wrong:
            detail = f", e.g. {wrong[0][0]} instead of {wrong[0][1]}" if wrong else ""
            raise BenchError(
                f"{len(wrong)} of {len(report.expected)} subscribed channels/patterns received "
                f"a wrong number of messages{detail}; "
                f"{'; '.join(report.errors[:5]) or 'no ordering error'}"
            )
        return report


@contextmanager
def subscriber_worker(
    port: int, layout: list[list[Stream]], per_publish: int, latency: bool
) -> Iterator[SubscriberWorker]:
    """Start the subscriber worker process; yield a handle once it is subscribed."""
    parent, child = multiprocessing.Pipe()
    delivered = multiprocessing.RawValue(c_int64, 0)
    worker = multiprocessing.Process(
        target=subscriber_main,
        args=(child, delivered),
        kwargs={"port": port, "layout": layout, "latency": latency},
        daemon=True,
    )
    worker.start()
    child.close()
    try:
        if not parent.poll(READY_TIMEOUT) or parent.recv() != "ready":
            raise BenchError("subscriber worker did not become ready")
        yield SubscriberWorker(parent, delivered, per_publish)
    except EOFError:
        raise BenchError("subscriber worker died (see stderr)") from None
    finally:
        worker.join(timeout=1.0)  # it exits right after sending its report
        if worker.is_alive():
            worker.kill()
            worker.join()
        parent.close()


# --------------------------------------------------------------------------
# Benchmarks


def run_redis_benchmark(server: Server, count: int, test: str, pipeline: int) -> Sample:
    """Run one redis-benchmark test; return req/s and server CPU per request."""
    argv = (
        f"redis-benchmark -h {HOST} -p {server.port} -c {RB_CLIENTS} -n {count} -P {pipeline}"
        " --csv -q"
    ).split()
    if test == "publish":  # no built-in test for PUBLISH in redis-benchmark 7
        argv += ["PUBLISH", CHANNEL.decode(), "x" * PAYLOAD_SIZE]
    else:
        argv += ["-t", test]
    cpu_before = server.cpu_times()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=RB_TIMEOUT, check=False)
    cpu_after = server.cpu_times()
    if proc.returncode != 0 or "error" in proc.stderr.lower():
        raise BenchError(f"redis-benchmark failed: {proc.stderr.strip()[:300]}")
    rps = parse_rps(proc.stdout)
    return Sample(count / rps, {"rps": rps, **cpu_metrics(cpu_before, cpu_after, count)})


def parse_rps(output: str) -> float:
    """Return the requests per second of the single test in --csv output."""
    rows = list(csv.DictReader(io.StringIO(output)))
    if len(rows) != 1:
        raise BenchError(f"unexpected redis-benchmark output: {output[:300]!r}")
    return float(rows[0]["rps"])


@dataclass(frozen=True)
class PubSubLoad:
    """The shape of a pub/sub throughput run.

    Message k goes to ``channels[k % C]`` with sequence number ``k // C``,
    over publisher connection ``k % publishers``; ``publishers`` divides C, so
    each channel has one publisher and its messages are published in order.
    """

    channels: tuple[bytes, ...]
    subscribers: tuple[tuple[tuple[bytes, bytes, int], ...], ...]  # (kind, target, channel no.)
    receivers: int  # subscribers reached by each PUBLISH (its expected reply)
    publishers: int = 1
    batch: int = PIPELINE_BATCH  # PUBLISH per connection between reads; 1: no pipelining
    payload_size: int = PAYLOAD_SIZE


def fanout_load(subscribers: int, batch: int = PIPELINE_BATCH) -> PubSubLoad:
    """S subscribers of one channel."""
    streams = ((b"message", CHANNEL, 0),)
    return PubSubLoad((CHANNEL,), (streams,) * subscribers, subscribers, batch=batch)


def many_channels_load() -> PubSubLoad:
    """One subscriber on each of many channels, several publishers."""
    channels = tuple(b"c.%d" % i for i in range(MANY_CHANNELS))
    return PubSubLoad(
        channels,
        tuple(((b"message", channel, i),) for i, channel in enumerate(channels)),
        receivers=1,
        publishers=MANY_CHANNELS_PUBLISHERS,
    )


def patterns_load() -> PubSubLoad:
    """Patterns p.<i>.* over a few subscribers; each PUBLISH (p.<i>.x) matches one."""
    per_subscriber = PATTERNS // PATTERN_SUBSCRIBERS
    return PubSubLoad(
        tuple(b"p.%d.x" % i for i in range(PATTERNS)),
        tuple(
            tuple((b"pmessage", b"p.%d.*" % i, i) for i in range(s, s + per_subscriber))
            for s in range(0, PATTERNS, per_subscriber)
        ),
        receivers=1,
    )


def run_pubsub(server: Server, count: int, load: PubSubLoad) -> Sample:
    """Publish ``count`` messages as ``load`` describes; return deliveries/s.

    Also returns the server's CPU per delivered message and payload MB/s.
    """
    nchannels = len(load.channels)
    assert nchannels % load.publishers == 0
    layout = [
        [
            Stream(kind, target, load.channels[ch], len(range(ch, count, nchannels)))
            for kind, target, ch in streams
        ]
        for streams in load.subscribers
    ]
    max_lead = max(
        1,
        min(
            FANOUT_MAX_LEAD,
            FANOUT_MAX_BACKLOG // load.receivers,
            SUBSCRIBER_MAX_BYTES // (load.payload_size + 100),
        ),
    )
    block = load.batch * load.publishers
    with subscriber_worker(server.port, layout, load.receivers, latency=False) as worker:
        pubs = [connect(server.port) for _ in range(load.publishers)]
        try:
            readers = [hiredis.Reader() for _ in pubs]
            cpu_before = server.cpu_times()
            start_ns = time.perf_counter_ns()
            for first in range(0, count, block):
                worker.wait_for_subscribers(first, max_lead)
                end = min(first + block, count)
                for n, pub in enumerate(pubs):
                    pub.sendall(
                        b"".join(
                            publish_command(
                                k // nchannels, 0, load.channels[k % nchannels], load.payload_size
                            )
                            for k in range(first + n, end, load.publishers)
                        )
                    )
                for n, (pub, reader) in enumerate(zip(pubs, readers, strict=True)):
                    sent = len(range(first + n, end, load.publishers))
                    expect_integer_replies(pub, reader, sent, load.receivers)
            report = worker.report()
            cpu_after = server.cpu_times()
        finally:
            for pub in pubs:
                pub.close()
    elapsed = (report.last_ns - start_ns) / 1e9
    deliveries = count * load.receivers
    return Sample(
        elapsed,
        {
            "msgs_per_s": deliveries / elapsed,
            **cpu_metrics(cpu_before, cpu_after, deliveries),
            "mb_per_s": deliveries * load.payload_size / elapsed / 1e6,
        },
    )


def latency_rate(subscribers: int) -> int:
    """Return the publish rate (msg/s) of the latency benchmark for S."""
    return min(LATENCY_MAX_RATE, LATENCY_MAX_DELIVERIES // subscribers)


@contextmanager
def latency_clients(server: Server, subscribers: int,
                    count: int) -> Iterator[tuple[SubscriberWorker, socket.socket]]:
    """S subscribers recording each message's latency (in a worker process), and a
    publisher connection."""
    with (
        subscriber_worker(
            server.port, channel_layout(subscribers, count), subscribers, latency=True
        ) as worker,
        connect(server.port) as pub,
    ):
        yield worker, pub


def latency_sample(report: SubscriberReport, start_ns: int, **extra: float) -> Sample:
    """The p50 and p99 publish-to-receive latency (us) of a run that started at start_ns."""
    latencies = sorted(report.latencies_ns)
    return Sample(
        (report.last_ns - start_ns) / 1e9,
        {"p50_us": percentile(latencies, 50) / 1e3, "p99_us": percentile(latencies, 99) / 1e3,
         **extra},
    )


def run_latency(server: Server, count: int, subscribers: int) -> Sample:
    """Publish at a fixed rate, unpipelined; return p50/p99 latency in us."""
    interval_ns = 1_000_000_000 // latency_rate(subscribers)
    with latency_clients(server, subscribers, count) as (worker, pub):
        reader = hiredis.Reader()
        start_ns = time.perf_counter_ns()
        for seq in range(count):
            delay_ns = start_ns + seq * interval_ns - time.perf_counter_ns()
            if delay_ns > 0:
                time.sleep(delay_ns / 1e9)
            pub.sendall(publish_command(seq, time.perf_counter_ns()))
            expect_integer_replies(pub, reader, 1, subscribers)
        report = worker.report()
    return latency_sample(report, start_ns)


# Publish rates (msg/s) of the latency-at-half-saturation cases, by S: half the rate
# at which the reference server (Redis) saturates with S subscribers, measured first.
HALF_SATURATION: dict[int, int] = {}
LATENCY_TICK_NS = 1_000_000  # the paced publisher sleeps at most this long


def measure_half_saturation(fanout_cases: dict[int, Case], server: Server,
                            profile: Profile) -> None:
    """Fill HALF_SATURATION from fan-out runs of a pipelining publisher on server: the
    median of one run per round, not a single run (single runs with S=1 gave 709,000 to
    951,000 PUBLISH/s across invocations, and the latency rows moved with them)."""
    for subs, case in fanout_cases.items():
        progress(f"measuring the saturation rate of {server.name} for S={subs}")
        count = calibrate(case, server, profile)
        rates = [case.run(server, count).metrics["msgs_per_s"] / subs
                 for _ in range(profile.rounds)]
        publishes = statistics.median(rates)
        HALF_SATURATION[subs] = max(1, int(publishes / 2))
        print(f"{server.name} saturates at {publishes:,.0f} PUBLISH/s with S={subs} "
              f"[{min(rates):,.0f}-{max(rates):,.0f}]: latency measured at "
              f"{HALF_SATURATION[subs]:,}/s", file=sys.stderr)


def drain_integer_replies(sock: socket.socket, reader: hiredis.Reader, expected: int) -> int:
    """Read the PUBLISH replies that have arrived, without waiting; return how many."""
    count = 0
    while True:
        try:
            data = sock.recv(262144, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return count
        if not data:
            raise BenchError("server closed the connection")
        reader.feed(data)
        while (reply := reader.gets()) is not False:
            if reply != expected:
                raise BenchError(f"PUBLISH replied {reply!r}, expected {expected}")
            count += 1


def run_paced_latency(server: Server, count: int, subscribers: int, seconds: float) -> Sample:
    """Offer PUBLISHes at half of Redis's saturation rate for S; return p50/p99 latency.

    Each message carries the time it was due, so a server that falls behind shows
    its queueing delay (no coordinated omission); what is due goes out in one write.
    """
    rate = HALF_SATURATION[subscribers]
    count = max(100, round(rate * seconds))
    interval_ns = 1_000_000_000 / rate
    with latency_clients(server, subscribers, count) as (worker, pub):
        reader = hiredis.Reader()
        replies = sent = 0
        start_ns = time.perf_counter_ns()
        while sent < count:
            now = time.perf_counter_ns()
            due = min(count, int((now - start_ns) / interval_ns) + 1)
            if due > sent:
                pub.sendall(b"".join(publish_command(seq, start_ns + int(seq * interval_ns))
                                     for seq in range(sent, due)))
                sent = due
            else:
                wait_ns = start_ns + sent * interval_ns - now
                time.sleep(min(wait_ns, LATENCY_TICK_NS) / 1e9)
            replies += drain_integer_replies(pub, reader, subscribers)
        expect_integer_replies(pub, reader, count - replies, subscribers)
        report = worker.report()
    return latency_sample(report, start_ns, rate=rate)


def percentile(sorted_values: list[int], pct: float) -> int:
    """Return the nearest-rank percentile of an ascending list."""
    rank = max(1, round(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def build_cases(profile: Profile) -> list[Case]:
    """Return every benchmark case, in the order they are run and shown."""
    rb_metrics = (Metric("rps", "req/s"), Metric("cpu_us", "srv CPU us/req"))
    pubsub_metrics = (Metric("msgs_per_s", "msg/s"), Metric("cpu_us", "srv CPU us/msg"))
    latency_metrics = (Metric("p50_us", "p50 us"), Metric("p99_us", "p99 us"))
    cases = [
        Case(
            name=f"{test}-P{pipeline}",
            group=test,
            label=f"{test.upper()} -P{pipeline}",
            metrics=rb_metrics,
            run=partial(run_redis_benchmark, test=test, pipeline=pipeline),
            count=1_000,
            sized=True,
        )
        for test in ("ping_inline", "ping_mbulk", "publish", "set", "get")
        for pipeline in (1, 16)
    ]
    cases += [
        Case(
            name=f"fanout-S{subs}",
            group="fanout",
            label=f"fan-out S={subs}",
            metrics=pubsub_metrics,
            run=partial(run_pubsub, load=fanout_load(subs)),
            count=max(50, 2_000 // subs),
            sized=True,
        )
        for subs in FANOUT_SUBSCRIBERS
    ]
    cases += [
        Case(
            name=f"fanout-S{NOPIPE_SUBSCRIBERS}-nopipe",
            group="nopipe",
            label=f"fan-out S={NOPIPE_SUBSCRIBERS} no pipeline",
            metrics=(Metric("msgs_per_s", "msg/s"),),
            run=partial(run_pubsub, load=fanout_load(NOPIPE_SUBSCRIBERS, batch=1)),
            count=50,
            sized=True,
        ),
        Case(
            name=f"channels-{MANY_CHANNELS}",
            group="channels",
            label=f"{MANY_CHANNELS:,} channels x1 sub, {MANY_CHANNELS_PUBLISHERS} pubs",
            metrics=pubsub_metrics,
            run=partial(run_pubsub, load=many_channels_load()),
            count=10 * MANY_CHANNELS,
            sized=True,
        ),
        Case(
            name=f"patterns-{PATTERNS}",
            group="patterns",
            label=f"{PATTERNS} patterns over {PATTERN_SUBSCRIBERS} subs",
            metrics=pubsub_metrics,
            run=partial(run_pubsub, load=patterns_load()),
            count=10 * PATTERNS,
            sized=True,
        ),
        Case(
            name=f"payload-{LARGE_PAYLOAD_SIZE // 1024}k",
            group="payload",
            label=f"payload {LARGE_PAYLOAD_SIZE // 1024} KiB S=1",
            metrics=(Metric("msgs_per_s", "msg/s"), Metric("mb_per_s", "payload MB/s")),
            run=partial(
                run_pubsub,
                load=replace(fanout_load(1), payload_size=LARGE_PAYLOAD_SIZE),
            ),
            count=200,
            sized=True,
        ),
    ]
    cases += [
        Case(
            name=f"latency-S{subs}",
            group="latency",
            label=f"latency S={subs} @{latency_rate(subs)}/s",
            metrics=latency_metrics,
            run=partial(run_latency, subscribers=subs),
            count=round(latency_rate(subs) * profile.latency_seconds),
            sized=False,
        )
        for subs in LATENCY_SUBSCRIBERS
    ]
    cases += [
        Case(
            name=f"latency-half-S{subs}",
            group="latency-half",
            label=f"latency S={subs} @half redis max",
            metrics=latency_metrics,
            run=partial(run_paced_latency, subscribers=subs,
                        seconds=profile.latency_seconds),
            count=0,  # from the rate measured at the start of the run
            sized=False,
        )
        for subs in LATENCY_SUBSCRIBERS
    ]
    return cases


def select_cases(cases: list[Case], only: str | None) -> list[Case]:
    """Keep the cases whose name or group is in the comma-separated ``only``."""
    if not only:
        return cases
    wanted = {token.strip() for token in only.split(",") if token.strip()}
    known = {c.name for c in cases} | {c.group for c in cases}
    if unknown := wanted - known:
        raise SystemExit(
            f"--only: unknown {', '.join(sorted(unknown))}; choose from {', '.join(sorted(known))}"
        )
    return [c for c in cases if c.name in wanted or c.group in wanted]


# --------------------------------------------------------------------------
# Orchestration


RUN_ERRORS = (BenchError, OSError, subprocess.SubprocessError)


def report_failure(what: str, server: Server, exc: Exception) -> str:
    """Print a failed run (with the server's log if it died); return the error."""
    error = f"{type(exc).__name__}: {exc}"
    progress("")
    print(f"ERROR {what} on {server.name}: {error}", file=sys.stderr)
    if server.proc.poll() is not None:
        print(f"{server.name} exited; its log ends with:\n{server.log_tail()}", file=sys.stderr)
    return error


def calibrate(case: Case, server: Server, profile: Profile) -> int:
    """Return a count for which ``case`` runs ~target_seconds on ``server``.

    Probes with growing counts until a run lasts at least probe_seconds, then
    extrapolates.  The probes double as a warm-up.
    """
    count = case.count
    while True:
        sample = case.run(server, count)
        if sample.elapsed >= profile.probe_seconds:
            break
        count = int(count * min(50.0, 2 * profile.probe_seconds / max(sample.elapsed, 1e-3)))
    return max(case.count, int(count * profile.target_seconds / sample.elapsed))


def run_case(case: Case, server: Server, round_no: int, count: int) -> Record:
    """Run a case once, turning a failure into a Record with an error."""
    record = Record(case.name, server.name, round_no, count)
    try:
        sample = case.run(server, count)
    except RUN_ERRORS as exc:
        record.error = report_failure(case.name, server, exc)
    else:
        record.elapsed = sample.elapsed
        record.metrics = sample.metrics
    return record


def run_all(cases: list[Case], servers: list[Server], profile: Profile) -> list[Record]:
    """Calibrate, then run every case on every server for each round."""
    counts: dict[tuple[str, str], int] = {}
    records: list[Record] = []
    for case in cases:
        for server in servers:
            if not case.sized:
                counts[case.name, server.name] = case.count
                continue
            progress(f"calibrating {case.name} on {server.name}")
            try:
                counts[case.name, server.name] = calibrate(case, server, profile)
            except RUN_ERRORS as exc:
                error = report_failure(f"calibrating {case.name}", server, exc)
                records.append(Record(case.name, server.name, 0, case.count, error=error))
    for round_no in range(1, profile.rounds + 1):
        order = servers if round_no % 2 else servers[::-1]
        for case in cases:
            for server in order:
                if (case.name, server.name) in counts:
                    progress(f"round {round_no}/{profile.rounds}: {case.name} on {server.name}")
                    count = counts[case.name, server.name]
                    records.append(run_case(case, server, round_no, count))
    progress("")
    return records


def progress(message: str) -> None:
    """Show a one-line progress message on stderr when it is a terminal."""
    if sys.stderr.isatty():
        print(f"\r\033[K{message}", end="", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Reporting


def values_of(records: list[Record], case: str, server: str, key: str) -> list[float]:
    """Return the successful figures of one metric of one case on one server."""
    return [
        r.metrics[key]
        for r in records
        if r.case == case and r.server == server and key in r.metrics
    ]


def fmt_number(value: float) -> str:
    """Format a figure with about three significant digits."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def fmt_summary(values: list[float]) -> str:
    """Format 'median [min-max]', or n/a when there are no figures."""
    if not values:
        return "n/a"
    mid = fmt_number(statistics.median(values))
    if len(values) == 1:
        return mid
    return f"{mid} [{fmt_number(min(values))}-{fmt_number(max(values))}]"


def render_table(cases: list[Case], records: list[Record]) -> str:
    """Render the comparison table of all cases and metrics."""
    header = (
        "benchmark",
        "unit",
        "respd median [min-max]",
        "redis median [min-max]",
        "respd/redis",
    )
    rows = [header]
    for case in cases:
        for metric in case.metrics:
            ours = values_of(records, case.name, "respd", metric.key)
            theirs = values_of(records, case.name, "redis", metric.key)
            ratio = (
                f"{statistics.median(ours) / statistics.median(theirs):.2f}"
                if ours and theirs and statistics.median(theirs)
                else "n/a"
            )
            rows.append((case.label, metric.unit, fmt_summary(ours), fmt_summary(theirs), ratio))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.append("(req/s, msg/s: higher is better; us: lower is better)")
    return "\n".join(lines)


def write_json(
    path: Path, args: argparse.Namespace, profile: Profile, records: list[Record]
) -> None:
    """Write the settings and every raw figure to ``path``."""
    data = {
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "profile": asdict(profile),
        "python": sys.version,
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "runs": [asdict(r) for r in records],
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, help="rounds per case (default 3, --quick 1)")
    parser.add_argument("--quick", action="store_true", help="one round of shorter runs")
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated case names or groups, e.g. fanout,ping_inline-P16",
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="write raw figures here")
    parser.add_argument("--respd-cmd", help=argparse.SUPPRESS)  # dev: replace respd's argv
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


def make_profile(args: argparse.Namespace) -> Profile:
    """Return the run-length settings chosen by --quick and --rounds."""
    if args.quick:
        return Profile(args.rounds or 1, target_seconds=1.0, latency_seconds=1.0, probe_seconds=0.1)
    return Profile(args.rounds or 3, target_seconds=1.5, latency_seconds=2.0, probe_seconds=0.2)


def exit_on_sigterm(signum: int, _frame: object) -> None:
    """Turn SIGTERM into SystemExit so that the servers are still stopped."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    """Start both servers, run the benchmarks, print the table."""
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    keep_heap()
    args = parse_args(argv)
    profile = make_profile(args)
    cases = select_cases(build_cases(profile), args.only)
    if not shutil.which("redis-benchmark"):
        print("redis-benchmark not found: skipping its cases", file=sys.stderr)
        cases = [c for c in cases if not c.name.startswith(("ping", "publish"))]
    commands = {"respd": shlex.split(args.respd_cmd) if args.respd_cmd else RESPD_ARGV}
    if shutil.which("redis-server"):
        commands["redis"] = REDIS_ARGV
    else:
        print("redis-server not found: measuring respd only", file=sys.stderr)
    servers: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="respd-bench-") as log_dir:
        try:
            for name, command in commands.items():
                servers.append(start_server(name, command, Path(log_dir)))
            if any(case.group == "latency-half" for case in cases):
                fanout = {c.name: c for c in build_cases(profile)}
                measure_half_saturation(
                    {subs: fanout[f"fanout-S{subs}"] for subs in LATENCY_SUBSCRIBERS},
                    servers[-1], profile)  # redis when installed, else respd
            records = run_all(cases, servers, profile)
        except BenchError as exc:
            print(f"ERROR: {exc}", file=sys.stderr)
            return 1
        finally:
            for server in servers:
                stop_server(server)
    print(render_table(cases, records))
    if args.json:
        write_json(args.json, args, profile, records)
    failures = [r for r in records if r.error]
    if failures:
        print(f"\n{len(failures)} run(s) failed, see errors above", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
