"""ACL users: passwords, allowed commands, key and channel patterns (Redis 7's model).

A connection runs as one user (`default` until AUTH or HELLO ... AUTH names another).
The default user starts as Redis's does: on, no password (or `requirepass`), every
command, key and channel. A user made by ACL SETUSER starts off, with no password, no
commands, no keys, and the channels `acl-pubsub-default` gives (none, since Redis 7).

Checks run in Redis's order (processCommand): NOAUTH for a client that must still
authenticate, then the command (NOPERM ... command), its keys, its channels. The
dispatcher calls `refusal` only for a connection whose `restricted` flag is set, so a
client of an unrestricted user pays one attribute check per command.

Rules are applied in order, as ACL SETUSER and `user` lines in the config file give
them; an unknown rule or a bad one leaves the user unchanged (all or nothing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from pubsub.glob import match
from resp.encode import error

if TYPE_CHECKING:
    from server.commands import Command
    from server.connection import Connection

# Redis's ACL categories, in the order ACL CAT lists them.
CATEGORIES = ("keyspace", "read", "write", "set", "sortedset", "list", "hash", "string",
              "bitmap", "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow",
              "blocking", "dangerous", "connection", "transaction", "scripting")

NOAUTH = error("Authentication required.", "NOAUTH")
_NOPERM_KEY = error("No permissions to access a key", "NOPERM")
_NOPERM_CHANNEL = error("No permissions to access a channel", "NOPERM")

# Commands whose arguments name channels: where they start, and whether they are patterns
# compared literally (PSUBSCRIBE) rather than channels matched against the user's globs.
# A None end means "to the last argument"; UNSUBSCRIBE and friends are never checked.
_CHANNEL_ARGS: dict[str, tuple[int | None, bool]] = {
    "publish": (2, False), "spublish": (2, False),
    "subscribe": (None, False), "ssubscribe": (None, False), "psubscribe": (None, True),
}
# Shard channels are declared as keys (for cluster routing) but ACLs treat them as channels.
_NOT_KEYS = frozenset(("ssubscribe", "sunsubscribe", "spublish"))

_READ, _WRITE = 1, 2


class AclError(ValueError):
    """A rule that cannot be applied; the message is Redis's reason text."""


def hash_password(password: bytes) -> str:
    """The SHA-256 hex digest Redis stores (and `#<hash>` rules give) for a password."""
    return hashlib.sha256(password).hexdigest()


def _is_hash(text: bytes) -> bool:
    return len(text) == 64 and all(c in b"0123456789abcdef" for c in text)


def _has_spaces(text: bytes) -> bool:
    """Spaces, other C isspace() bytes or NUL: not allowed in names and patterns."""
    return any(c in b" \t\n\r\x0b\x0c\x00" for c in text)


def _table() -> dict[bytes, Command]:
    from server.commands import TABLE

    return TABLE


def _lookup(name: bytes) -> Command | None:
    """A command or `container|sub` subcommand by name, case-insensitively."""
    parent, _, sub = name.lower().partition(b"|")
    found = _table().get(parent)
    if found is not None and sub:
        found = (found.subcommands or {}).get(sub)
    return found


def _with_subcommands(entry: Command) -> list[Command]:
    return [entry, *(entry.subcommands or {}).values()]


