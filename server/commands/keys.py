"""Generic key commands: DEL, EXISTS, TYPE, COPY, RENAME, MOVE, KEYS, SCAN, expiry, OBJECT."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pubsub.glob import compile_pattern
from resp.encode import OK, array_header, bulk, bulk_array, error, integer, null
from resp.parser import _parse_int as parse_integer
from server.commands import command, container, help_reply
from server.commands.strings import NOT_INTEGER, ONE, SYNTAX, ZERO, expire_time_error
from server.keyspace import GENERIC, Database, Keyspace, type_name

if TYPE_CHECKING:
    from server.connection import Connection

SAME_OBJECT = error("source and destination objects are the same")
DB_OUT_OF_RANGE = error("DB index is out of range")
_INT32 = 1 << 31


def _db_index(conn: Connection, text: bytes) -> int | bytes:
    """A database number argument (getIntFromObjectOrReply), or the error reply."""
    index = parse_integer(text)
    if index is None or not -_INT32 <= index < _INT32:
        return NOT_INTEGER
    if not 0 <= index < len(conn.server.keyspace.dbs):
        return DB_OUT_OF_RANGE
    return index


def _delete(conn: Connection, args: list[bytes]) -> bytes:
    """DEL and UNLINK: remove each key that exists (an expired key counts as missing)."""
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    deleted = 0
    for key in args[1:]:
        if ks.peek(db, key) is not None and ks.delete(db, key):
            ks.notify(GENERIC, b"del", key, db.index)
            deleted += 1
    return integer(deleted)


# DEL key [key ...]
@command("del", -2, "write", "keyspace write slow", group="generic", since="1.0.0",
         summary="Deletes one or more keys.", keys=(1, -1, 1))
def del_(conn: Connection, args: list[bytes]) -> bytes:
    return _delete(conn, args)


# UNLINK key [key ...]
@command("unlink", -2, "write fast", "keyspace write fast", group="generic", since="4.0.0",
         summary="Asynchronously deletes one or more keys.", keys=(1, -1, 1))
def unlink(conn: Connection, args: list[bytes]) -> bytes:
    return _delete(conn, args)


# EXISTS key [key ...]
@command("exists", -2, "readonly fast", "keyspace read fast", group="generic",
         since="1.0.0", summary="Determines whether one or more keys exist.", keys=(1, -1, 1))
def exists(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    return integer(sum(1 for key in args[1:] if _read_no_touch(ks, db, key) is not None))


def _read_no_touch(ks: Keyspace, db: Database, key: bytes) -> object | None:
    """A read lookup that leaves the access time alone (LOOKUP_NOTOUCH): stats and keymiss."""
    access = db.access.get(key)
    value = ks.read(db, key)
    if value is not None and access is not None:
        db.access[key] = access
    return value


# TYPE key
@command("type", 2, "readonly fast", "keyspace read fast", group="generic", since="1.0.0",
         summary="Determines the type of value stored at a key.", keys=(1, 1, 1))
def type_(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    value = _read_no_touch(ks, ks.dbs[conn.db], args[1])
    return b"+none\r\n" if value is None else b"+%b\r\n" % type_name(value)


# TOUCH key [key ...]
@command("touch", -2, "readonly fast", "keyspace read fast", group="generic", since="3.2.1",
         summary="Returns the number of existing keys out of those specified after updating "
                 "the time they were last accessed.", keys=(1, -1, 1))
def touch(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    return integer(sum(1 for key in args[1:] if ks.read(db, key) is not None))


def _copy_value(value: object) -> object:
    """A value for a second key: bytes are immutable; anything mutable is copied."""
    return bytearray(value) if type(value) is bytearray else value


# COPY source destination [DB destination-db] [REPLACE]
@command("copy", -3, "write denyoom", "keyspace write slow", group="generic", since="6.2.0",
         summary="Copies the value of a key to a new key.", keys=(1, 2, 1))
def copy(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    source = ks.dbs[conn.db]
    target = source
    replace = False
    i = 3
    while i < len(args):
        option = args[i].lower()
        if option == b"replace":
            replace = True
        elif option == b"db" and i + 1 < len(args):
            index = _db_index(conn, args[i + 1])
            if type(index) is bytes:
                return index
            target = ks.dbs[index]
            i += 1
        else:
            return SYNTAX
        i += 1
    if conn.server.config["cluster-enabled"] and (conn.db != 0 or target.index != 0):
        return error("Copying to another database is not allowed in cluster mode")
    key, new_key = args[1], args[2]
    if source is target and key == new_key:
        return SAME_OBJECT
    value = ks.read(source, key)
    if value is None:
        return ZERO
    when = source.expires.get(key)
    if ks.write(target, new_key) is not None:
        if not replace:
            return ZERO
        ks.delete(target, new_key)
    ks.store(target, new_key, _copy_value(value))
    if when is not None:
        ks.set_expire(target, new_key, when)
    ks.notify(GENERIC, b"copy_to", new_key, target.index)
    return ONE


def _rename(conn: Connection, args: list[bytes], nx: bool) -> bytes:
    """RENAME and RENAMENX: move a key (value and TTL) to a new name in the same database."""
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    key, new_key = args[1], args[2]
    value = ks.write(db, key)
    if value is None:
        return error("no such key")
    if key == new_key:
        return ZERO if nx else OK
    when = db.expires.get(key)
    if ks.write(db, new_key) is not None:
        if nx:
            return ZERO
        ks.delete(db, new_key)
    ks.store(db, new_key, value)
    if when is not None:
        ks.set_expire(db, new_key, when)
    ks.delete(db, key)
    ks.notify(GENERIC, b"rename_from", key, db.index)
    ks.notify(GENERIC, b"rename_to", new_key, db.index)
    return ONE if nx else OK


# RENAME key newkey
@command("rename", 3, "write", "keyspace write slow", group="generic", since="1.0.0",
         summary="Renames a key and overwrites the destination.", keys=(1, 2, 1))
def rename(conn: Connection, args: list[bytes]) -> bytes:
    return _rename(conn, args, False)


# RENAMENX key newkey
@command("renamenx", 3, "write fast", "keyspace write fast", group="generic", since="1.0.0",
         summary="Renames a key only when the target key name doesn't exist.", keys=(1, 2, 1))
def renamenx(conn: Connection, args: list[bytes]) -> bytes:
    return _rename(conn, args, True)


# MOVE key db
@command("move", 3, "write fast", "keyspace write fast", group="generic", since="1.0.0",
         summary="Moves a key to another database.", keys=(1, 1, 1))
def move(conn: Connection, args: list[bytes]) -> bytes:
    if conn.server.config["cluster-enabled"]:
        return error("MOVE is not allowed in cluster mode")
    index = _db_index(conn, args[2])
    if type(index) is bytes:
        return index
    ks = conn.server.keyspace
    source, target = ks.dbs[conn.db], ks.dbs[index]
    if source is target:
        return SAME_OBJECT
    key = args[1]
    value = ks.write(source, key)
    if value is None:
        return ZERO
    when = source.expires.get(key)
    if ks.write(target, key) is not None:
        return ZERO
    ks.store(target, key, value)
    if when is not None:
        ks.set_expire(target, key, when)
    ks.delete(source, key)
    ks.notify(GENERIC, b"move_from", key, source.index)
    ks.notify(GENERIC, b"move_to", key, target.index)
    return ONE


# KEYS pattern
@command("keys", 2, "readonly", "keyspace read slow dangerous", group="generic",
         since="1.0.0", summary="Returns all key names that match a pattern.")
def keys(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    live = ks.live_keys(ks.dbs[conn.db])
    if args[1] == b"*":  # Redis lists every key here, even "" (which `*` cannot match)
        return bulk_array(live)
    matches = compile_pattern(args[1])
    return bulk_array(k for k in live if matches(k))


_CURSOR = re.compile(rb"([-+]?)(\d+)|")
_ULONG = 1 << 64


def parse_cursor(text: bytes) -> int | None:
    """A SCAN cursor as strtoul reads it ("" is 0, "-1" wraps); None if invalid."""
    found = _CURSOR.fullmatch(text)
    if found is None:
        return None
    if not found[0]:
        return 0
    value = int(found[2])
    if value >= _ULONG:
        return None
    return (_ULONG - value) % _ULONG if found[1] == b"-" else value


# SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
@command("scan", -2, "readonly", "keyspace read slow", group="generic", since="2.8.0",
         summary="Iterates over the key names in the database.")
def scan(conn: Connection, args: list[bytes]) -> bytes:
    cursor = parse_cursor(args[1])
    if cursor is None:
        return error("invalid cursor")
    count = 10
    pattern: bytes | None = None
    wanted: bytes | None = None
    i = 2
    while i < len(args):
        option = args[i].lower()
        if i + 1 >= len(args):
            return SYNTAX
        if option == b"count":
            count = parse_integer(args[i + 1])
            if count is None:
                return NOT_INTEGER
            if count < 1:
                return SYNTAX
        elif option == b"match":
            pattern = None if args[i + 1] == b"*" else args[i + 1]
        elif option == b"type":
            wanted = args[i + 1].lower()
        else:
            return SYNTAX
        i += 2
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    found, cursor = db.scan(cursor, count)
    if pattern is not None:
        matches = compile_pattern(pattern)
        found = [k for k in found if matches(k)]
    kept = []
    for key in found:
        value = ks.peek(db, key)  # removes expired keys, as Redis's SCAN does
        if value is not None and (wanted is None or type_name(value) == wanted):
            kept.append(key)
    return array_header(2) + bulk(b"%d" % cursor) + bulk_array(kept)


# RANDOMKEY
@command("randomkey", 1, "readonly", "keyspace read slow", group="generic", since="1.0.0",
         summary="Returns a random key name from the database.")
def randomkey(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    while True:
        key = db.random_key()
        if key is None:
            return null(conn.proto)
        if ks.peek(db, key) is not None:
            return bulk(key)


# --- expiry --------------------------------------------------------------------------

_EXPIRE_OPTIONS = {b"nx": 1, b"xx": 2, b"gt": 4, b"lt": 8}
_INT64_MAX = (1 << 63) - 1
_INT64_MIN = -(1 << 63)


def _expire(conn: Connection, args: list[bytes], unit: int, relative: bool) -> bytes:
    """EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT with NX/XX/GT/LT, as expireGenericCommand."""
    flags = 0
    for option in args[3:]:
        flag = _EXPIRE_OPTIONS.get(option.lower())
        if flag is None:
            return error(b"Unsupported option %b" % option)
        flags |= flag
    if flags & 1 and flags & 14:
        return error("NX and XX, GT or LT options at the same time are not compatible")
    if flags & 12 == 12:
        return error("GT and LT options at the same time are not compatible")
    when = parse_integer(args[2])
    if when is None:
        return NOT_INTEGER
    name = args[0].lower().decode(errors="replace")
    if unit == 1000:
        if not _INT64_MIN // 1000 + 1 <= when <= _INT64_MAX // 1000:
            return expire_time_error(name)
        when *= 1000
    ks = conn.server.keyspace
    if relative:
        now = ks.now()
        if when > _INT64_MAX - now:
            return expire_time_error(name)
        when += now
    db = ks.dbs[conn.db]
    key = args[1]
    if ks.write(db, key) is None:
        return ZERO
    if flags:
        current = db.expires.get(key)
        if flags & 1 and current is not None:
            return ZERO
        if flags & 2 and current is None:
            return ZERO
        if flags & 4 and (current is None or when <= current):
            return ZERO
        if flags & 8 and current is not None and when >= current:
            return ZERO
    if when <= ks.now():
        ks.delete(db, key)
        ks.notify(GENERIC, b"del", key, db.index)
    else:
        ks.set_expire(db, key, when)
        ks.notify(GENERIC, b"expire", key, db.index)
    return ONE


_EXPIRE_KEYS = (1, 1, 1)


# EXPIRE key seconds [NX | XX | GT | LT]
@command("expire", -3, "write fast", "keyspace write fast", group="generic", since="1.0.0",
         summary="Sets the expiration time of a key in seconds.", keys=_EXPIRE_KEYS)
def expire(conn: Connection, args: list[bytes]) -> bytes:
    return _expire(conn, args, 1000, True)


# PEXPIRE key milliseconds [NX | XX | GT | LT]
@command("pexpire", -3, "write fast", "keyspace write fast", group="generic", since="2.6.0",
         summary="Sets the expiration time of a key in milliseconds.", keys=_EXPIRE_KEYS)
def pexpire(conn: Connection, args: list[bytes]) -> bytes:
    return _expire(conn, args, 1, True)


# EXPIREAT key unix-time-seconds [NX | XX | GT | LT]
@command("expireat", -3, "write fast", "keyspace write fast", group="generic", since="1.2.0",
         summary="Sets the expiration time of a key to a Unix timestamp.", keys=_EXPIRE_KEYS)
def expireat(conn: Connection, args: list[bytes]) -> bytes:
    return _expire(conn, args, 1000, False)


# PEXPIREAT key unix-time-milliseconds [NX | XX | GT | LT]
@command("pexpireat", -3, "write fast", "keyspace write fast", group="generic",
         since="2.6.0", summary="Sets the expiration time of a key to a Unix milliseconds "
                                "timestamp.", keys=_EXPIRE_KEYS)
def pexpireat(conn: Connection, args: list[bytes]) -> bytes:
    return _expire(conn, args, 1, False)


def _ttl(conn: Connection, key: bytes, in_ms: bool, absolute: bool) -> bytes:
    """TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 missing, -1 no TTL, else the time."""
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    if _read_no_touch(ks, db, key) is None:
        return integer(-2)
    when = db.expires.get(key)
    if when is None:
        return integer(-1)
    left = when if absolute else max(0, when - ks.now())
    return integer(left if in_ms else (left + 500) // 1000)


# TTL key
@command("ttl", 2, "readonly fast", "keyspace read fast", group="generic", since="1.0.0",
         summary="Returns the expiration time in seconds of a key.", keys=(1, 1, 1))
def ttl(conn: Connection, args: list[bytes]) -> bytes:
    return _ttl(conn, args[1], False, False)


# PTTL key
@command("pttl", 2, "readonly fast", "keyspace read fast", group="generic", since="2.6.0",
         summary="Returns the expiration time in milliseconds of a key.", keys=(1, 1, 1))
def pttl(conn: Connection, args: list[bytes]) -> bytes:
    return _ttl(conn, args[1], True, False)


# EXPIRETIME key
@command("expiretime", 2, "readonly fast", "keyspace read fast", group="generic",
         since="7.0.0", summary="Returns the expiration time of a key as a Unix timestamp.",
         keys=(1, 1, 1))
def expiretime(conn: Connection, args: list[bytes]) -> bytes:
    return _ttl(conn, args[1], False, True)


# PEXPIRETIME key
@command("pexpiretime", 2, "readonly fast", "keyspace read fast", group="generic",
         since="7.0.0", summary="Returns the expiration time of a key as a Unix milliseconds "
                                "timestamp.", keys=(1, 1, 1))
def pexpiretime(conn: Connection, args: list[bytes]) -> bytes:
    return _ttl(conn, args[1], True, True)


# PERSIST key
@command("persist", 2, "write fast", "keyspace write fast", group="generic", since="2.2.0",
         summary="Removes the expiration time of a key.", keys=(1, 1, 1))
def persist(conn: Connection, args: list[bytes]) -> bytes:
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    if ks.write(db, args[1]) is None or not ks.persist(db, args[1]):
        return ZERO
    ks.notify(GENERIC, b"persist", args[1], db.index)
    return ONE


# --- OBJECT --------------------------------------------------------------------------

container("object", "", "slow", group="generic", since="2.2.3",
          summary="A container for object introspection commands.", help_lines=(
              "ENCODING <key>",
              "    Return the kind of internal representation used in order to store the value",
              "    associated with a <key>.",
              "FREQ <key>",
              "    Return the access frequency index of the <key>. The returned integer is",
              "    proportional to the logarithm of the recent access frequency of the key.",
              "IDLETIME <key>",
              "    Return the idle time of the <key>, that is the approximated number of",
              "    seconds elapsed since the last access to the key.",
              "REFCOUNT <key>",
              "    Return the number of references of the value associated with the specified",
              "    <key>.",
          ))


# OBJECT HELP
@command("object|help", 2, "loading stale", "keyspace slow", group="generic", since="6.2.0",
         summary="Returns helpful text about the different subcommands.")
def object_help(conn: Connection, args: list[bytes]) -> bytes:
    # Redis 7 words the last line "Prints this help." here.
    reply = help_reply(conn, args)
    return reply.replace(b"+    Print this help.\r\n", b"+    Prints this help.\r\n")


_POLICY_NOTE = ("Please note that when switching between policies at runtime LRU and LFU data "
                "will take some time to adjust.")
_INT_STRING = re.compile(rb"-?[1-9][0-9]{0,18}|0")
_SHARED_INTEGERS = 10000  # Redis shares the objects of integers 0..9999 ...
_SHARED_REFCOUNT = 2147483647  # ... and reports this refcount for them


def _as_integer(value: object) -> int | None:
    """The integer a string value is stored as by Redis (int encoding), if any."""
    if type(value) is bytes and len(value) <= 20 and _INT_STRING.fullmatch(value):
        number = int(value)
        if _INT64_MIN <= number <= _INT64_MAX:
            return number
    return None


def _object_lookup(conn: Connection, key: bytes) -> object | None:
    """OBJECT's lookup: no access-time update, no notification, no stats."""
    ks = conn.server.keyspace
    return ks.peek(ks.dbs[conn.db], key)


