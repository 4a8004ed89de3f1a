"""The operator's view: command statistics, MONITOR, SLOWLOG and LATENCY.

What is counted, as Redis 7 counts it (call(), processCommand, afterErrorReply):
- A command that runs counts a call, and a failed call when its reply is an error; one
  refused before running (arity, NOAUTH, the subscribed-context rule, OOM, CROSSSLOT,
  an error while queuing in MULTI) counts a rejected call. Every error reply counts
  under its code (ERR, WRONGTYPE...) in INFO errorstats. The commands EXEC runs count
  as themselves; EXEC fails only when its own reply is an error.
- Durations (commandstats usec, INFO latencystats, LATENCY HISTOGRAM, SLOWLOG, and the
  latency monitor's `command` / `fast-command` events) are measured only while
  `latency-tracking` is yes or `latency-monitor-threshold` is set. Redis always
  measures; respd's default is off, because reading the clock around every command
  costs more than all the other bookkeeping of the dispatcher's fast path together.
- MONITOR shows each command after it ran, in the order commands ran (inside a
  transaction: its commands, then EXEC), except administrative ones; the passwords of
  AUTH and HELLO show as "(redacted)". A monitor may not use keyspace commands.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import TYPE_CHECKING

from resp.encode import OK, array, bulk, bulk_array, error, integer, map_, verbatim
from resp.parser import _parse_int as parse_integer
from server.commands import TABLE, Command, command, container, find_command, help_reply

if TYPE_CHECKING:
    from server.connection import Connection
    from server.serve import Server

SLOWLOG_MAX_ARGS = 32  # arguments kept per SLOWLOG entry (the last says how many more)
SLOWLOG_MAX_ARG_BYTES = 128  # bytes kept per argument
LATENCY_SAMPLES = 160  # samples kept per latency event, one per second at most
HISTOGRAM_MAX_NS = 1_000_000_000  # durations above a second count as a second


# --- durations: Redis's HdrHistogram (1 ns to 1 s, 2 significant figures) ---------------

def _bucket(ns: int) -> int:
    """The power-of-two scale of a duration's equivalence range (0 below 256 ns)."""
    return max(0, (ns | 255).bit_length() - 8)


def lowest_equivalent(ns: int) -> int:
    """The smallest duration the histogram cannot tell apart from ns."""
    shift = _bucket(ns)
    return (ns >> shift) << shift


def highest_equivalent(ns: int) -> int:
    """The largest duration the histogram cannot tell apart from ns."""
    return lowest_equivalent(ns) + (1 << _bucket(ns)) - 1


