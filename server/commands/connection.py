"""Connection commands: PING, ECHO, QUIT, RESET, HELLO, AUTH, SELECT, CLIENT."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from resp.encode import (
    OK,
    PONG,
    bulk,
    error,
    integer,
    map_,
    null,
    verbatim,
)
from resp.parser import _parse_int as parse_integer
from server.commands import command, container, help_reply, wrong_arity
from server.commands.operator import stop_monitoring
from server.commands.transactions import discard_transaction

if TYPE_CHECKING:
    from server.connection import Connection

_WRONGPASS = error("invalid username-password pair or user is disabled.", "WRONGPASS")
_BAD_NAME = error("Client names cannot contain spaces, newlines or special characters.")


def _valid_name(name: bytes) -> bool:
    """Client names and library names: printable ASCII with no spaces, as Redis requires."""
    return all(33 <= c <= 126 for c in name)


def _check_password(conn: Connection, name: bytes, password: bytes) -> bool:
    """Authenticate as the user `name` (enabled, and the password one of its own or
    it has nopass); True on success, and the connection then runs as that user."""
    user = conn.server.acl.authenticate(name, password)
    if user is None:
        return False
    conn.user = user
    conn.authenticated = True
    conn.update_access()
    return True


# PING [message]
@command("ping", -1, "fast", "fast connection", group="connection", since="1.0.0",
         summary="Returns the server's liveliness response.", pubsub_ok=True)
def ping(conn: Connection, args: list[bytes]) -> bytes:
    if len(args) > 2:
        return wrong_arity("ping")
    # A RESP2 subscriber can only read arrays, so Redis answers it with a `pong` array.
    if not conn.resp3 and conn.subscribed:
        return b"*2\r\n$4\r\npong\r\n" + bulk(args[1] if len(args) == 2 else b"")
    return bulk(args[1]) if len(args) == 2 else PONG


# ECHO message
@command("echo", 2, "loading stale fast", "fast connection", group="connection", since="1.0.0",
         summary="Returns the given string.")
def echo(conn: Connection, args: list[bytes]) -> bytes:
    return bulk(args[1])


# QUIT
@command("quit", -1, "noscript loading stale fast no_auth allow_busy", "fast connection",
         group="connection", since="1.0.0", summary="Closes the connection.", pubsub_ok=True,
         no_auth=True)
def quit_(conn: Connection, args: list[bytes]) -> bytes:
    conn.closing = True
    return OK


# RESET
@command("reset", 1, "noscript loading stale fast no_auth allow_busy", "fast connection",
         group="connection", since="6.2.0", summary="Resets the connection.", pubsub_ok=True,
         no_auth=True)
def reset(conn: Connection, args: list[bytes]) -> bytes:
    """Back to a new connection's state; subscriptions go without unsubscribe frames."""
    discard_transaction(conn)
    conn.server.hub.remove_all(conn)
    conn.server.tracking.disable(conn)
    stop_monitoring(conn)
    conn.resp3 = False
    conn.db = 0
    conn.name = b""
    # Back to the default user, authenticated only if it needs no password.
    conn.user = conn.server.acl.default
    conn.authenticated = conn.user.nopass and conn.user.enabled
    conn.update_access()
    return b"+RESET\r\n"


# AUTH [username] password
@command("auth", -2, "noscript loading stale fast no_auth allow_busy", "fast connection",
         group="connection", since="1.0.0", summary="Authenticates the connection.",
         no_auth=True)
def auth(conn: Connection, args: list[bytes]) -> bytes:
    if len(args) > 3:
        return error("syntax error")
    if len(args) == 2 and conn.server.acl.default.nopass:
        return error("AUTH <password> called without any password configured for the default "
                     "user. Are you sure your configuration is correct?")
    user = args[1] if len(args) == 3 else b"default"
    return OK if _check_password(conn, user, args[-1]) else _WRONGPASS


# HELLO [protover [AUTH username password] [SETNAME clientname]]
@command("hello", -1, "noscript loading stale fast no_auth allow_busy", "fast connection",
         group="connection", since="6.0.0", summary="Handshakes with the Redis server.",
         no_auth=True)