class User:
    """One ACL user: whether it may log in, how, and what it may run, read and publish."""

    __slots__ = ("all_channels", "all_commands", "all_keys", "channels", "commands",
                 "enabled", "firstargs", "key_patterns", "name", "nopass", "passwords")

    def __init__(self, name: bytes, *, all_channels: bool = False) -> None:
        self.name = name
        self.enabled = False  # on/off: whether AUTH as this user is accepted
        self.nopass = False  # any password is accepted
        self.passwords: dict[str, None] = {}  # SHA-256 hex digests, in the order added
        self.all_commands = False  # +@all: every command, including ones added later
        self.commands: set[str] = set()  # full names allowed ("get", "client|id")
        self.firstargs: dict[str, set[bytes]] = {}  # +select|0: allowed first arguments
        self.all_keys = False
        self.key_patterns: dict[bytes, int] = {}  # glob -> _READ | _WRITE
        self.all_channels = all_channels
        self.channels: dict[bytes, None] = {}  # channel globs

    @property
    def restricted(self) -> bool:
        """Whether any command, key or channel is out of reach (checks are needed)."""
        return not (self.all_commands and self.all_keys and self.all_channels)

    def copy_from(self, other: User) -> None:
        """Take every rule of another user (ACL SETUSER stages changes on a copy, then
        copies them into the user connections hold, as Redis's ACLCopyUser)."""
        self.enabled, self.nopass = other.enabled, other.nopass
        self.passwords = other.passwords.copy()
        self.all_commands, self.commands = other.all_commands, other.commands.copy()
        self.firstargs = {name: args.copy() for name, args in other.firstargs.items()}
        self.all_keys, self.key_patterns = other.all_keys, other.key_patterns.copy()
        self.all_channels, self.channels = other.all_channels, other.channels.copy()

    def check_password(self, password: bytes) -> bool:
        """Whether AUTH with this password logs in as this user."""
        if not self.enabled:
            return False
        return self.nopass or hash_password(password) in self.passwords

    # --- rules -------------------------------------------------------------------------

    def apply(self, rule: bytes, pubsub_default: str = "resetchannels") -> None:
        """Apply one ACL SETUSER rule (Redis's ACLSetUser), or raise AclError."""
        lowered = rule.lower()
        if not rule:
            return
        if lowered == b"on":
            self.enabled = True
        elif lowered == b"off":
            self.enabled = False
        elif lowered in (b"skip-sanitize-payload", b"sanitize-payload", b"clearselectors"):
            pass  # no RESTORE payloads and no selectors here: nothing to change
        elif lowered == b"nopass":
            self.nopass = True
            self.passwords.clear()
        elif lowered == b"resetpass":
            self.nopass = False
            self.passwords.clear()
        elif rule[:1] in (b">", b"#"):
            digest = self._digest(rule)
            self.passwords[digest] = None
            self.nopass = False
        elif rule[:1] in (b"<", b"!"):
            if self.passwords.pop(self._digest(rule), False) is False:
                raise AclError("The password you are trying to remove from the user does not "
                               "exist")
        elif rule[:1] == b"(" and rule[-1:] == b")":
            raise AclError("Selectors are not supported by respd")
        elif lowered == b"reset":
            for step in (b"resetpass", b"resetkeys", b"resetchannels", b"off", b"-@all"):
                self.apply(step)
            if pubsub_default == "allchannels":
                self.apply(b"allchannels")
        else:
            self._apply_selector(rule, lowered)

    @staticmethod
    def _digest(rule: bytes) -> str:
        """The stored form of a `>pass`/`<pass` (hashed) or `#hash`/`!hash` rule."""
        if rule[:1] in (b">", b"<"):
            return hash_password(rule[1:])
        if not _is_hash(rule[1:]):
            raise AclError("The password hash must be exactly 64 characters and contain only "
                           "lowercase hexadecimal characters")
        return rule[1:].decode()

    def _apply_selector(self, rule: bytes, lowered: bytes) -> None:
        """Key, channel and command rules (Redis's ACLSetSelector)."""
        if lowered in (b"allkeys", b"~*"):
            self.all_keys = True
            self.key_patterns.clear()
        elif lowered == b"resetkeys":
            self.all_keys = False
            self.key_patterns.clear()
        elif lowered in (b"allchannels", b"&*"):
            self.all_channels = True
            self.channels.clear()
        elif lowered == b"resetchannels":
            self.all_channels = False
            self.channels.clear()
        elif lowered in (b"allcommands", b"+@all"):
            self.all_commands = True
            self.commands = {c.name for e in _table().values() for c in _with_subcommands(e)}
            self.firstargs.clear()
        elif lowered in (b"nocommands", b"-@all"):
            self.all_commands = False
            self.commands.clear()
            self.firstargs.clear()
        elif rule[:1] in (b"~", b"%"):
            self._add_key_pattern(rule)
        elif rule[:1] == b"&":
            if self.all_channels:
                raise AclError("Adding a pattern after the * pattern (or the 'allchannels' "
                               "flag) is not valid and does not have any effect. Try "
                               "'resetchannels' to start with an empty list of channels")
            if _has_spaces(rule[1:]):
                raise AclError("Syntax error")
            self.channels[rule[1:]] = None
        elif rule[:2] in (b"+@", b"-@"):
            self._set_category(lowered[2:].decode(errors="replace"), rule[:1] == b"+")
        elif rule[:1] == b"+":
            self._allow(rule[1:])
        elif rule[:1] == b"-":
            entry = _lookup(rule[1:])
            if entry is None:
                raise AclError("Unknown command or category name in ACL")
            self._change(entry, allow=False)
        else:
            raise AclError("Syntax error")

    def _add_key_pattern(self, rule: bytes) -> None:
        """`~pattern` (read and write), `%R~`, `%W~`, `%RW~pattern`."""
        if self.all_keys:
            raise AclError("Adding a pattern after the * pattern (or the 'allkeys' flag) is "
                           "not valid and does not have any effect. Try 'resetkeys' to start "
                           "with an empty list of patterns")
        flags, offset = _READ | _WRITE, 1
        if rule[:1] == b"%":
            flags = 0
            for offset in range(1, len(rule) + 1):
                c = rule[offset:offset + 1].upper()
                if c == b"R" and not flags & _READ:
                    flags |= _READ
                elif c == b"W" and not flags & _WRITE:
                    flags |= _WRITE
                elif c == b"~":
                    offset += 1
                    break
                else:
                    raise AclError("Syntax error")
        pattern = rule[offset:]
        if _has_spaces(pattern):
            raise AclError("Syntax error")
        self.key_patterns[pattern] = self.key_patterns.get(pattern, 0) | flags

    def _set_category(self, category: str, allow: bool) -> None:
        """+@cat / -@cat: every command in it, with all of a container's subcommands."""
        if category not in CATEGORIES:
            raise AclError("Unknown command or category name in ACL")
        for entry in _table().values():
            if category in entry.categories:
                self._change(entry, allow)
            for sub in (entry.subcommands or {}).values():
                if category in sub.categories:
                    self._change(sub, allow)

    def _allow(self, name: bytes) -> None:
        """+cmd, +container|sub, or +cmd|first-arg (allowed only with that first argument)."""
        if b"|" not in name:
            entry = _lookup(name)
            if entry is None:
                raise AclError("Unknown command or category name in ACL")
            self._change(entry, allow=True)
            return
        head, _, first = name.rpartition(b"|")
        entry = _lookup(head)
        if entry is None:
            raise AclError("Unknown command or category name in ACL")
        if "|" in entry.name:
            raise AclError("Allowing first-arg of a subcommand is not supported")
        if not first:
            raise AclError("Syntax error")
        if entry.subcommands is not None:
            sub = _lookup(name)
            if sub is None:
                raise AclError("Unknown command or category name in ACL")
            self._change(sub, allow=True)
        else:
            self.firstargs.setdefault(entry.name, set()).add(first.lower())

    def _change(self, entry: Command, allow: bool) -> None:
        """Allow or deny a command and, for a container, all its subcommands."""
        for each in _with_subcommands(entry):
            if allow:
                self.commands.add(each.name)
            else:
                self.commands.discard(each.name)
                self.all_commands = False
        self.firstargs.pop(entry.name, None)

    # --- checks ------------------------------------------------------------------------

    def may_run(self, entry: Command, args: list[bytes]) -> bool:
        """Whether the command itself is allowed (ignoring keys and channels)."""
        if self.all_commands or entry.no_auth or entry.name in self.commands:
            return True
        allowed = self.firstargs.get(entry.name)
        position = 2 if "|" in entry.name else 1
        return allowed is not None and len(args) > position \
            and args[position].lower() in allowed

    def may_access_key(self, key: bytes, flags: int) -> bool:
        if self.all_keys:
            return True
        return any(granted & flags == flags and match(pattern, key)
                   for pattern, granted in self.key_patterns.items())

    def may_use_channel(self, name: bytes, literal: bool) -> bool:
        """A channel against the user's globs, or (PSUBSCRIBE) a pattern compared as text."""
        if self.all_channels:
            return True
        if literal:
            return name in self.channels
        return any(match(pattern, name) for pattern in self.channels)

    def denial(self, entry: Command, args: list[bytes]) -> tuple[str, bytes] | None:
        """Why this user may not run the command as given: ("command", its name),
        ("key", the first key refused) or ("channel", the first channel); None if it may."""
        if not self.may_run(entry, args):
            return "command", entry.name.encode()
        if not self.all_keys and entry.name not in _NOT_KEYS:
            flags = _key_flags(entry)
            for key in command_keys(entry, args):
                if not self.may_access_key(key, flags):
                    return "key", key
        if not self.all_channels:
            channels = _CHANNEL_ARGS.get(entry.name)
            if channels is not None:
                end, literal = channels
                for channel in args[1:end]:
                    if not self.may_use_channel(channel, literal):
                        return "channel", channel
        return None

    def refusal(self, entry: Command, args: list[bytes]) -> bytes | None:
        """Redis's NOPERM error if this user may not run the command as given, else None."""
        denied = self.denial(entry, args)
        if denied is None:
            return None
        what, name = denied
        if what == "key":
            return _NOPERM_KEY
        if what == "channel":
            return _NOPERM_CHANNEL
        return error(b"User %b has no permissions to run the '%b' command" % (self.name, name),
                     "NOPERM")

    def explain(self, entry: Command, args: list[bytes]) -> bytes | None:
        """ACL DRYRUN's verbose reason (Redis 7.4's words), or None if allowed."""
        denied = self.denial(entry, args)
        if denied is None:
            return None
        what, name = denied
        return b"User %b has no permissions to %b the '%b' %b" % (
            self.name, b"run" if what == "command" else b"access", name, what.encode())

    def keeps(self, conn: Connection) -> bool:
        """Whether a subscriber's current subscriptions are all still allowed."""
        if self.all_channels:
            return True
        return all(self.may_use_channel(p, True) for p in conn.patterns) and all(
            self.may_use_channel(c, False) for c in (*conn.channels, *conn.shard_channels))