class Histogram:
    """Command durations in nanoseconds, kept as Redis keeps them (HdrHistogram with two
    significant figures), so percentiles and LATENCY HISTOGRAM read as Redis's."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}  # lowest equivalent value -> durations recorded
        self.total = 0

    def record(self, ns: int) -> None:
        value = lowest_equivalent(min(max(ns, 1), HISTOGRAM_MAX_NS))
        self.counts[value] = self.counts.get(value, 0) + 1
        self.total += 1

    def percentile(self, percent: float) -> int:
        """hdr_value_at_percentile: the highest equivalent of the value reaching percent."""
        wanted = max(1, int(percent / 100 * self.total + 0.5))
        seen = 0
        for value in sorted(self.counts):
            seen += self.counts[value]
            if seen >= wanted:
                return highest_equivalent(value)
        return 0

    def cumulative_usec(self) -> list[tuple[int, int]]:
        """LATENCY HISTOGRAM's buckets: at 1024 ns and each power of two after, in
        microseconds, the count of durations up to there (when it grew)."""
        steps = []
        values = sorted(self.counts)
        seen = 0
        index = 0
        level = 1024
        while seen < self.total:
            grown = seen
            while index < len(values) and values[index] <= level:
                seen += self.counts[values[index]]
                index += 1
            if seen > grown:
                steps.append((highest_equivalent(level) // 1000, seen))
            level *= 2
        return steps


# --- what the server keeps --------------------------------------------------------------

class SlowlogEntry:
    """One command slower than slowlog-log-slower-than."""

    __slots__ = ("addr", "args", "id", "micros", "name", "when")

    def __init__(self, entry_id: int, when: int, micros: int, args: list[bytes], *,
                 addr: str, name: bytes) -> None:
        self.id = entry_id
        self.when = when  # Unix time, seconds
        self.micros = micros
        self.args = args  # already cut to Redis's limits, passwords redacted
        self.addr = addr
        self.name = name


class Stats:
    """Per-command counters, error counts, durations, the slow log, latency events and
    the MONITOR clients of one server."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.calls: defaultdict[Command, int] = defaultdict(int)
        self.failed_calls: defaultdict[Command, int] = defaultdict(int)
        self.rejected_calls: defaultdict[Command, int] = defaultdict(int)
        self.nanoseconds: defaultdict[Command, int] = defaultdict(int)  # total duration
        self.histograms: dict[Command, Histogram] = {}
        self.errors: dict[bytes, int] = {}  # error code -> replies, in first-seen order
        self.total_errors = 0
        self.timing = False  # durations are measured (see the module's docstring)
        self.slowlog: list[SlowlogEntry] = []  # newest first
        self.slowlog_next = 0  # the next entry's id
        self.latency: dict[str, list[tuple[int, int]]] = {}  # event -> (second, ms) samples
        self.latency_max: dict[str, int] = {}  # event -> worst ms ever
        self.monitors: dict[Connection, None] = {}  # clients in MONITOR mode
        self.in_exec = False  # EXEC is running its queued commands

    def configure(self) -> None:
        """Take the parameters in force (at start and after CONFIG SET)."""
        config = self.server.config
        self.timing = config["latency-tracking"] or config["latency-monitor-threshold"] > 0
        del self.slowlog[max(0, config["slowlog-max-len"]):]

    def reset(self) -> None:
        """CONFIG RESETSTAT: the counters and durations (not the slow log, as in Redis)."""
        for counter in (self.calls, self.failed_calls, self.rejected_calls, self.nanoseconds):
            counter.clear()
        self.histograms.clear()
        self.errors.clear()
        self.total_errors = 0

    def clear(self) -> None:
        """Everything a new server starts without: counters, slow log, latency events."""
        self.reset()
        self.slowlog.clear()
        self.latency.clear()
        self.latency_max.clear()

    # --- counting -----------------------------------------------------------------------

    def error_reply(self, reply: bytes) -> None:
        """Count an error reply under its code (the first word after the `-`)."""
        code = reply[1:reply.find(b" ")] if b" " in reply else reply[1:].rstrip(b"\r\n")
        self.errors[code] = self.errors.get(code, 0) + 1
        self.total_errors += 1

    def failed(self, entry: Command, reply: bytes) -> None:
        """A command ran and replied an error."""
        self.failed_calls[entry] += 1
        self.error_reply(reply)

    def rejected(self, args: list[bytes], reply: bytes) -> None:
        """A command was refused before running; it counts if it names a known command."""
        self.error_reply(reply)
        entry = TABLE.get(args[0].lower())
        if entry is not None and entry.subcommands is not None and len(args) > 1:
            entry = entry.subcommands.get(args[1].lower())
        if entry is not None and entry.handler is not None:
            self.rejected_calls[entry] += 1

    def ran(self, conn: Connection, entry: Command, args: list[bytes], reply: bytes | None,
            nanoseconds: int | None) -> None:
        """Account for a command that ran (durations only when measured), and show it to
        the monitors."""
        self.calls[entry] += 1
        if reply is not None and reply[0] == 45:  # b"-"
            self.failed(entry, reply)
        if nanoseconds is not None:
            self._timed(conn, entry, args, nanoseconds)
        if self.monitors and "admin" not in entry.flags:
            self.feed_monitors(conn, args)

    def _timed(self, conn: Connection, entry: Command, args: list[bytes],
               nanoseconds: int) -> None:
        """Durations: commandstats, histograms, the slow log, latency events."""
        config = self.server.config
        self.nanoseconds[entry] += nanoseconds
        if config["latency-tracking"]:
            histogram = self.histograms.get(entry)
            if histogram is None:
                histogram = self.histograms[entry] = Histogram()
            histogram.record(nanoseconds)
        micros = nanoseconds // 1000
        slower_than = config["slowlog-log-slower-than"]
        if 0 <= slower_than <= micros and "skip_slowlog" not in entry.flags \
                and config["slowlog-max-len"] > 0:
            self._log_slow(conn, args, micros)
        threshold = config["latency-monitor-threshold"]
        if threshold and micros // 1000 >= threshold:
            self._latency_sample("fast-command" if "fast" in entry.flags else "command",
                                 micros // 1000)

    def _log_slow(self, conn: Connection, args: list[bytes], micros: int) -> None:
        """Add an entry to the slow log, arguments cut and passwords hidden as Redis does."""
        shown = [arg if len(arg) <= SLOWLOG_MAX_ARG_BYTES else
                 arg[:SLOWLOG_MAX_ARG_BYTES]
                 + b"... (%d more bytes)" % (len(arg) - SLOWLOG_MAX_ARG_BYTES)
                 for arg in redacted_args(args)]
        if len(shown) > SLOWLOG_MAX_ARGS:
            shown[SLOWLOG_MAX_ARGS - 1:] = [
                b"... (%d more arguments)" % (len(shown) - SLOWLOG_MAX_ARGS + 1)]
        self.slowlog.insert(0, SlowlogEntry(self.slowlog_next, int(time.time()), micros,
                                            shown, addr=conn.addr, name=conn.name))
        self.slowlog_next += 1
        del self.slowlog[self.server.config["slowlog-max-len"]:]

    def _latency_sample(self, event: str, ms: int) -> None:
        """Record a latency spike; spikes in the same second keep the worst (Redis)."""
        now = int(time.time())
        samples = self.latency.setdefault(event, [])
        if samples and samples[-1][0] == now:
            samples[-1] = (now, max(samples[-1][1], ms))
        else:
            samples.append((now, ms))
            del samples[:-LATENCY_SAMPLES]
        self.latency_max[event] = max(self.latency_max.get(event, 0), ms)

    # --- MONITOR --------------------------------------------------------------------

    def feed_monitors(self, conn: Connection, args: list[bytes]) -> None:
        """Show a command that ran to every monitor, as Redis formats it."""
        now = time.time_ns() // 1000
        line = b"+%d.%06d [%d %b] %b\r\n" % (
            now // 1_000_000, now % 1_000_000, conn.db, conn.addr.encode(),
            b" ".join(_quoted(arg) for arg in redacted_args(args)))
        touched = self.server.hub.touched
        for monitor in self.monitors:
            monitor.outbox.append(line)
            monitor.outbox_size += len(line)
            touched[monitor] = None

    def refuses_monitor(self, conn: Connection, entry: Command) -> bool:
        """A monitor may not use commands that read or write the keyspace (Redis treats
        it as a replica)."""
        return conn in self.monitors and (
            "readonly" in entry.flags or "write" in entry.flags
            or entry.name in ("publish", "spublish"))

    # --- INFO ---------------------------------------------------------------------------

    def _measured(self) -> list[Command]:
        """Commands with something to report, in the command table's order."""
        seen = self.calls.keys() | self.failed_calls.keys() | self.rejected_calls.keys()
        return [cmd for top in TABLE.values()
                for cmd in (top, *(top.subcommands or {}).values()) if cmd in seen]

    def commandstats(self) -> list[tuple[str, str]]:
        """INFO commandstats: calls, time and refusals of each command used."""
        lines = []
        for cmd in self._measured():
            calls = self.calls[cmd]
            usec = self.nanoseconds[cmd] / 1000
            per_call = usec / calls if calls else 0.0
            lines.append((f"cmdstat_{cmd.name}",
                          (f"calls={calls},usec={int(usec)},usec_per_call={per_call:.2f},"
                           f"rejected_calls={self.rejected_calls[cmd]},"
                           f"failed_calls={self.failed_calls[cmd]}")))
        return lines

    def errorstats(self) -> list[tuple[str, str]]:
        """INFO errorstats: error replies by code."""
        return [(f"errorstat_{code.decode(errors='replace')}", f"count={count}")
                for code, count in self.errors.items()]

    def latencystats(self) -> list[tuple[str, str]]:
        """INFO latencystats: the configured percentiles of each command's durations."""
        percentiles = self.server.config["latency-tracking-info-percentiles"]
        lines = []
        for cmd in self._measured():
            histogram = self.histograms.get(cmd)
            if histogram is None:
                continue
            values = ",".join(f"p{_trimmed(p)}={histogram.percentile(p) / 1000:.3f}"
                              for p in percentiles)
            lines.append((f"latency_percentiles_usec_{cmd.name}", values))
        return lines


def _trimmed(value: float) -> str:
    """A percentile as Redis names it: 50, 99, 99.9."""
    return f"{value:f}".rstrip("0").rstrip(".")


def redacted_args(args: list[bytes]) -> list[bytes]:
    """A command's arguments as MONITOR and SLOWLOG show them: no passwords."""
    name = args[0].lower()
    if name == b"auth":
        return [args[0], *[b"(redacted)"] * (len(args) - 1)]
    if name == b"hello":
        shown = list(args)
        for i in range(2, len(args) - 2):
            if args[i].lower() == b"auth":
                shown[i + 1] = shown[i + 2] = b"(redacted)"
                break
        return shown
    return args


def _quoted(arg: bytes) -> bytes:
    """An argument as Redis's sdscatrepr quotes it: C escapes, \\xHH for the rest."""
    out = bytearray(b'"')
    for byte in arg:
        if byte in (0x5C, 0x22):  # \ and "
            out += b"\\" + bytes((byte,))
        elif byte in _ESCAPES:
            out += _ESCAPES[byte]
        elif 0x20 <= byte <= 0x7E:
            out.append(byte)
        else:
            out += b"\\x%02x" % byte
    out += b'"'
    return bytes(out)


_ESCAPES = {0x0A: b"\\n", 0x0D: b"\\r", 0x09: b"\\t", 0x07: b"\\a", 0x08: b"\\b"}


# --- MONITOR --------------------------------------------------------------------------

# MONITOR
@command("monitor", 1, "admin noscript loading stale", "admin slow dangerous", group="server",
         since="1.0.0", summary="Listens for all requests received by the server in real-time.")
def monitor(conn: Connection, args: list[bytes]) -> bytes | None:
    stats = conn.server.stats
    if stats.in_exec:
        return error("MONITOR isn't allowed for DENY BLOCKING client")
    if conn in stats.monitors:
        return None  # Redis ignores a second MONITOR, without a reply
    stats.monitors[conn] = None
    conn.server.update_hooks()
    return OK


def stop_monitoring(conn: Connection) -> None:
    """RESET or disconnect: the client no longer sees the commands of others."""
    monitors = conn.server.stats.monitors
    if conn in monitors:
        del monitors[conn]
        conn.server.update_hooks()


# --- SLOWLOG --------------------------------------------------------------------------

container("slowlog", "", "slow", group="server", since="2.2.12",
          summary="A container for slow log commands.", help_lines=(
              "GET [<count>]",
              "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
              "    Entries are made of:",
              "    id, timestamp, time in microseconds, arguments array, client IP and port,",
              "    client name",
              "LEN", "    Return the length of the slowlog.",
              "RESET", "    Reset the slowlog.",
          ))
command("slowlog|help", 2, "loading stale", "slow", group="server", since="6.2.0",
        summary="Show helpful text about the different subcommands")(help_reply)


# SLOWLOG GET [count]
@command("slowlog|get", -2, "admin loading stale", "admin slow dangerous", group="server",
         since="2.2.12", summary="Returns the slow log's entries.")
def slowlog_get(conn: Connection, args: list[bytes]) -> bytes:
    if len(args) > 3:
        return error(b"unknown subcommand or wrong number of arguments for '%b'. Try SLOWLOG "
                     b"HELP." % args[1][:128])
    count = 10
    if len(args) == 3:
        count = parse_integer(args[2])
        if count is None or count < -1:
            return error("count should be greater than or equal to -1")
    entries = conn.server.stats.slowlog
    if count != -1:
        entries = entries[:count]
    return array(array([integer(e.id), integer(e.when), integer(e.micros),
                        bulk_array(e.args), bulk(e.addr.encode()), bulk(e.name)])
                 for e in entries)


# SLOWLOG LEN
@command("slowlog|len", 2, "admin loading stale", "admin slow dangerous", group="server",
         since="2.2.12", summary="Returns the number of entries in the slow log.")
def slowlog_len(conn: Connection, args: list[bytes]) -> bytes:
    return integer(len(conn.server.stats.slowlog))


# SLOWLOG RESET
@command("slowlog|reset", 2, "admin loading stale", "admin slow dangerous", group="server",
         since="2.2.12", summary="Clears all entries from the slow log.")
def slowlog_reset(conn: Connection, args: list[bytes]) -> bytes:
    conn.server.stats.slowlog.clear()
    return OK


# --- LATENCY --------------------------------------------------------------------------

container("latency", "", "slow", group="server", since="2.8.13",
          summary="A container for latency diagnostics commands.", help_lines=(
              "DOCTOR", "    Return a human readable latency analysis report.",
              "HISTORY <event>", "    Return time-latency samples for the <event> class.",
              "LATEST", "    Return the latest latency samples for all events.",
              "RESET [<event> ...]", "    Reset latency data of one or more <event> classes.",
              "    (default: reset all data for all event classes)",
              "HISTOGRAM [COMMAND ...]",
              ("    Return a cumulative distribution of latencies in the format of a "
               "histogram for the specified command names."),
              "    If no commands are specified then all histograms are replied.",
          ))
command("latency|help", 2, "loading stale", "slow", group="server", since="2.8.13",
        summary="Returns helpful text about the different subcommands.")(help_reply)

_LATENCY_FLAGS = "admin noscript loading stale"
_LATENCY_CATEGORIES = "admin slow dangerous"


# LATENCY LATEST
@command("latency|latest", 2, _LATENCY_FLAGS, _LATENCY_CATEGORIES, group="server",
         since="2.8.13", summary="Returns the latest latency samples for all events.")
def latency_latest(conn: Connection, args: list[bytes]) -> bytes:
    stats = conn.server.stats
    return array(array([bulk(event.encode()), integer(samples[-1][0]), integer(samples[-1][1]),
                        integer(stats.latency_max[event])])
                 for event, samples in stats.latency.items())


# LATENCY HISTORY event
@command("latency|history", 3, _LATENCY_FLAGS, _LATENCY_CATEGORIES, group="server",
         since="2.8.13", summary="Returns timestamp-latency samples for an event.")
def latency_history(conn: Connection, args: list[bytes]) -> bytes:
    samples = conn.server.stats.latency.get(args[2].decode(errors="replace"), [])
    return array(array([integer(when), integer(ms)]) for when, ms in samples)


# LATENCY RESET [event ...]
@command("latency|reset", -2, _LATENCY_FLAGS, _LATENCY_CATEGORIES, group="server",
         since="2.8.13", summary="Resets the latency data for one or more events.")
def latency_reset(conn: Connection, args: list[bytes]) -> bytes:
    stats = conn.server.stats
    events = [a.decode(errors="replace") for a in args[2:]] or list(stats.latency)
    reset = 0
    for event in events:
        if stats.latency.pop(event, None) is not None:
            stats.latency_max.pop(event, None)
            reset += 1
    return integer(reset)


# LATENCY HISTOGRAM [command ...]
@command("latency|histogram", -2, _LATENCY_FLAGS, _LATENCY_CATEGORIES, group="server",
         since="7.0.0", summary="Returns the cumulative distribution of latencies of a subset "
                                "or all commands.")
def latency_histogram(conn: Connection, args: list[bytes]) -> bytes:
    stats = conn.server.stats
    proto = conn.proto
    if len(args) > 2:
        wanted = [find_command(name) for name in args[2:]]
        chosen = [cmd for cmd in wanted if cmd is not None and cmd in stats.histograms]
    else:
        chosen = [cmd for cmd in stats._measured() if cmd in stats.histograms]
    pairs = []
    for cmd in chosen:
        histogram = stats.histograms[cmd]
        buckets = map_([(integer(usec), integer(count))
                        for usec, count in histogram.cumulative_usec()], proto)
        pairs.append((bulk(cmd.name.encode()),
                      map_([(bulk(b"calls"), integer(histogram.total)),
                            (bulk(b"histogram_usec"), buckets)], proto)))
    return map_(pairs, proto)


# LATENCY DOCTOR
@command("latency|doctor", 2, _LATENCY_FLAGS, _LATENCY_CATEGORIES, group="server",
         since="2.8.13", summary="Returns a human-readable latency analysis report.")
def latency_doctor(conn: Connection, args: list[bytes]) -> bytes:
    return verbatim(_doctor(conn.server).encode(), conn.proto)


def _doctor(srv: Server) -> str:
    """Redis's latency report, for the events respd records (command, fast-command)."""
    stats = srv.stats
    config = srv.config
    threshold = config["latency-monitor-threshold"]
    if not stats.latency and not threshold:
        return ("I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this "
                "Redis instance. You may use \"CONFIG SET latency-monitor-threshold "
                "<milliseconds>.\" in order to enable it. If we weren't in a deep space "
                "mission I'd suggest to take a look at https://redis.io/topics/latency-monitor."
                "\n")
    if not stats.latency:
        return ("Dave, no latency spike was observed during the lifetime of this Redis "
                "instance, not in the slightest bit. I honestly think you ought to sit down "
                "calmly, take a stress pill, and think things over.\n")
    report = ("Dave, I have observed latency spikes in this Redis instance. You don't mind "
              "talking about it, do you Dave?\n\n")
    advice = {"slowlog_enabled": False, "slowlog_tuning": False, "slowlog_inspect": False,
              "scheduler": False, "large_objects": False}
    now = int(time.time())
    for number, (event, samples) in enumerate(stats.latency.items(), 1):
        values = [ms for _, ms in samples]
        average = sum(values) // len(values)
        deviation = sum(abs(ms - average) for ms in values) // len(values)
        period = max(1, now - samples[0][0])
        report += (f"{number}. {event}: {len(values)} latency spikes (average {average}ms, "
                   f"mean deviation {deviation}ms, period {period / len(values):.2f} sec). "
                   f"Worst all time event {stats.latency_max[event]}ms.\n")
        if event == "command":
            slower_than = config["slowlog-log-slower-than"]
            if slower_than < 0 or config["slowlog-max-len"] == 0:
                advice["slowlog_enabled"] = True
            elif slower_than // 1000 > threshold:
                advice["slowlog_tuning"] = True
            advice["slowlog_inspect"] = advice["large_objects"] = True
        else:
            advice["scheduler"] = True
    report += "\nI have a few advices for you:\n\n"
    if advice["slowlog_enabled"]:
        report += ("- There are latency issues with potentially slow commands you are using. "
                   "Try to enable the Slow Log Redis feature using the command 'CONFIG SET "
                   f"slowlog-log-slower-than {threshold * 1000}'. If the Slow log is disabled "
                   "Redis is not able to log slow commands execution for you.\n")
    if advice["slowlog_tuning"]:
        report += ("- Your current Slow Log configuration only logs events that are slower "
                   "than your configured latency monitor threshold. Please use 'CONFIG SET "
                   f"slowlog-log-slower-than {threshold * 1000}'.\n")
    if advice["slowlog_inspect"]:
        report += ("- Check your Slow Log to understand what are the commands you are running "
                   "which are too slow to execute. Please check "
                   "https://redis.io/commands/slowlog for more information.\n")
    if advice["scheduler"]:
        report += ("- The system is slow to execute Redis code paths not containing system "
                   "calls. This usually means the system does not provide Redis CPU time to "
                   "run for long periods. You should try to:\n"
                   "  1) Lower the system load.\n"
                   "  2) Use a computer / VM just for Redis if you are running other software "
                   "in the same system.\n"
                   "  3) Check if you have a \"noisy neighbour\" problem.\n"
                   "  4) Check with 'redis-cli --intrinsic-latency 100' what is the intrinsic "
                   "latency in your system.\n"
                   "  5) Check if the problem is allocator-related by recompiling Redis with "
                   "MALLOC=libc, if you are using Jemalloc. However this may create "
                   "fragmentation problems.\n")
    if advice["large_objects"]:
        report += ("- Deleting, expiring or evicting (because of maxmemory policy) large "
                   "objects is a blocking operation. If you have very large objects that are "
                   "often deleted, expired, or evicted, try to fragment those objects into "
                   "multiple smaller objects.\n")
    return report

