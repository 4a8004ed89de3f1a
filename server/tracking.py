"""Client-side caching: CLIENT TRACKING's state, and the invalidation messages.

The rules, as Redis 7 applies them (tracking.c):
- Default mode: the keys a tracking client reads with a read-only command are
  remembered, missing keys included, by name whatever the database. When such a key
  changes (a write, an expiry, an eviction), every client that read it gets one
  invalidation and the key is forgotten. The table holds client ids, so a client that
  left, or turned tracking off, is skipped then; one that turned it on again is not.
- OPTIN: only the command (or MULTI/EXEC) right after CLIENT CACHING yes remembers
  keys; OPTOUT: every command except the one after CLIENT CACHING no. CLIENT
  subcommands leave that one-command flag alone.
- BCAST: nothing is remembered; a client registers prefixes ("" = every key), and the
  keys changed under a prefix are sent once per batch of commands, one message per
  prefix (in prefix order) listing them (in key order).
- NOLOOP: no invalidation for a change the client made itself.
- Delivery: a RESP3 client gets a push `invalidate [keys]`. With REDIRECT the target
  gets it instead: a RESP3 target as that push, a RESP2 target in pub/sub mode as a
  `message` on `__redis__:invalidate`; anything else gets nothing (RESP2 has no
  pushes). If the target has gone, a RESP3 client gets `tracking-redir-broken <id>`.
- The client whose own command changed a key gets the invalidation after that
  command's reply (after EXEC's, in a transaction). FLUSHALL and FLUSHDB send every
  tracking client a null key list and empty the table.
- The table holds at most `tracking-table-max-keys` keys (0: no limit); beyond that
  the oldest are invalidated, as if they had changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from resp.encode import OK, array_header, bulk, error, integer, map_, set_
from resp.parser import _parse_int as parse_integer
from server.commands.cluster import command_keys

if TYPE_CHECKING:
    from server.commands import Command
    from server.connection import Connection
    from server.serve import Server

_INVALIDATE = b">2\r\n$10\r\ninvalidate\r\n"
_INVALIDATE_MESSAGE = b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n"
_BROKEN = b">2\r\n$21\r\ntracking-redir-broken\r\n"
_SYNTAX = error("syntax error")


class ClientTracking:
    """One tracking client's options (CLIENT TRACKING ON ...)."""

    __slots__ = ("bcast", "broken", "caching", "noloop", "optin", "optout", "prefixes",
                 "redirect")

    def __init__(self) -> None:
        self.bcast = False  # BCAST: prefixes rather than the keys read
        self.optin = False  # OPTIN: remember keys only after CLIENT CACHING yes
        self.optout = False  # OPTOUT: remember keys except after CLIENT CACHING no
        self.noloop = False  # NOLOOP: not told of its own changes
        self.caching = False  # CLIENT CACHING given for the next command
        self.redirect = 0  # client id the invalidations go to (0: this client)
        self.broken = False  # the redirect target was found gone
        self.prefixes: list[bytes] = []  # BCAST prefixes, in the order given

    def flags(self) -> list[bytes]:
        """CLIENT TRACKINGINFO's flags, in Redis's order."""
        flags = [b"on"]
        if self.bcast:
            flags.append(b"bcast")
        if self.optin:
            flags.append(b"optin")
            if self.caching:
                flags.append(b"caching-yes")
        if self.optout:
            flags.append(b"optout")
            if self.caching:
                flags.append(b"caching-no")
        if self.noloop:
            flags.append(b"noloop")
        if self.broken:
            flags.append(b"broken_redirect")
        return flags


class Prefix:
    """One BCAST prefix: the clients that registered it and the keys changed under it
    since the last batch (key -> the client that changed it, for NOLOOP)."""

    __slots__ = ("clients", "keys")

    def __init__(self) -> None:
        self.clients: dict[Connection, None] = {}
        self.keys: dict[bytes, Connection | None] = {}


