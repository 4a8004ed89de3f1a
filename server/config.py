"""Server parameters: defaults, parsing as Redis does, CONFIG GET/SET, the config file.

Each parameter is declared once with its type; the same parsers serve the config file,
the command line and CONFIG SET, and the same formatters serve CONFIG GET. The config
file has Redis's syntax: one directive per line, arguments split as redis-cli splits
them (quotes and escapes), `#` comments, `include` of other files, and `user` lines
declaring ACL users.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pubsub.glob import match
from resp.parser import split_args
from server.keyspace import format_events
from server.keyspace import parse_events as letters_to_flags

_UNITS = {b"": 1, b"k": 1000, b"kb": 1024, b"m": 1000**2, b"mb": 1024**2,
          b"g": 1000**3, b"gb": 1024**3}
INT_MAX = 2**31 - 1
LLONG_MAX = 2**63 - 1


class ConfigError(ValueError):
    """A value that cannot be used; the message is Redis's reason text."""


class ConfigFileError(ConfigError):
    """A config-file line that cannot be used: where it is, and why."""

    def __init__(self, lineno: int, line: str, reason: str) -> None:
        super().__init__(reason)
        self.lineno, self.line, self.reason = lineno, line, reason

    def report(self, product: str) -> str:
        """Redis's fatal start-up report, naming the file's line and the reason."""
        return (f"\n*** FATAL CONFIG FILE ERROR ({product}) ***\n"
                f"Reading the configuration file, at line {self.lineno}\n"
                f">>> '{self.line}'\n{self.reason}")


def parse_memory(text: bytes) -> int:
    """A size with Redis's units (1k = 1000, 1kb = 1024, ... case-insensitive)."""
    text = text.lower()
    digits = text.rstrip(b"kmgb")
    unit = text[len(digits):]
    if unit not in _UNITS or not digits.isdigit():
        raise ConfigError("argument must be a memory value")
    return int(digits) * _UNITS[unit]


def parse_int(text: bytes) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError("argument couldn't be parsed into an integer") from None


def _bounded(low: int, high: int) -> Callable[[bytes], int]:
    """An integer parameter that Redis keeps within [low, high]."""
    def parse(text: bytes) -> int:
        value = parse_int(text)
        if not low <= value <= high:
            raise ConfigError(f"argument must be between {low} and {high} inclusive")
        return value
    return parse


def _bounded_memory(low: int, high: int) -> Callable[[bytes], int]:
    """A memory size (with units) that Redis keeps within [low, high]."""
    def parse(text: bytes) -> int:
        value = parse_memory(text)
        if not low <= value <= high:
            raise ConfigError(f"argument must be between {low} and {high} inclusive")
        return value
    return parse


def parse_octal(text: bytes) -> int:
    """unixsocketperm: file permission bits, written in octal as in chmod."""
    try:
        value = int(text, 8)
    except ValueError:
        raise ConfigError("argument couldn't be parsed into an integer") from None
    if not 0 <= value <= 0o777:
        raise ConfigError("argument must be between 0 and 777 inclusive")
    return value


def parse_bool(text: bytes) -> bool:
    value = text.lower()
    if value not in (b"yes", b"no"):
        raise ConfigError("argument must be 'yes' or 'no'")
    return value == b"yes"


def _enum(*choices: str) -> Callable[[bytes], str]:
    def parse(text: bytes) -> str:
        value = text.decode(errors="replace").lower()
        if value not in choices:
            raise ConfigError("argument(s) must be one of the following: " + ", ".join(choices))
        return value
    return parse


def parse_string(text: bytes) -> str:
    return text.decode(errors="surrogateescape")