def hello(conn: Connection, args: list[bytes]) -> bytes:
    version = 3 if conn.resp3 else 2
    if len(args) >= 2:
        version = parse_integer(args[1])
        if version is None:
            return error("Protocol version is not an integer or out of range")
        if not 2 <= version <= 3:
            return error("unsupported protocol version", "NOPROTO")
    name = credentials = None
    i = 2
    while i < len(args):
        option = args[i].lower()
        if option == b"auth" and i + 2 < len(args):
            credentials = args[i + 1], args[i + 2]
            i += 3
        elif option == b"setname" and i + 1 < len(args):
            # Redis 7.2+ checks the name here, before later options and AUTH, but only
            # sets it once authenticated.
            name = args[i + 1]
            if not _valid_name(name):
                return _BAD_NAME
            i += 2
        else:
            return error(b"Syntax error in HELLO option '%b'" % args[i])
    if credentials is not None and not _check_password(conn, *credentials):
        return _WRONGPASS
    if not conn.authenticated:
        return error("HELLO must be called with the client already authenticated, otherwise "
                     "the HELLO <proto> AUTH <user> <pass> option can be used to authenticate "
                     "the client and select the RESP protocol version at the same time",
                     "NOAUTH")
    if name is not None:
        conn.name = name
    conn.resp3 = version == 3
    from server.serve import REDIS_VERSION

    mode = b"cluster" if conn.server.config["cluster-enabled"] else b"standalone"
    return map_([
        (b"$6\r\nserver\r\n", bulk(b"redis")),
        (b"$7\r\nversion\r\n", bulk(REDIS_VERSION.encode())),
        (b"$5\r\nproto\r\n", integer(version)),
        (b"$2\r\nid\r\n", integer(conn.id)),
        (b"$4\r\nmode\r\n", bulk(mode)),
        (b"$4\r\nrole\r\n", bulk(b"master")),
        (b"$7\r\nmodules\r\n", b"*0\r\n"),
    ], version)


# SELECT index
@command("select", 2, "loading stale fast", "fast connection", group="connection",
         since="1.0.0", summary="Changes the selected database.")
def select(conn: Connection, args: list[bytes]) -> bytes:
    index = parse_integer(args[1])
    if index is None:
        return error("value is not an integer or out of range")
    if not -2**31 <= index < 2**31:
        # Redis's generic int-range message, "must between" included.
        return error("value is out of range, value must between -2147483648 and 2147483647")
    if conn.server.config["cluster-enabled"] and index != 0:
        return error("SELECT is not allowed in cluster mode")
    if not 0 <= index < len(conn.server.keyspace.dbs):
        return error("DB index is out of range")
    conn.db = index
    return OK


container("client", "", "slow", group="connection", since="2.4.0",
          summary="A container for client connection commands.", help_lines=(
              "CACHING (YES|NO)",
              "    Enable/disable tracking of the keys for next command in OPTIN/OPTOUT modes.",
              "GETREDIR",
              "    Return the client ID we are redirecting to when tracking is enabled.",
              "GETNAME", "    Return the name of the current connection.",
              "ID", "    Return the ID of the current connection.",
              "INFO", "    Return information about the current client connection.",
              "KILL <ip:port>", "    Kill connection made from <ip:port>.",
              "KILL <option> <value> [<option> <value> [...]]",
              "    Kill connections. Options are:",
              "    * ADDR (<ip:port>|<unixsocket>:0)",
              "    * LADDR (<ip:port>|<unixsocket>:0)",
              "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
              "    * USER <username>", "    * ID <client-id>", "    * SKIPME (YES|NO)",
              "    * MAXAGE <maxage>",
              "LIST [options ...]", "    Return information about client connections.",
              "SETNAME <name>", "    Assign the name <name> to the current connection.",
              "SETINFO <option> <value>", "    Set client meta attr.",
              "TRACKING (ON|OFF) [REDIRECT <id>] [BCAST] [PREFIX <prefix> [...]]",
              "         [OPTIN] [OPTOUT] [NOLOOP]",
              "    Control server assisted client side caching.",
              "TRACKINGINFO", "    Report tracking status for the current connection.",
              "NO-EVICT (ON|OFF)", "NO-TOUCH (ON|OFF)",
          ))

command("client|help", 2, "loading stale", "slow connection", group="connection", since="5.0.0",
        summary="Returns helpful text about the different subcommands.")(help_reply)


# CLIENT ID
@command("client|id", 2, "noscript loading stale", "slow connection", group="connection",
         since="5.0.0", summary="Returns the unique client ID of the connection.")
def client_id(conn: Connection, args: list[bytes]) -> bytes:
    return integer(conn.id)


# CLIENT SETNAME name
@command("client|setname", 3, "noscript loading stale", "slow connection", group="connection",
         since="2.6.9", summary="Sets the connection name.")
