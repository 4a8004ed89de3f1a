"""Server commands: COMMAND, INFO, CONFIG, TIME, DBSIZE, SHUTDOWN."""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from typing import TYPE_CHECKING

from resp.encode import (
    OK,
    array,
    bulk,
    bulk_array,
    error,
    integer,
    map_,
    null,
    set_,
    verbatim,
)
from resp.parser import _parse_int as parse_integer
from server.commands import TABLE, Command, command, container, find_command, help_reply
from server.commands.strings import NOT_INTEGER, SYNTAX
from server.config import ConfigError
from server.keyspace import cost

if TYPE_CHECKING:
    from server.connection import Connection


# --- COMMAND -----------------------------------------------------------------------

def _entry(cmd: Command, proto: int) -> bytes:
    """A command's COMMAND INFO entry: name, arity, flags, keys, categories, tips, specs, subs."""
    first, last, step = cmd.keys
    subs = list(cmd.subcommands.values()) if cmd.subcommands else []
    return array([
        bulk(cmd.name.encode()),
        integer(cmd.arity),
        set_([b"+%s\r\n" % f.encode() for f in cmd.flags], proto),
        integer(first), integer(last), integer(step),
        set_([b"+@%s\r\n" % c.encode() for c in cmd.categories], proto),
        b"*0\r\n",
        b"*0\r\n",
        array(_entry(sub, proto) for sub in subs),
    ])


def _docs(cmd: Command, proto: int) -> bytes:
    """A command's COMMAND DOCS map: summary, since, group, and its subcommands' docs."""
    fields = [
        (bulk(b"summary"), bulk(cmd.summary.encode())),
        (bulk(b"since"), bulk(cmd.since.encode())),
        (bulk(b"group"), bulk(cmd.group.encode())),
    ]
    if cmd.subcommands:
        fields.append((bulk(b"subcommands"), map_(
            [(bulk(s.name.encode()), _docs(s, proto)) for s in cmd.subcommands.values()],
            proto)))
    return map_(fields, proto)


# COMMAND
@command("command", -1, "loading stale", "slow connection", group="server", since="2.8.13",
         summary="Returns detailed information about all commands.")
def command_(conn: Connection, args: list[bytes]) -> bytes:
    return array(_entry(cmd, conn.proto) for cmd in TABLE.values())


TABLE[b"command"].subcommands = {}
TABLE[b"command"].help_lines = (
    "(no subcommand)", "    Return details about all Redis commands.",
    "COUNT", "    Return the total number of commands in this Redis server.",
    "LIST", "    Return a list of all commands in this Redis server.",
    "INFO [<command-name> ...]",
    "    Return details about multiple Redis commands.",
    "DOCS [<command-name> ...]",
    "    Return documentation details about multiple Redis commands.",
)
command("command|help", 2, "loading stale", "slow connection", group="server", since="5.0.0",
        summary="Returns helpful text about the different subcommands.")(help_reply)


# COMMAND COUNT
@command("command|count", 2, "loading stale", "slow connection", group="server",
         since="2.8.13", summary="Returns a count of commands.")
def command_count(conn: Connection, args: list[bytes]) -> bytes:
    return integer(len(TABLE))


# COMMAND LIST [FILTERBY ...]
@command("command|list", -2, "loading stale", "slow connection", group="server", since="7.0.0",
         summary="Returns a list of command names.")
def command_list(conn: Connection, args: list[bytes]) -> bytes:
    names = []
    for cmd in TABLE.values():
        names.append(cmd.name.encode())
        names.extend(sub.name.encode() for sub in (cmd.subcommands or {}).values())
    return bulk_array(names)


# COMMAND INFO [command-name ...]
@command("command|info", -2, "loading stale", "slow connection", group="server",
         since="2.8.13", summary="Returns information about one, multiple or all commands.")
def command_info(conn: Connection, args: list[bytes]) -> bytes:
    if len(args) == 2:
        return command_(conn, args)
    found = [find_command(name) for name in args[2:]]
    return array(_entry(c, conn.proto) if c else null(conn.proto) for c in found)


# COMMAND DOCS [command-name ...]
@command("command|docs", -2, "loading stale", "slow connection", group="server",
         since="7.0.0", summary="Returns documentary information about one, multiple or all "
                                "commands.")
def command_docs(conn: Connection, args: list[bytes]) -> bytes:
    names = args[2:] or [cmd.name.encode() for cmd in TABLE.values()]
    found = [(n.lower(), find_command(n)) for n in names]
    return map_([(bulk(n), _docs(c, conn.proto)) for n, c in found if c], conn.proto)


# --- INFO --------------------------------------------------------------------------

def _human(n: int) -> str:
    """Redis's human-readable byte counts: 1.23M."""
    for unit, size in (("G", 1024**3), ("M", 1024**2), ("K", 1024)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n}B"


