"""The `respd` command: a config file and redis-server-style options, logging, signals."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import sys
from pathlib import Path

import trio

from server.config import PARAMS, Config, ConfigError, ConfigFileError
from server.serve import VERSION, StartupError, serve

USAGE = """Usage: respd [/path/to/respd.conf] [--<parameter> <value> [<value> ...]] ...
       respd --version
       respd --help

The config file has redis.conf's syntax; options given after it override it. Every
parameter is given as in redis-server, for example:
  respd                                  (127.0.0.1:6379 and [::1]:6379)
  respd --port 0                         (an ephemeral port, printed on start)
  respd /etc/respd.conf --loglevel verbose
  respd --port 7000 --bind 0.0.0.0 :: --requirepass s3cret

Parameters: """ + ", ".join(PARAMS)

_LEVELS = {"debug": logging.DEBUG, "verbose": logging.DEBUG, "notice": logging.INFO,
           "warning": logging.WARNING, "nothing": logging.CRITICAL + 1}
_RESERVED_FDS = 32  # descriptors Redis keeps beyond maxclients (listeners, files, ...)
# glibc's mallopt parameters (malloc.h) and what the server sets them to.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP_FREE = 16 << 20  # free memory kept at the top of the heap
_HEAP_UP_TO = 1 << 20  # allocations served from the heap rather than their own mmap

log = logging.getLogger("respd")


def parse_options(argv: list[str]) -> Config:
    """An optional config file, then `--name value [value ...]` pairs (values run up to
    the next `--`), applied after the file as redis-server does."""
    config = Config()
    if argv and not argv[0].startswith("--"):
        config.load_file(argv[0])
        argv = argv[1:]
    options: dict[str, bytes] = {}
    name = None
    for word in argv:
        if word.startswith("--"):
            name = word[2:].lower()
            if name not in PARAMS:
                raise ConfigError(f"Bad directive or wrong number of arguments: '{word}'")
            options[name] = b""
        elif name is None:
            raise ConfigError(f"Unexpected argument '{word}': give parameters as --name value")
        else:
            options[name] = (options[name] + b" " + word.encode()).strip()
    for key, raw in options.items():
        try:
            config.assign(key, PARAMS[key].parse(raw))
        except ConfigError as exc:
            raise ConfigError(f"Invalid value for '--{key}': {exc}") from None
    if config["daemonize"]:
        raise ConfigError("daemonize yes is not supported: run respd under a supervisor "
                          "(systemd, a container) instead")
    return config


def _raise_file_limit(config: Config) -> None:
    """Redis's adjustOpenFilesLimit: make room for maxclients descriptors, or lower
    maxclients to what the system allows (with a warning)."""
    wanted = config["maxclients"] + _RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < wanted:
        config.assign("maxclients", max(soft - _RESERVED_FDS, 1))
        log.warning("You requested maxclients of %d requiring at least %d max file "
                    "descriptors. Current maximum open files is %d. maxclients has been "
                    "reduced to %d to compensate for low ulimit.", wanted - _RESERVED_FDS,
                    wanted, soft, config["maxclients"])


def _tune_malloc() -> None:
    """Keep the heap's memory between bursts, as a server's allocator does (Redis's
    jemalloc keeps its pages too).

    By default glibc gives memory back to the kernel as soon as 128 KiB lies free at the
    top of its heap, and large requests come in bursts: each burst then faulted its
    pages back in one by one. Measured with 16 KiB PUBLISHes (a pipelining publisher,
    one subscriber): 276,000 page faults in 2 s, and 69-71k msg/s; with up to 16 MiB
    kept free, about 100 faults and 90-102k msg/s. Only the standalone server does
    this: an embedded respd leaves its host process's allocator alone.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc's; other C libraries lack it
    except (OSError, AttributeError):
        return
    mallopt(_M_TRIM_THRESHOLD, _KEEP_FREE)
    mallopt(_M_MMAP_THRESHOLD, _HEAP_UP_TO)


async def _main(config: Config) -> str | None:
    """Serve until SHUTDOWN or a signal; return why the server could not start.

    The first SIGINT or SIGTERM shuts down gracefully (what is queued is delivered);
    a second one, during that, stops at once.
    """
    async with trio.open_nursery() as nursery:
        async def serve_then_stop(task_status: trio.TaskStatus) -> None:
            await serve(config, task_status=task_status)
            nursery.cancel_scope.cancel()  # the signal watcher is all that is left

        try:
            srv = await nursery.start(serve_then_stop)
        except StartupError as exc:  # raised alone: no other task runs yet
            return str(exc)
        for url in (srv.url, srv.tls_url, srv.unix_url):
            if url is not None:
                print(f"respd listening on {url}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                if srv.shutdown_requested.is_set():
                    log.warning("You insist... exiting now.")
                    nursery.cancel_scope.cancel()
                    break
                log.warning("Received %s scheduling shutdown...", signal.Signals(signum).name)
                srv.request_shutdown()
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `respd` console script and `python -m server`."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] in (["--help"], ["-h"]):
        print(USAGE)
        return 0
    if argv[:1] in (["--version"], ["-v"]):
        print(f"respd {VERSION}")
        return 0
    try:
        config = parse_options(argv)
    except ConfigFileError as exc:
        print(exc.report(f"respd {VERSION}"), file=sys.stderr)
        return 1
    except ConfigError as exc:
        print(f"respd: {exc}", file=sys.stderr)
        return 1
    logfile = config["logfile"]
    logging.basicConfig(
        level=_LEVELS[config["loglevel"]],
        handlers=[logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stdout)],
        format="%(process)d:M %(asctime)s.%(msecs)03d %(levelname).1s %(message)s",
        datefmt="%d %b %Y %H:%M:%S")
    _raise_file_limit(config)
    _tune_malloc()
    pidfile = config["pidfile"]
    if pidfile:
        Path(pidfile).write_text(f"{os.getpid()}\n")
    try:
        problem = trio.run(_main, config)
    except KeyboardInterrupt:
        return 130
    finally:
        if pidfile:
            with contextlib.suppress(OSError):
                Path(pidfile).unlink()
    if problem is not None:
        print(f"respd: {problem}", file=sys.stderr)
        return 1
    return 0