def parse_events(text: bytes) -> int:
    """notify-keyspace-events: Redis's class letters (validated) to flags."""
    try:
        return letters_to_flags(text.decode(errors="replace"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def parse_words(text: bytes) -> list[str]:
    return text.decode(errors="surrogateescape").split()


def parse_percentiles(text: bytes) -> list[float]:
    """latency-tracking-info-percentiles: percentiles from 0 to 100, space-separated."""
    try:
        values = [float(word) for word in text.split()]
    except ValueError:
        raise ConfigError("Invalid latency-tracking-info-percentiles parameters") from None
    if not all(0.0 <= value <= 100.0 for value in values):
        raise ConfigError("latency-tracking-info-percentiles parameters should sit between "
                          "[0.0,100.0]")
    return values


def format_percentiles(values: list[float]) -> str:
    return " ".join(f"{value:f}".rstrip("0").rstrip(".") for value in values)


CLIENT_CLASSES = ("normal", "replica", "pubsub")


def parse_output_limits(text: bytes) -> dict[str, tuple[int, int, int]]:
    """`class hard soft seconds [class hard soft seconds ...]` (slave = replica)."""
    words = text.split()
    if not words or len(words) % 4:
        raise ConfigError("Wrong number of arguments in buffer limit configuration.")
    limits = {}
    for i in range(0, len(words), 4):
        name = words[i].decode(errors="replace").lower()
        name = "replica" if name == "slave" else name
        if name not in CLIENT_CLASSES:
            raise ConfigError("Invalid client class specified in buffer limit configuration.")
        try:
            hard, soft = parse_memory(words[i + 1]), parse_memory(words[i + 2])
            seconds = int(words[i + 3])
        except (ConfigError, ValueError):
            raise ConfigError("Error in hard, soft or soft_seconds setting in buffer limit "
                              "configuration.") from None
        limits[name] = (hard, soft, seconds)
    return limits


def format_output_limits(limits: dict[str, tuple[int, int, int]]) -> str:
    names = {"normal": "normal", "replica": "slave", "pubsub": "pubsub"}
    return " ".join(f"{names[c]} {h} {s} {sec}" for c, (h, s, sec) in limits.items())


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " ".join(value)
    return str(value)


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter: its parser, its CONFIG GET formatter, whether CONFIG SET may change
    it, and whether a config-file line may give it several words (`bind a b`)."""

    default: Any
    parse: Callable[[bytes], Any]
    fmt: Callable[[Any], str] = _format
    mutable: bool = True
    words: bool = False


PARAMS: dict[str, Param] = {
    "bind": Param(["127.0.0.1", "-::1"], parse_words, mutable=False, words=True),
    "port": Param(6379, parse_int, mutable=False),
    "tcp-backlog": Param(511, _bounded(0, INT_MAX), mutable=False),
    "unixsocket": Param("", parse_string, mutable=False),
    "unixsocketperm": Param(0, parse_octal, lambda v: f"{v:o}", mutable=False),
    "tls-port": Param(0, _bounded(0, 65535), mutable=False),
    "tls-cert-file": Param("", parse_string),
    "tls-key-file": Param("", parse_string),
    "tls-key-file-pass": Param("", parse_string),
    "tls-ca-cert-file": Param("", parse_string),
    "tls-ca-cert-dir": Param("", parse_string),
    "tls-auth-clients": Param("yes", _enum("no", "yes", "optional")),
    "tls-protocols": Param("", parse_string),
    "tls-ciphers": Param("", parse_string),
    "tls-prefer-server-ciphers": Param(False, parse_bool),
    "loglevel": Param("notice", _enum("debug", "verbose", "notice", "warning", "nothing")),
    "logfile": Param("", parse_string, mutable=False),
    "pidfile": Param("", parse_string, mutable=False),
    "daemonize": Param(False, parse_bool, mutable=False),
    "databases": Param(16, parse_int, mutable=False),
    "maxclients": Param(10000, _bounded(1, 4294967295)),
    "timeout": Param(0, _bounded(0, INT_MAX)),
    "tcp-keepalive": Param(300, _bounded(0, INT_MAX)),
    "shutdown-timeout": Param(10, _bounded(0, INT_MAX)),
    "proto-max-bulk-len": Param(512 * 1024**2, _bounded_memory(1024**2, LLONG_MAX)),
    "client-query-buffer-limit": Param(1024**3, _bounded_memory(1024**2, LLONG_MAX)),
    "client-output-buffer-limit": Param(
        {"normal": (0, 0, 0), "replica": (256 * 1024**2, 64 * 1024**2, 60),
         "pubsub": (32 * 1024**2, 8 * 1024**2, 60)},
        parse_output_limits, format_output_limits, words=True),
    "requirepass": Param("", parse_string),
    "acl-pubsub-default": Param("resetchannels", _enum("allchannels", "resetchannels")),
    "maxmemory": Param(0, parse_memory),
    "maxmemory-policy": Param("noeviction", _enum(
        "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl", "allkeys-lru",
        "allkeys-lfu", "allkeys-random", "noeviction")),
    "maxmemory-samples": Param(5, _bounded(1, 64)),
    "lfu-log-factor": Param(10, _bounded(0, 2**31 - 1)),
    "lfu-decay-time": Param(1, _bounded(0, 2**31 - 1)),
    "notify-keyspace-events": Param(0, parse_events, format_events),
    "hz": Param(10, parse_int),
    "save": Param("", parse_string, words=True),
    "appendonly": Param(False, parse_bool),
    "protected-mode": Param(True, parse_bool),
    "cluster-enabled": Param(False, parse_bool, mutable=False),
    "cluster-announce-ip": Param("", parse_string),
    "cluster-announce-port": Param(0, _bounded(0, 65535)),
    "cluster-announce-bus-port": Param(0, _bounded(0, 65535)),
    "tracking-table-max-keys": Param(1000000, _bounded(0, 2**63 - 1)),
    # Redis measures every command; respd only when asked (see server/commands/operator.py).
    "latency-tracking": Param(False, parse_bool),
    "latency-tracking-info-percentiles": Param([50.0, 99.0, 99.9], parse_percentiles,
                                               format_percentiles),
    "latency-monitor-threshold": Param(0, _bounded(0, 2**63 - 1)),
    "slowlog-log-slower-than": Param(10000, _bounded(-1, 2**63 - 1)),
    "slowlog-max-len": Param(128, _bounded(0, 2**63 - 1)),
}


_INCLUDE_DEPTH = 16  # nested `include` lines beyond this are taken for a loop


class Config:
    """The values in force: the config file, start-up options, then CONFIG SET."""

    def __init__(self, **overrides: Any) -> None:
        self.values: dict[str, Any] = {name: p.default for name, p in PARAMS.items()}
        self.file = ""  # absolute path of the config file read at start ("" if none)
        self.users: list[tuple[bytes, list[bytes]]] = []  # `user` lines: name, ACL rules
        # Called with the values CONFIG SET is changing, after they are set; it applies
        # them, or raises ConfigError (Redis's full message) to have them all undone.
        self.on_change: Callable[[dict[str, Any]], None] | None = None
        for key, value in overrides.items():
            name = key.replace("_", "-")
            if name not in PARAMS:
                raise ConfigError(f"unknown parameter '{name}'")
            if isinstance(value, (str, bytes)) and not isinstance(PARAMS[name].default, str):
                value = PARAMS[name].parse(value.encode() if isinstance(value, str) else value)
            self.assign(name, value)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def assign(self, name: str, value: Any) -> None:
        """Set a parsed value; client-output-buffer-limit changes only the classes given."""
        if name == "client-output-buffer-limit":
            value = {**self.values[name], **value}
        self.values[name] = value

    # --- the config file ----------------------------------------------------------------

    def load_file(self, path: str) -> None:
        """Read a config file in Redis's syntax ("-" reads standard input).

        Raises ConfigFileError naming the first line that cannot be used: an unknown
        directive, a wrong number of arguments, a bad value or unbalanced quotes.
        """
        self.file = path if path == "-" else str(Path(path).resolve())
        self._read(path, 0)

    def _read(self, path: str, depth: int) -> None:
        if depth > _INCLUDE_DEPTH:
            raise ConfigError(f"Too many nested includes (is '{path}' including itself?)")
        try:
            text = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
        except OSError as exc:
            raise ConfigError(f"Fatal error, can't open config file '{path}': "
                              f"{exc.strerror}") from None
        for lineno, raw in enumerate(text.split(b"\n"), 1):
            line = raw.strip(b" \t\r\n")
            if not line or line.startswith(b"#"):
                continue
            shown = line.decode(errors="replace")
            words = split_args(line)
            try:
                if words is None:
                    raise ConfigError("Unbalanced quotes in configuration line")
                if words:
                    self._directive(words[0].decode(errors="replace").lower(), words[1:],
                                    depth)
            except ConfigFileError:
                raise
            except ConfigError as exc:
                raise ConfigFileError(lineno, shown, str(exc)) from None

    def _directive(self, name: str, words: list[bytes], depth: int) -> None:
        """Apply one config-file line (its name lowercased, its arguments)."""
        if name == "include" and len(words) == 1:
            self._read(words[0].decode(errors="surrogateescape"), depth + 1)
        elif name == "user" and words:
            from server.acl import AclError, User

            scratch = User(words[0])
            for rule in words[1:]:
                try:
                    scratch.apply(rule)
                except AclError as exc:
                    raise ConfigError(f"Error in user declaration "
                                      f"'{rule.decode(errors='replace')}': {exc}") from None
            self.users.append((words[0], words[1:]))
        else:
            param = PARAMS.get(name)
            if param is None or name == "include" or not words:
                raise ConfigError("Bad directive or wrong number of arguments")
            if len(words) != 1 and not param.words:
                raise ConfigError("wrong number of arguments")
            self.assign(name, param.parse(b" ".join(words)))

    def get(self, patterns: list[bytes]) -> list[tuple[str, str]]:
        """CONFIG GET: each parameter matching any pattern (case-insensitive), once.

        A name without glob characters is echoed as the client spelled it, as Redis does.
        """
        found: dict[str, tuple[str, str]] = {}  # parameter -> (name shown, value)
        for pattern in patterns:
            lowered = pattern.lower()
            if not any(c in lowered for c in b"*?["):
                name = lowered.decode(errors="replace")
                if name in PARAMS and name not in found:
                    found[name] = (pattern.decode(errors="replace"),
                                   PARAMS[name].fmt(self.values[name]))
                continue
            for name, param in PARAMS.items():
                if name not in found and match(lowered, name.encode()):
                    found[name] = (name, param.fmt(self.values[name]))
        return list(found.values())

    def set(self, pairs: list[tuple[bytes, bytes]]) -> None:
        """CONFIG SET: all pairs or none. Raises ConfigError with Redis's message."""
        new: dict[str, Any] = {}
        for raw_name, raw_value in pairs:
            name = raw_name.decode(errors="replace").lower()
            param = PARAMS.get(name)
            if param is None:
                raise ConfigError(f"Unknown option or number of arguments for CONFIG SET - "
                                  f"'{raw_name.decode(errors='replace')}'")
            if name in new:
                raise ConfigError(f"CONFIG SET failed (possibly related to argument "
                                  f"'{name}') - duplicate parameter")
            if not param.mutable:
                raise ConfigError(f"CONFIG SET failed (possibly related to argument "
                                  f"'{name}') - can't set immutable config")
            try:
                new[name] = param.parse(raw_value)
            except ConfigError as exc:
                raise ConfigError(f"CONFIG SET failed (possibly related to argument "
                                  f"'{name}') - {exc}") from None
        if "client-output-buffer-limit" in new:
            new["client-output-buffer-limit"] = {**self.values["client-output-buffer-limit"],
                                                 **new["client-output-buffer-limit"]}
        old = {name: self.values[name] for name in new}
        self.values.update(new)
        if self.on_change is not None:
            try:
                self.on_change(new)
            except ConfigError:
                self.values.update(old)
                raise
