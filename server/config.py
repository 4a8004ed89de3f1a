"""Server parameters: defaults, parsing as Redis does, CONFIG GET/SET.

Each parameter is declared once with its type; the same parsers serve the command
line and CONFIG SET, and the same formatters serve CONFIG GET.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pubsub.glob import match
from server.keyspace import format_events
from server.keyspace import parse_events as letters_to_flags

_UNITS = {b"": 1, b"k": 1000, b"kb": 1024, b"m": 1000**2, b"mb": 1024**2,
          b"g": 1000**3, b"gb": 1024**3}


class ConfigError(ValueError):
    """A value that cannot be used; the message is Redis's reason text."""


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
    """One parameter: its parser, its CONFIG GET formatter, whether CONFIG SET may change it."""

    default: Any
    parse: Callable[[bytes], Any]
    fmt: Callable[[Any], str] = _format
    mutable: bool = True


PARAMS: dict[str, Param] = {
    "bind": Param(["127.0.0.1", "-::1"], parse_words, mutable=False),
    "port": Param(6379, parse_int, mutable=False),
    "loglevel": Param("notice", _enum("debug", "verbose", "notice", "warning", "nothing")),
    "databases": Param(16, parse_int, mutable=False),
    "maxclients": Param(10000, _bounded(1, 4294967295)),
    "timeout": Param(0, parse_int),
    "tcp-keepalive": Param(300, parse_int),
    "proto-max-bulk-len": Param(512 * 1024**2, parse_memory),
    "client-query-buffer-limit": Param(1024**3, parse_memory),
    "client-output-buffer-limit": Param(
        {"normal": (0, 0, 0), "replica": (256 * 1024**2, 64 * 1024**2, 60),
         "pubsub": (32 * 1024**2, 8 * 1024**2, 60)},
        parse_output_limits, format_output_limits),
    "requirepass": Param("", parse_string),
    "maxmemory": Param(0, parse_memory),
    "maxmemory-policy": Param("noeviction", _enum(
        "volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl", "allkeys-lru",
        "allkeys-lfu", "allkeys-random", "noeviction")),
    "maxmemory-samples": Param(5, _bounded(1, 64)),
    "lfu-log-factor": Param(10, _bounded(0, 2**31 - 1)),
    "lfu-decay-time": Param(1, _bounded(0, 2**31 - 1)),
    "notify-keyspace-events": Param(0, parse_events, format_events),
    "hz": Param(10, parse_int),
    "save": Param("", parse_string),
    "appendonly": Param(False, parse_bool),
    "protected-mode": Param(True, parse_bool),
    "cluster-enabled": Param(False, parse_bool, mutable=False),
}


class Config:
    """The values in force: start-up options, then CONFIG SET."""

    def __init__(self, **overrides: Any) -> None:
        self.values: dict[str, Any] = {name: p.default for name, p in PARAMS.items()}
        for key, value in overrides.items():
            name = key.replace("_", "-")
            if name not in PARAMS:
                raise ConfigError(f"unknown parameter '{name}'")
            if isinstance(value, (str, bytes)) and not isinstance(PARAMS[name].default, str):
                value = PARAMS[name].parse(value.encode() if isinstance(value, str) else value)
            self.values[name] = value

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

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
        self.values.update(new)
