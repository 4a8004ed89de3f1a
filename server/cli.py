"""The `respd` command: redis-server-style options, logging, signals."""

from __future__ import annotations

import logging
import signal
import sys

import trio

from server.config import PARAMS, Config, ConfigError
from server.serve import VERSION, StartupError, serve

USAGE = """Usage: respd [--<parameter> <value> [<value> ...]] ...
       respd --version
       respd --help

Every parameter is given as in redis-server, for example:
  respd                                  (127.0.0.1:6379 and [::1]:6379)
  respd --port 0                         (an ephemeral port, printed on start)
  respd --port 7000 --bind 0.0.0.0 ::
  respd --loglevel verbose

Parameters: """ + ", ".join(PARAMS)

_LEVELS = {"debug": logging.DEBUG, "verbose": logging.DEBUG, "notice": logging.INFO,
           "warning": logging.WARNING, "nothing": logging.CRITICAL + 1}


def parse_options(argv: list[str]) -> Config:
    """`--name value [value ...]` pairs, values running up to the next `--`; Redis's rules."""
    options: dict[str, bytes] = {}
    name = None
    for word in argv:
        if word.startswith("--"):
            name = word[2:].lower()
            if name not in PARAMS:
                raise ConfigError(f"Bad directive or wrong number of arguments: '{word}'")
            options[name] = b""
        elif name is None:
            raise ConfigError(f"Unexpected argument '{word}' (config files are not supported "
                              "yet; give parameters as --name value)")
        else:
            options[name] = (options[name] + b" " + word.encode()).strip()
    parsed = {}
    for key, raw in options.items():
        try:
            parsed[key] = PARAMS[key].parse(raw)
        except ConfigError as exc:
            raise ConfigError(f"Invalid value for '--{key}': {exc}") from None
    return Config(**parsed)


async def _main(config: Config) -> str | None:
    """Serve until SIGINT/SIGTERM or SHUTDOWN; return why the server could not start."""
    async with trio.open_nursery() as nursery:
        try:
            srv = await nursery.start(serve, config)
        except StartupError as exc:  # raised alone: no other task runs yet
            return str(exc)
        print(f"respd listening on {srv.url}", flush=True)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async def watch() -> None:
                async for signum in signals:
                    logging.getLogger("respd").warning(
                        "Received %s scheduling shutdown...", signal.Signals(signum).name)
                    srv.shutdown_requested.set()
                    return
            nursery.start_soon(watch)
            await srv.shutdown_requested.wait()
            nursery.cancel_scope.cancel()
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
    except ConfigError as exc:
        print(f"respd: {exc}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=_LEVELS[config["loglevel"]], stream=sys.stdout,
        format="%(process)d:M %(asctime)s.%(msecs)03d %(levelname).1s %(message)s",
        datefmt="%d %b %Y %H:%M:%S")
    try:
        problem = trio.run(_main, config)
    except KeyboardInterrupt:
        return 130
    if problem is not None:
        print(f"respd: {problem}", file=sys.stderr)
        return 1
    return 0