def _key_flags(entry: Command) -> int:
    """What a command does with its keys: readonly commands read; others write (an
    approximation of Redis's per-key-spec flags, exact for `~pattern` rules)."""
    return _READ if "readonly" in entry.flags else _WRITE


def command_keys(entry: Command, args: list[bytes]) -> list[bytes]:
    """The arguments a command names as keys, from its (first, last, step) positions."""
    first, last, step = entry.keys
    if not first:
        return []
    end = len(args) + last if last < 0 else last
    return args[first:end + 1:step or 1]


class Acl:
    """The users of one server, and the checks a restricted connection goes through."""

    __slots__ = ("default", "pubsub_default", "users")

    def __init__(self, requirepass: str = "", pubsub_default: str = "resetchannels") -> None:
        self.pubsub_default = pubsub_default  # acl-pubsub-default: channels of a new user
        self.default = User(b"default", all_channels=True)
        for rule in (b"+@all", b"~*", b"&*", b"on", b"nopass"):
            self.default.apply(rule)
        self.users: dict[bytes, User] = {b"default": self.default}
        self.set_requirepass(requirepass)

    def set_requirepass(self, password: str) -> None:
        """requirepass sets the default user's only password ('' makes it nopass)."""
        self.default.apply(b"resetpass")
        if password:
            self.default.apply(b">" + password.encode(errors="surrogateescape"))
        else:
            self.default.apply(b"nopass")

    @property
    def auth_required(self) -> bool:
        """Whether a new connection must authenticate before running commands."""
        return not self.default.nopass or not self.default.enabled

    def authenticate(self, name: bytes, password: bytes) -> User | None:
        user = self.users.get(name)
        return user if user is not None and user.check_password(password) else None

    def set_user(self, name: bytes, rules: Iterable[bytes]) -> tuple[User, bool]:
        """Create or change a user with the rules, all or none. Returns the user and
        whether channels it had were taken away (its subscribers must be checked).

        Raises AclError with Redis's message, naming the rule that failed.
        """
        user = self.users.get(name)
        staged = User(name, all_channels=self.pubsub_default == "allchannels")
        if user is not None:
            staged.copy_from(user)
        for rule in rules:
            try:
                staged.apply(rule, self.pubsub_default)
            except AclError as exc:
                raise AclError(f"Error in ACL SETUSER modifier "
                               f"'{rule.decode(errors='replace')}': {exc}") from None
        # Redis's ACLKillPubsubClientsIfNeeded: only when no longer all channels and the
        # new list is not a superset of the old one.
        narrowed = user is not None and not staged.all_channels and (
            user.all_channels or not user.channels.keys() <= staged.channels.keys())
        if user is None:
            user = self.users[name] = staged
        else:
            user.copy_from(staged)
        return user, narrowed

    @staticmethod
    def refusal(conn: Connection, entry: Command, args: list[bytes]) -> bytes | None:
        """NOAUTH or NOPERM for a restricted connection, in Redis's order; None to run."""
        if conn.must_authenticate:
            return None if entry.no_auth else NOAUTH
        return conn.user.refusal(entry, args)