# OBJECT ENCODING key
@command("object|encoding", 3, "readonly", "keyspace read slow", group="generic",
         since="2.2.3", summary="Returns the internal encoding of a Redis object.",
         keys=(2, 2, 1))
def object_encoding(conn: Connection, args: list[bytes]) -> bytes:
    value = _object_lookup(conn, args[2])
    if value is None:
        return null(conn.proto)
    if _as_integer(value) is not None:
        return bulk(b"int")
    if type(value) is not bytearray and len(value) <= 44:
        return bulk(b"embstr")
    return bulk(b"raw")


# OBJECT FREQ key
@command("object|freq", 3, "readonly", "keyspace read slow", group="generic", since="4.0.0",
         summary="Returns the logarithmic access frequency counter of a Redis object.",
         keys=(2, 2, 1))
def object_freq(conn: Connection, args: list[bytes]) -> bytes:
    value = _object_lookup(conn, args[2])
    if value is None:
        return null(conn.proto)
    ks = conn.server.keyspace
    if not ks.lfu:
        return error("An LFU maxmemory policy is not selected, access frequency not tracked. "
                     + _POLICY_NOTE)
    return integer(ks.lfu_counter(ks.dbs[conn.db].access.get(args[2], 0)))


# OBJECT IDLETIME key
@command("object|idletime", 3, "readonly", "keyspace read slow", group="generic",
         since="2.2.3", summary="Returns the time since the last access to a Redis object.",
         keys=(2, 2, 1))
def object_idletime(conn: Connection, args: list[bytes]) -> bytes:
    value = _object_lookup(conn, args[2])
    if value is None:
        return null(conn.proto)
    ks = conn.server.keyspace
    if ks.lfu:
        return error("An LFU maxmemory policy is selected, idle time not tracked. "
                     + _POLICY_NOTE)
    last = ks.dbs[conn.db].access.get(args[2], ks.clock)
    return integer(max(0, ks.clock - last))


# OBJECT REFCOUNT key
@command("object|refcount", 3, "readonly", "keyspace read slow", group="generic",
         since="2.2.3", summary="Returns the reference count of a value of a key.",
         keys=(2, 2, 1))
def object_refcount(conn: Connection, args: list[bytes]) -> bytes:
    value = _object_lookup(conn, args[2])
    if value is None:
        return null(conn.proto)
    ks = conn.server.keyspace
    number = _as_integer(value)
    shared = number is not None and 0 <= number < _SHARED_INTEGERS and not (
        ks.maxmemory and (ks.lfu or ks.policy.endswith("lru")))
    return integer(_SHARED_REFCOUNT if shared else 1)