def client_setname(conn: Connection, args: list[bytes]) -> bytes:
    if not _valid_name(args[2]):
        return _BAD_NAME
    conn.name = args[2]
    return OK


# CLIENT GETNAME
@command("client|getname", 2, "noscript loading stale", "slow connection", group="connection",
         since="2.6.9", summary="Returns the name of the connection.")
def client_getname(conn: Connection, args: list[bytes]) -> bytes:
    return bulk(conn.name) if conn.name else null(conn.proto)


# CLIENT SETINFO LIB-NAME|LIB-VER value
@command("client|setinfo", 4, "noscript loading stale", "slow connection", group="connection",
         since="7.2.0", summary="Sets information specific to the client or connection.")
def client_setinfo(conn: Connection, args: list[bytes]) -> bytes:
    attr = args[2].lower()
    if attr not in (b"lib-name", b"lib-ver"):
        return error(b"Unrecognized option '%b'" % args[2])
    if not _valid_name(args[3]):
        return error(b"%b cannot contain spaces, newlines or special characters." % args[2])
    if attr == b"lib-name":
        conn.lib_name = args[3]
    else:
        conn.lib_ver = args[3]
    return OK


def client_line(conn: Connection) -> bytes:
    """One client's line of CLIENT LIST / CLIENT INFO, with Redis 7.4's fields."""
    now = time.monotonic()
    tracking = conn.server.tracking
    # Redis's letters, in Redis's order: O monitor, P pub/sub, x MULTI, t/R/B tracking,
    # d a watched key changed.
    flags = ("O" if conn in conn.server.stats.monitors else "") \
        + ("P" if conn.subscribed else "") + ("x" if conn.multi is not None else "") \
        + tracking.client_flags(conn) + ("d" if conn.watch_dirty else "") + conn.flags or "N"
    return (
        f"id={conn.id} addr={conn.addr} laddr={conn.laddr} fd={conn.fd} "
        f"name={conn.name.decode(errors='replace')} age={int(now - conn.created)} "
        f"idle={int(now - conn.last_interaction)} flags={flags} db={conn.db} "
        f"sub={len(conn.channels)} psub={len(conn.patterns)} ssub={len(conn.shard_channels)} "
        f"multi={-1 if conn.multi is None else len(conn.multi)} watch={len(conn.watching)} "
        f"qbuf={conn.parser.pending} qbuf-free=0 argv-mem=0 multi-mem=0 "
        f"rbs=16384 rbp=0 obl=0 oll={len(conn.outbox)} omem={conn.outbox_size} "
        f"tot-mem={conn.outbox_size + 2048} events=r cmd={conn.last_command} "
        f"user={conn.user.name.decode(errors='replace')} "
        f"redir={tracking.redirect_of(conn)} resp={conn.proto} "
        f"lib-name={conn.lib_name.decode(errors='replace')} "
        f"lib-ver={conn.lib_ver.decode(errors='replace')}\n"
    ).encode()


_CLIENT_TYPES = (b"normal", b"master", b"replica", b"slave", b"pubsub")


# CLIENT LIST [TYPE type] [ID id [id ...]]
@command("client|list", -2, "admin noscript loading stale", "admin slow dangerous connection",
         group="connection", since="2.4.0", summary="Lists open connections.")
def client_list(conn: Connection, args: list[bytes]) -> bytes:
    clients = list(conn.server.clients.values())
    if len(args) > 2:
        option = args[2].lower()
        if option == b"type" and len(args) == 4:
            kind = args[3].lower()
            if kind not in _CLIENT_TYPES:
                return error(b"Unknown client type '%b'" % args[3])
            wanted = kind == b"pubsub"
            clients = [c for c in clients
                       if c.subscribed == wanted and kind in (b"normal", b"pubsub")]
        elif option == b"id" and len(args) > 3:
            ids = [parse_integer(a) for a in args[3:]]
            if None in ids:
                return error("Invalid client ID")
            clients = [c for c in clients if c.id in ids]
        else:
            return error("syntax error")
    return verbatim(b"".join(client_line(c) for c in clients), conn.proto)


# CLIENT INFO
@command("client|info", 2, "noscript loading stale", "slow connection", group="connection",
         since="6.2.0", summary="Returns information about the connection.")
def client_info(conn: Connection, args: list[bytes]) -> bytes:
    return verbatim(client_line(conn), conn.proto)


# CLIENT KILL ip:port | CLIENT KILL <filter> <value> [...]
@command("client|kill", -3, "admin noscript loading stale", "admin slow dangerous connection",
         group="connection", since="2.4.0", summary="Terminates open connections.")
