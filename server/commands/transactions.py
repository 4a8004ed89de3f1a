"""Transactions: MULTI, EXEC, DISCARD, WATCH, UNWATCH.

While a client is in MULTI, `execute` queues its commands (replying +QUEUED) after
the checks Redis makes before queuing; a command that fails those checks flags the
transaction, and EXEC then answers EXECABORT. WATCH records the client in the
database's `watched` index; any change to a watched key (including its expiry)
marks the client's transaction as failed, and EXEC answers a null array.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resp.encode import OK, array_header, error, null_array
from server.commands import command

if TYPE_CHECKING:
    from server.connection import Connection

EXECABORT = error("Transaction discarded because of previous errors.", "EXECABORT")


def unwatch_all(conn: Connection) -> None:
    """Forget every key the client watches (EXEC, DISCARD, UNWATCH, disconnect)."""
    for db, key in conn.watching:
        watchers = db.watched.get(key)
        if watchers is not None:
            watchers.pop(conn, None)
            if not watchers:
                del db.watched[key]
    conn.watching = []
    conn.watch_dirty = False


def discard_transaction(conn: Connection) -> None:
    """Leave MULTI, dropping the queue, and unwatch (discardTransaction)."""
    conn.multi = None
    conn.multi_failed = False
    unwatch_all(conn)


# MULTI
@command("multi", 1, "noscript loading stale fast allow_busy", "fast transaction",
         group="transactions", since="1.2.0", summary="Starts a transaction.")
def multi(conn: Connection, args: list[bytes]) -> bytes:
    if conn.multi is not None:
        return error("MULTI calls can not be nested")
    conn.multi = []
    return OK


# DISCARD
@command("discard", 1, "noscript loading stale fast allow_busy", "fast transaction",
         group="transactions", since="2.0.0", summary="Discards a transaction.")
def discard(conn: Connection, args: list[bytes]) -> bytes:
    if conn.multi is None:
        return error("DISCARD without MULTI")
    discard_transaction(conn)
    return OK


def _watched_key_expired(conn: Connection) -> bool:
    """Whether a key that existed when watched has logically expired since (Redis 7)."""
    ks = conn.server.keyspace
    for db, key in conn.watching:
        if not db.watched[key][conn] and key in db.data and ks.is_expired(db, key):
            return True
    return False


# EXEC
@command("exec", 1, "noscript loading stale skip_slowlog", "slow transaction",
         group="transactions", since="1.2.0", summary="Executes all commands in a transaction.")
def exec_(conn: Connection, args: list[bytes]) -> bytes | None:
    queued = conn.multi
    if queued is None:
        return error("EXEC without MULTI")
    if conn.multi_failed:
        discard_transaction(conn)
        return EXECABORT
    if conn.watch_dirty or (conn.watching and _watched_key_expired(conn)):
        discard_transaction(conn)
        return null_array(conn.proto)
    ks = conn.server.keyspace
    if ks.maxmemory and any(entry.denyoom for entry, _ in queued) and not ks.make_room():
        discard_transaction(conn)
        return error("Transaction discarded because of: OOM command not allowed when used "
                     "memory > 'maxmemory'.", "EXECABORT")
    conn.multi = None
    unwatch_all(conn)
    outbox = conn.outbox
    outbox.append(array_header(len(queued)))
    for entry, queued_args in queued:
        conn.last_command = entry.name
        if entry.name == "ssubscribe":
            # Redis runs EXEC's commands as a client that may not block, and SSUBSCRIBE
            # refuses such a client (SUBSCRIBE and PSUBSCRIBE do not).
            outbox.append(_SSUBSCRIBE_IN_EXEC)
            continue
        reply = entry.handler(conn, queued_args)
        if reply is not None:
            outbox.append(reply)
    return None


_SSUBSCRIBE_IN_EXEC = error("SSUBSCRIBE isn't allowed for a DENY BLOCKING client")


# WATCH key [key ...]
@command("watch", -2, "noscript loading stale fast allow_busy", "fast transaction",
         group="transactions", since="2.2.0", summary="Monitors changes to keys to determine "
                                                      "the execution of a transaction.",
         keys=(1, -1, 1))
def watch(conn: Connection, args: list[bytes]) -> bytes:
    if conn.multi is not None:
        return error("WATCH inside MULTI is not allowed")
    ks = conn.server.keyspace
    db = ks.dbs[conn.db]
    for key in args[1:]:
        watchers = db.watched.setdefault(key, {})
        if conn not in watchers:
            # Remember whether the key had already expired: its removal is then no change.
            watchers[conn] = key in db.data and ks.is_expired(db, key)
            conn.watching.append((db, key))
    return OK


# UNWATCH
@command("unwatch", 1, "noscript loading stale fast allow_busy", "fast transaction",
         group="transactions", since="2.2.0", summary="Forgets about watched keys of a "
                                                      "transaction.")
def unwatch(conn: Connection, args: list[bytes]) -> bytes:
    unwatch_all(conn)
    return OK