def _keys_frame(keys: list[bytes] | None) -> bytes:
    """The key list of an invalidation: an array, or a null for a flush."""
    if keys is None:
        return b"_\r\n"
    return array_header(len(keys)) + b"".join(bulk(key) for key in keys)


class Tracking:
    """Every client's tracking state, the table of keys read, the BCAST prefixes."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.clients: dict[Connection, ClientTracking] = {}  # clients with tracking on
        self.table: dict[bytes, dict[int, None]] = {}  # key -> ids of clients that read it
        self.prefixes: dict[bytes, Prefix] = {}  # BCAST prefix -> its clients and keys
        self.pending = False  # some prefix has changed keys to send
        self.current: Connection | None = None  # the client whose command is running
        self.deferred: list[bytes | None] = []  # current's invalidations (None: a flush)

    def _update(self) -> None:
        """Tell the keyspace whether changes concern us, the dispatcher whether commands do."""
        active = bool(self.clients or self.table or self.prefixes)
        self.server.keyspace.tracking = self if active else None
        self.server.update_hooks()

    # --- CLIENT TRACKING / CACHING / TRACKINGINFO / GETREDIR -------------------------

    def command(self, conn: Connection, args: list[bytes]) -> bytes:
        """CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX p ...] [BCAST] [OPTIN] [OPTOUT]
        [NOLOOP], with Redis's checks in Redis's order."""
        asked = ClientTracking()
        i = 3
        while i < len(args):
            option = args[i].lower()
            more = i + 1 < len(args)
            if option == b"redirect" and more:
                i += 1
                if asked.redirect:
                    return error("A client can only redirect to a single other client")
                redirect = parse_integer(args[i])
                if redirect is None:
                    return error("value is not an integer or out of range")
                if redirect not in self.server.clients:
                    return error("The client ID you want redirect to does not exist")
                asked.redirect = redirect
            elif option in (b"bcast", b"optin", b"optout", b"noloop"):
                setattr(asked, option.decode(), True)
            elif option == b"prefix" and more:
                i += 1
                asked.prefixes.append(args[i])
            else:
                return _SYNTAX
            i += 1
        switch = args[2].lower()
        if switch == b"off":
            self.disable(conn)
            return OK
        if switch != b"on":
            return _SYNTAX
        state = self.clients.get(conn)
        if asked.prefixes and not asked.bcast:
            return error("PREFIX option requires BCAST mode to be enabled")
        if state is not None and state.bcast != asked.bcast:
            return error("You can't switch BCAST mode on/off before disabling tracking for "
                         "this client, and then re-enabling it with a different mode.")
        if asked.bcast and (asked.optin or asked.optout):
            return error("OPTIN and OPTOUT are not compatible with BCAST")
        if asked.optin and asked.optout:
            return error("You can't specify both OPTIN mode and OPTOUT mode")
        if state is not None and ((asked.optin and state.optout)
                                  or (asked.optout and state.optin)):
            return error("You can't switch OPTIN/OPTOUT mode before disabling tracking for "
                         "this client, and then re-enabling it with a different mode.")
        if asked.bcast:
            problem = _prefix_collision(state.prefixes if state else [], asked.prefixes)
            if problem is not None:
                return problem
        self._enable(conn, state, asked)
        return OK

    def _enable(self, conn: Connection, state: ClientTracking | None,
                asked: ClientTracking) -> None:
        """Turn tracking on (again): options are replaced, BCAST prefixes added to, and a
        pending CLIENT CACHING kept."""
        if state is None:
            state = self.clients[conn] = ClientTracking()
        state.redirect = asked.redirect
        state.broken = False
        state.bcast, state.optin, state.optout = asked.bcast, asked.optin, asked.optout
        state.noloop = asked.noloop
        if asked.bcast:
            for prefix in asked.prefixes or [b""]:
                if prefix not in state.prefixes:
                    state.prefixes.append(prefix)
                self.prefixes.setdefault(prefix, Prefix()).clients[conn] = None
        self._update()

    def disable(self, conn: Connection) -> None:
        """Turn tracking off (CLIENT TRACKING OFF, RESET, disconnect). The keys the client
        read stay in the table, under its id, until they change."""
        state = self.clients.pop(conn, None)
        if state is None:
            return
        for prefix in state.prefixes:
            registered = self.prefixes[prefix]
            del registered.clients[conn]
            if not registered.clients:
                del self.prefixes[prefix]
        self._update()

    def caching(self, conn: Connection, args: list[bytes]) -> bytes:
        """CLIENT CACHING YES|NO: whether the next command remembers its keys."""
        state = self.clients.get(conn)
        if state is None:
            return error("CLIENT CACHING can be called only when the client is in tracking "
                         "mode with OPTIN or OPTOUT mode enabled")
        answer = args[2].lower()
        if answer == b"yes":
            if not state.optin:
                return error("CLIENT CACHING YES is only valid when tracking is enabled in "
                             "OPTIN mode.")
        elif answer == b"no":
            if not state.optout:
                return error("CLIENT CACHING NO is only valid when tracking is enabled in "
                             "OPTOUT mode.")
        else:
            return _SYNTAX
        state.caching = True
        return OK

    def info(self, conn: Connection) -> bytes:
        """CLIENT TRACKINGINFO: flags, redirect and prefixes."""
        state = self.clients.get(conn)
        proto = conn.proto
        flags = state.flags() if state else [b"off"]
        prefixes = sorted(state.prefixes) if state else []
        return map_([
            (bulk(b"flags"), set_([bulk(flag) for flag in flags], proto)),
            (bulk(b"redirect"), integer(state.redirect if state else -1)),
            (bulk(b"prefixes"), array_header(len(prefixes))
             + b"".join(bulk(p) for p in prefixes)),
        ], proto)

    def redirect_of(self, conn: Connection) -> int:
        """CLIENT GETREDIR and CLIENT LIST's redir=: the target id, 0 for none, -1 if off."""
        state = self.clients.get(conn)
        return -1 if state is None else state.redirect

    def client_flags(self, conn: Connection) -> str:
        """CLIENT LIST's tracking flags: t (on), R (broken redirect), B (BCAST)."""
        state = self.clients.get(conn)
        if state is None:
            return ""
        return "t" + ("R" if state.broken else "") + ("B" if state.bcast else "")

    # --- keys read --------------------------------------------------------------------

    def after_command(self, conn: Connection, entry: Command, args: list[bytes]) -> None:
        """After a command of a tracking client: remember what it read, spend its CLIENT
        CACHING flag (unless in MULTI or a CLIENT command), then send the invalidations
        its own changes caused."""
        state = self.clients.get(conn)
        if state is not None:
            self.remember(conn, state, entry, args)
            if state.caching and conn.multi is None \
                    and not entry.name.startswith("client|"):
                state.caching = False
        if self.deferred:
            self._send_deferred(conn)

    def remember(self, conn: Connection, state: ClientTracking, entry: Command,
                 args: list[bytes]) -> None:
        """Remember the keys a read-only command read, as the client's mode allows."""
        if state.bcast or "readonly" not in entry.flags:
            return
        if (state.optin and not state.caching) or (state.optout and state.caching):
            return
        table = self.table
        for key in command_keys(entry, args):
            readers = table.get(key)
            if readers is None:
                readers = table[key] = {}
            readers[conn.id] = None
        limit = self.server.config["tracking-table-max-keys"]
        while limit and len(table) > limit:
            self.invalidate_key(next(iter(table)))

    # --- invalidation -----------------------------------------------------------------

    def invalidate_key(self, key: bytes) -> None:
        """A key changed: tell the clients that read it, and note it for BCAST prefixes."""
        if self.prefixes:
            self._note_broadcast(key)
        readers = self.table.pop(key, None)
        if readers:
            clients = self.server.clients
            current = self.current
            for client_id in readers:
                conn = clients.get(client_id)
                if conn is None:
                    continue
                state = self.clients.get(conn)
                if state is None or state.bcast:
                    continue
                if conn is current:
                    if not state.noloop:
                        self.deferred.append(key)
                else:
                    self._send(conn, state, [key])
        if not self.table and not self.clients and not self.prefixes:
            self._update()

    def flushed(self) -> None:
        """FLUSHALL or FLUSHDB: every tracking client drops its whole cache."""
        for conn, state in self.clients.items():
            if conn is self.current:
                self.deferred.append(None)
            else:
                self._send(conn, state, None)
        self.table.clear()
        self._update()

    def _send_deferred(self, conn: Connection) -> None:
        """The invalidations the client's own command caused, after its reply."""
        deferred, self.deferred = self.deferred, []
        state = self.clients.get(conn)
        if state is not None:
            for key in deferred:
                self._send(conn, state, None if key is None else [key])

    def _note_broadcast(self, key: bytes) -> None:
        """Queue a changed key for each BCAST prefix it falls under."""
        touched = self.server.hub.touched
        for prefix, registered in self.prefixes.items():
            if key.startswith(prefix):
                registered.keys.setdefault(key, self.current)
                touched.update(registered.clients)  # so the batch's end flushes them
                self.pending = True

    def send_broadcasts(self) -> None:
        """At the end of a batch: one message per prefix listing the keys changed."""
        self.pending = False
        for prefix in sorted(self.prefixes):
            registered = self.prefixes[prefix]
            if not registered.keys:
                continue
            changed = registered.keys
            registered.keys = {}
            keys = sorted(changed)
            for conn in registered.clients:
                state = self.clients[conn]
                mine = [k for k in keys if changed[k] is not conn] if state.noloop else keys
                if mine:
                    self._send(conn, state, mine)

    def _send(self, conn: Connection, state: ClientTracking, keys: list[bytes] | None) -> None:
        """Queue one invalidation for a tracking client, where its mode sends it."""
        target = conn
        if state.redirect:
            target = self.server.clients.get(state.redirect)
            if target is None:
                state.broken = True
                if conn.resp3:
                    self._queue(conn, _BROKEN + integer(state.redirect))
                return
        if target.resp3:
            self._queue(target, _INVALIDATE + _keys_frame(keys))
        elif state.redirect and target.subscribed:
            self._queue(target, _INVALIDATE_MESSAGE + (b"$-1\r\n" if keys is None
                                                       else _keys_frame(keys)))

    def _queue(self, conn: Connection, frame: bytes) -> None:
        """Append a frame to a client's outbox, to leave at the end of the batch."""
        conn.outbox.append(frame)
        conn.outbox_size += len(frame)
        self.server.hub.touched[conn] = None

    # --- INFO -------------------------------------------------------------------------

    def stats(self) -> list[tuple[str, int]]:
        """INFO's tracking_total_* counters."""
        return [("tracking_total_keys", len(self.table)),
                ("tracking_total_items", sum(len(ids) for ids in self.table.values())),
                ("tracking_total_prefixes", len(self.prefixes))]


def _overlap(a: bytes, b: bytes) -> bool:
    """Whether one prefix starts the other."""
    return a.startswith(b) or b.startswith(a)


def _prefix_collision(existing: list[bytes], given: list[bytes]) -> bytes | None:
    """Redis's check that a client's BCAST prefixes do not overlap, or the error."""
    for i, prefix in enumerate(given):
        for old in sorted(existing):
            if _overlap(old, prefix):
                return error(b"Prefix '%b' overlaps with an existing prefix '%b'. Prefixes "
                             b"for a single client must not overlap."
                             % (prefix.split(b"\0")[0], old.split(b"\0")[0]))
        for other in given[i + 1:]:
            if _overlap(prefix, other):
                return error(b"Prefix '%b' overlaps with another provided prefix '%b'. "
                             b"Prefixes for a single client must not overlap."
                             % (prefix.split(b"\0")[0], other.split(b"\0")[0]))
    return None