def client_kill(conn: Connection, args: list[bytes]) -> bytes:
    clients = list(conn.server.clients.values())
    if len(args) == 3:
        victims = [c for c in clients if c.addr.encode() == args[2]]
        if not victims:
            return error("No such client")
        _kill(conn, victims[:1])
        return OK
    if len(args) % 2:
        return error("syntax error")
    skipme = True
    for i in range(2, len(args), 2):
        option, value = args[i].lower(), args[i + 1]
        if option == b"id":
            wanted = parse_integer(value)
            if wanted is None or wanted <= 0:
                return error("client-id should be greater than 0")
            clients = [c for c in clients if c.id == wanted]
        elif option == b"addr":
            clients = [c for c in clients if c.addr.encode() == value]
        elif option == b"laddr":
            clients = [c for c in clients if c.laddr.encode() == value]
        elif option == b"type":
            kind = value.lower()
            if kind not in _CLIENT_TYPES:
                return error(b"Unknown client type '%b'" % value)
            clients = [c for c in clients if c.subscribed == (kind == b"pubsub")
                       and kind in (b"normal", b"pubsub")]
        elif option == b"user":
            user = conn.server.acl.users.get(value)
            if user is None:
                return error(b"No such user '%b'" % value)
            clients = [c for c in clients if c.user is user]
        elif option == b"skipme":
            if value.lower() not in (b"yes", b"no"):
                return error("syntax error")
            skipme = value.lower() == b"yes"
        elif option == b"maxage":
            age = parse_integer(value)
            if age is None:
                return error("syntax error")
            now = time.monotonic()
            clients = [c for c in clients if now - c.created >= age]
        else:
            return error("syntax error")
    if skipme:
        clients = [c for c in clients if c is not conn]
    _kill(conn, clients)
    return integer(len(clients))


def _kill(conn: Connection, victims: list[Connection]) -> None:
    """Close the given clients; the caller itself closes after this reply is sent."""
    for victim in victims:
        if victim is conn:
            conn.closing = True
        else:
            victim.kill(None)


def _on_off(name: str, flags: str, categories: str, since: str, summary: str) -> None:
    """CLIENT NO-EVICT / NO-TOUCH: accepted; respd does not evict clients or track LRU yet."""

    def handler(conn: Connection, args: list[bytes]) -> bytes:
        return OK if args[2].lower() in (b"on", b"off") else error("syntax error")

    command(f"client|{name}", 3, flags, categories, group="connection", since=since,
            summary=summary)(handler)


_on_off("no-evict", "admin noscript loading stale", "admin slow dangerous connection", "7.0.0",
        "Sets the client eviction mode of the connection.")
_on_off("no-touch", "noscript loading stale", "slow connection", "7.2.0",
        "Controls whether commands sent by the client affect the LRU/LFU of accessed keys.")


# CLIENT TRACKING ON|OFF [REDIRECT id] [PREFIX prefix [PREFIX prefix ...]] [BCAST] [OPTIN]
#     [OPTOUT] [NOLOOP]
@command("client|tracking", -3, "noscript loading stale", "slow connection",
         group="connection", since="6.0.0",
         summary="Controls server-assisted client-side caching for the connection.")
def client_tracking(conn: Connection, args: list[bytes]) -> bytes:
    return conn.server.tracking.command(conn, args)


# CLIENT CACHING YES|NO
@command("client|caching", 3, "noscript loading stale", "slow connection", group="connection",
         since="6.0.0", summary="Instructs the server whether to track the keys in the next "
                                "request.")
def client_caching(conn: Connection, args: list[bytes]) -> bytes:
    return conn.server.tracking.caching(conn, args)


# CLIENT GETREDIR
@command("client|getredir", 2, "noscript loading stale", "slow connection",
         group="connection", since="6.0.0",
         summary="Returns the client ID to which the connection's tracking notifications are "
                 "redirected.")
def client_getredir(conn: Connection, args: list[bytes]) -> bytes:
    return integer(conn.server.tracking.redirect_of(conn))


# CLIENT TRACKINGINFO
@command("client|trackinginfo", 2, "noscript loading stale", "slow connection",
         group="connection", since="6.2.0",
         summary="Returns information about server-assisted client-side caching for the "
                 "connection.")
def client_trackinginfo(conn: Connection, args: list[bytes]) -> bytes:
    return conn.server.tracking.info(conn)