def _rss() -> int:
    """The process's resident memory in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _sections(conn: Connection) -> dict[str, list[tuple[str, object]]]:
    """Every INFO section, in Redis's order, as (field, value) pairs."""
    from server.serve import REDIS_VERSION, VERSION

    srv = conn.server
    config = srv.config
    uptime = int(time.time() - srv.started)
    clients = srv.clients.values()
    rss = _rss()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cluster = 1 if config["cluster-enabled"] else 0
    ks = srv.keyspace
    keyspace = [
        (f"db{i}", (f"keys={len(db.data)},expires={len(db.expires)},"
                    f"avg_ttl={ks.avg_ttl(db)},subexpiry=0"))
        for i, db in enumerate(ks.dbs) if db.data
    ]
    peak = max(usage.ru_maxrss * 1024, rss)
    return {
        "server": [
            ("redis_version", REDIS_VERSION), ("respd_version", VERSION),
            ("redis_git_sha1", "00000000"), ("redis_git_dirty", 0), ("redis_build_id", "0"),
            ("redis_mode", "cluster" if cluster else "standalone"),
            ("os", f"{platform.system()} {platform.release()} {platform.machine()}"),
            ("arch_bits", 64), ("multiplexing_api", "epoll"),
            ("python_version", platform.python_version()),
            ("process_id", os.getpid()), ("run_id", srv.run_id), ("tcp_port", srv.port),
            ("server_time_usec", int(time.time() * 1e6)),
            ("uptime_in_seconds", uptime), ("uptime_in_days", uptime // 86400),
            ("hz", config["hz"]), ("configured_hz", config["hz"]),
            ("executable", sys.argv[0] and os.path.abspath(sys.argv[0])),
            ("config_file", config.file),
        ],
        "clients": [
            ("connected_clients", len(srv.clients)), ("cluster_connections", 0),
            ("maxclients", config["maxclients"]),
            ("client_recent_max_input_buffer", max((c.parser.pending for c in clients),
                                                   default=0)),
            ("client_recent_max_output_buffer", max((c.outbox_size for c in clients),
                                                    default=0)),
            ("blocked_clients", 0), ("tracking_clients", len(srv.tracking.clients)),
            ("pubsub_clients", sum(1 for c in clients if c.subscribed)),
            ("watching_clients", sum(1 for c in clients if c.watching)),
            ("clients_in_timeout_table", 0),
        ],
        # used_memory is the keyspace's accounted bytes, what maxmemory bounds (see
        # server.keyspace.cost); the interpreter and client buffers show in used_memory_rss.
        "memory": [
            ("used_memory", ks.used), ("used_memory_human", _human(ks.used)),
            ("used_memory_rss", rss), ("used_memory_rss_human", _human(rss)),
            ("used_memory_peak", peak), ("used_memory_peak_human", _human(peak)),
            ("used_memory_dataset", ks.used),
            ("maxmemory", config["maxmemory"]), ("maxmemory_human", _human(config["maxmemory"])),
            ("maxmemory_policy", config["maxmemory-policy"]),
            ("mem_allocator", "libc"),
        ],
        "persistence": [
            ("loading", 0), ("async_loading", 0), ("rdb_changes_since_last_save", 0),
            ("rdb_bgsave_in_progress", 0), ("rdb_last_bgsave_status", "ok"),
            ("aof_enabled", 0), ("aof_rewrite_in_progress", 0),
        ],
        "stats": [
            ("total_connections_received", srv.connections_received),
            ("total_commands_processed", srv.commands_processed),
            ("instantaneous_ops_per_sec", 0),
            ("rejected_connections", srv.rejected_connections),
            ("expired_keys", ks.expired_keys), ("evicted_keys", ks.evicted_keys),
            ("keyspace_hits", ks.hits), ("keyspace_misses", ks.misses),
            ("pubsub_channels", len(srv.hub.channels)),
            ("pubsub_patterns", len(srv.hub.patterns)),
            ("pubsubshard_channels", len(srv.hub.shard_channels)),
            *srv.tracking.stats(),
            ("total_error_replies", srv.stats.total_errors),
            ("client_query_buffer_limit_disconnections", srv.query_limit_disconnections),
            ("client_output_buffer_limit_disconnections", srv.output_limit_disconnections),
        ],
        "replication": [("role", "master"), ("connected_slaves", 0),
                        ("master_replid", srv.run_id[:40]), ("master_repl_offset", 0)],
        "cpu": [("used_cpu_sys", f"{usage.ru_stime:.6f}"),
                ("used_cpu_user", f"{usage.ru_utime:.6f}")],
        "modules": [],
        "commandstats": srv.stats.commandstats(),
        "errorstats": srv.stats.errorstats(),
        "latencystats": srv.stats.latencystats(),
        "cluster": [("cluster_enabled", cluster)],
        "keyspace": keyspace,
    }


# Redis prints sections in this order whatever order they were asked in.
_SECTION_ORDER = ("server", "clients", "memory", "persistence", "stats", "replication", "cpu",
                  "modules", "commandstats", "errorstats", "latencystats", "cluster", "keyspace")
_NOT_DEFAULT = frozenset(("commandstats", "latencystats"))
_TITLES = {"cpu": "CPU", "modules": "Modules", "errorstats": "Errorstats"}


# INFO [section [section ...]]
@command("info", -1, "loading stale", "slow dangerous", group="server", since="1.0.0",
         summary="Returns information and statistics about the server.")
def info(conn: Connection, args: list[bytes]) -> bytes:
    sections = _sections(conn)
    wanted = {a.decode(errors="replace").lower() for a in args[1:]}
    if wanted & {"all", "everything"}:
        wanted.update(_SECTION_ORDER)
    elif not wanted or "default" in wanted:
        wanted.update(s for s in _SECTION_ORDER if s not in _NOT_DEFAULT)
    blocks = []
    for name in (s for s in _SECTION_ORDER if s in wanted):
        title = _TITLES.get(name, name.capitalize())
        lines = "".join(f"{k}:{v}\r\n" for k, v in sections[name])
        blocks.append(f"# {title}\r\n{lines}")
    return verbatim("\r\n".join(blocks).encode(), conn.proto)


# --- CONFIG ------------------------------------------------------------------------

container("config", "", "slow", group="server", since="2.0.0",
          summary="A container for server configuration commands.", help_lines=(
              "GET <pattern>",
              "    Return parameters matching the glob-like <pattern> and their values.",
              "SET <directive> <value>", "    Set the configuration <directive> to <value>.",
              "RESETSTAT", "    Reset statistics reported by the INFO command.",
              "REWRITE", "    Rewrite the configuration file.",
          ))
command("config|help", 2, "loading stale", "slow", group="server", since="5.0.0",
        summary="Returns helpful text about the different subcommands.")(help_reply)


# CONFIG GET parameter [parameter ...]
@command("config|get", -3, "admin noscript loading stale", "admin slow dangerous",
         group="server", since="2.0.0", summary="Returns the effective values of configuration "
                                                 "parameters.")
def config_get(conn: Connection, args: list[bytes]) -> bytes:
    pairs = conn.server.config.get(args[2:])
    return map_([(bulk(k.encode()), bulk(v.encode(errors="surrogateescape")))
                 for k, v in pairs], conn.proto)


# CONFIG SET parameter value [parameter value ...]
@command("config|set", -4, "admin noscript loading stale", "admin slow dangerous",
         group="server", since="2.0.0", summary="Sets configuration parameters in-flight.")
def config_set(conn: Connection, args: list[bytes]) -> bytes:
    if len(args) % 2:
        return error("syntax error")
    srv = conn.server
    try:
        srv.config.set(list(zip(args[2::2], args[3::2], strict=True)))
    except ConfigError as exc:
        return error(str(exc))
    srv.keyspace.configure(srv.config)
    srv.stats.configure()
    srv.update_hooks()
    # Like Redis, a lower maxmemory evicts at once (and is accepted even if it cannot).
    if srv.keyspace.maxmemory:
        srv.keyspace.make_room()
    return OK


# CONFIG RESETSTAT
@command("config|resetstat", 2, "admin noscript loading stale", "admin slow dangerous",
         group="server", since="2.0.0", summary="Resets the server's statistics.")
def config_resetstat(conn: Connection, args: list[bytes]) -> bytes:
    srv = conn.server
    srv.commands_processed = srv.connections_received = srv.rejected_connections = 0
    srv.output_limit_disconnections = srv.query_limit_disconnections = 0
    ks = srv.keyspace
    ks.expired_keys = ks.evicted_keys = ks.hits = ks.misses = 0
    srv.stats.reset()
    return OK


# CONFIG REWRITE
@command("config|rewrite", 2, "admin noscript loading stale", "admin slow dangerous",
         group="server", since="2.8.0", summary="Persists the effective configuration to file.")
def config_rewrite(conn: Connection, args: list[bytes]) -> bytes:
    """Refused: Redis's error without a config file; with one, Redis's failure prefix
    and why (respd never edits its config file)."""
    path = conn.server.config.file
    if not path:
        return error("The server is running without a config file")
    return error(f"Rewriting config file: not supported by respd, edit {path} instead")


# --- small server commands ---------------------------------------------------------

# TIME
@command("time", 1, "loading stale fast", "fast", group="server", since="2.6.0",
         summary="Returns the server time.")
def time_(conn: Connection, args: list[bytes]) -> bytes:
    now = time.time_ns() // 1000
    return bulk_array([str(now // 1_000_000).encode(), str(now % 1_000_000).encode()])


# DBSIZE
@command("dbsize", 1, "readonly fast", "keyspace read fast", group="server", since="1.0.0",
         summary="Returns the number of keys in the database.")
def dbsize(conn: Connection, args: list[bytes]) -> bytes:
    return integer(len(conn.server.keyspace.dbs[conn.db].data))


def _flush_mode(args: list[bytes]) -> bytes | None:
    """FLUSHDB/FLUSHALL's optional ASYNC or SYNC (both flush at once here): an error or None."""
    if len(args) == 1 or (len(args) == 2 and args[1].lower() in (b"async", b"sync")):
        return None
    return error("syntax error")


# FLUSHDB [ASYNC | SYNC]
@command("flushdb", -1, "write", "keyspace write slow dangerous", group="server",
         since="1.0.0", summary="Removes all keys from the current database.")
def flushdb(conn: Connection, args: list[bytes]) -> bytes:
    problem = _flush_mode(args)
    if problem is not None:
        return problem
    ks = conn.server.keyspace
    ks.flush(ks.dbs[conn.db])
    return OK


# FLUSHALL [ASYNC | SYNC]
@command("flushall", -1, "write", "keyspace write slow dangerous", group="server",
         since="1.0.0", summary="Removes all keys from all databases.")
def flushall(conn: Connection, args: list[bytes]) -> bytes:
    problem = _flush_mode(args)
    if problem is not None:
        return problem
    conn.server.keyspace.flush_all()
    return OK


# SWAPDB index1 index2
@command("swapdb", 3, "write fast", "keyspace write fast dangerous", group="server",
         since="4.0.0", summary="Swaps two Redis databases.")
def swapdb(conn: Connection, args: list[bytes]) -> bytes:
    if conn.server.config["cluster-enabled"]:
        return error("SWAPDB is not allowed in cluster mode")
    indexes = []
    for text, which in ((args[1], "first"), (args[2], "second")):
        index = parse_integer(text)
        if index is None or not -(1 << 31) <= index < 1 << 31:
            return error(f"invalid {which} DB index")
        indexes.append(index)
    ks = conn.server.keyspace
    if not all(0 <= i < len(ks.dbs) for i in indexes):
        return error("DB index is out of range")
    first, second = indexes
    if first != second:
        ks.swap(ks.dbs[first], ks.dbs[second])
    return OK


# SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]
@command("shutdown", -1, "admin noscript loading stale no_multi allow_busy",
         "admin slow dangerous", group="server", since="1.0.0",
         summary="Synchronously saves the database(s) to disk and shuts down the Redis server.")
def shutdown(conn: Connection, args: list[bytes]) -> bytes | None:
    options = {a.lower() for a in args[1:]}
    if not options <= {b"nosave", b"save", b"now", b"force", b"abort"} or \
            {b"nosave", b"save"} <= options:
        return error("syntax error")
    if b"abort" in options:
        if len(options) > 1:
            return error("syntax error")
        return error("No shutdown in progress.")
    conn.server.request_shutdown(now=b"now" in options)
    conn.closing = True
    return None


# ROLE: respd is always a master with no replicas (offset 0)
@command("role", 1, "noscript loading stale fast", "admin fast dangerous", group="server",
         since="2.8.12", summary="Returns the replication role.")
def role(conn: Connection, args: list[bytes]) -> bytes:
    return _MASTER_ROLE


_MASTER_ROLE = b"*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"


container("memory", "", "slow", group="server", since="4.0.0",
          summary="A container for memory diagnostics commands.", help_lines=(
              "USAGE <key> [SAMPLES <count>]",
              "    Return memory in bytes used by <key> and its value. Nested values are",
              "    sampled up to <count> times (default: 5, 0 means sample all).",
          ))
command("memory|help", 2, "loading stale", "slow", group="server", since="4.0.0",
        summary="Returns helpful text about the different subcommands.")(help_reply)


# MEMORY USAGE key [SAMPLES count]
@command("memory|usage", -3, "readonly", "read slow", group="server", since="4.0.0",
         summary="Estimates the memory usage of a key.", keys=(2, 2, 1))
def memory_usage(conn: Connection, args: list[bytes]) -> bytes:
    """The bytes respd accounts to the key (the figure used_memory and maxmemory use)."""
    i = 3
    while i < len(args):
        if args[i].lower() == b"samples" and i + 1 < len(args):
            samples = parse_integer(args[i + 1])
            if samples is None:
                return NOT_INTEGER
            if samples < 0:
                return SYNTAX
            i += 2
        else:
            return SYNTAX
    ks = conn.server.keyspace
    value = ks.read(ks.dbs[conn.db], args[2], touch=False)
    if value is None:
        return null(conn.proto)
    return integer(cost(args[2], value))

