"""The server: listeners, the clients, shared state; `serve()` and the thread runner.

`serve()` is the one entry point: the CLI runs it, tests start it with
`nursery.start(serve, ...)`, a trio program embeds it, and `running()` runs it in a
background thread for synchronous programs. Cancelling it is a graceful shutdown:
stop accepting, send what is queued (within a deadline), close.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import trio

# Importing the command modules registers their commands in the table.
import server.commands.acl
import server.commands.cluster
import server.commands.connection
import server.commands.keys
import server.commands.operator
import server.commands.pubsub
import server.commands.server
import server.commands.strings
import server.commands.transactions  # noqa: F401
from pubsub.glob import match
from pubsub.hub import Hub
from server.acl import Acl, User
from server.commands.cluster import Cluster
from server.commands.operator import Stats, stop_monitoring
from server.config import Config, ConfigError
from server.connection import Connection, is_local
from server.commands.transactions import unwatch_all
from server.keyspace import Keyspace, active_expiry
from server.reactor import Reactor
from server.transport import TLSConnection, tls_context
from server.tracking import Tracking

log = logging.getLogger("respd")

VERSION = "0.1.0"  # respd's own version
REDIS_VERSION = "7.4.0"  # the Redis version respd answers as (clients check it)
SHUTDOWN_GRACE = 2.0  # seconds to deliver queued replies and messages on shutdown
CRON_PERIOD = 1.0  # seconds between visits to every client (idle timeout, soft limits)

# What Redis tells a client from another host when it has no password to protect it.
DENIED = (b"-DENIED Redis is running in protected mode because protected mode is enabled "
          b"and no password is set for the default user. In this mode connections are only "
          b"accepted from the loopback interface. If you want to connect from external "
          b"computers to Redis you may adopt one of the following solutions: 1) Just disable "
          b"protected mode sending the command 'CONFIG SET protected-mode no' from the "
          b"loopback interface by connecting to Redis from the same host the server is "
          b"running, however MAKE SURE Redis is not publicly accessible from internet if you "
          b"do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can "
          b"just disable the protected mode by editing the Redis configuration file, and "
          b"setting the protected mode option to 'no', and then restarting the server. 3) If "
          b"you started the server manually just for testing, restart it with the "
          b"'--protected-mode no' option. 4) Setup a an authentication password for the "
          b"default user. NOTE: You only need to do one of the above things in order for the "
          b"server to start accepting connections from the outside.\r\n")


class StartupError(Exception):
    """The server cannot start (address in use, bad option): a one-line message."""


class Server:
    """State shared by all connections of one server."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.hub = Hub()
        self.reactor = Reactor()
        self.keyspace = Keyspace(config, self.hub)
        self.clients: dict[int, Connection] = {}  # client id -> connection, in id order
        self.next_client_id = 1
        self.started = time.time()
        self.run_id = os.urandom(20).hex()
        self.addresses: list[tuple[str, int]] = []  # bound (host, port) pairs
        self.tls_addresses: list[tuple[str, int]] = []  # the same for tls-port
        self.tls_context: ssl.SSLContext | None = None  # set when tls-port is served
        self.commands_processed = 0
        self.connections_received = 0
        self.rejected_connections = 0
        self.output_limit_disconnections = 0
        self.query_limit_disconnections = 0
        self.acl = Acl(config["requirepass"], config["acl-pubsub-default"])
        for name, rules in config.users:  # `user` lines of the config file
            self.acl.set_user(name, rules)
        # Limits read on every request or publish, kept here rather than looked up.
        self.query_buffer_limit = config["client-query-buffer-limit"]
        self.output_limits = config["client-output-buffer-limit"]
        config.on_change = self.configure
        self.shutdown_requested = trio.Event()  # SHUTDOWN, a signal, or running() ending
        self.shutdown_now = False  # SHUTDOWN NOW: close without delivering what is queued
        self.token: trio.lowlevel.TrioToken | None = None  # for calls from other threads
        # Conditions awaited by `wait_until`, re-checked after each command and disconnect.
        self.waiting: list[tuple[Callable[[], bool], trio.Event]] = []
        # The one-node cluster's identity (None: standalone), which checks key slots.
        self.cluster = Cluster() if config["cluster-enabled"] else None
        self.tracking = Tracking(self)  # client-side caching (CLIENT TRACKING)
        self.stats = Stats(self)  # commandstats, errorstats, SLOWLOG, LATENCY, MONITOR
        self.stats.configure()
        # Something observes every command (slot checks, tracking, MONITOR, durations, a
        # waiter): `execute` tells it.
        self.hooks = False
        self.update_hooks()

    @property
    def port(self) -> int:
        return self.addresses[0][1] if self.addresses else 0

    @property
    def url(self) -> str:
        """`redis://host:port` of the first address: what a client is given."""
        host, port = self.addresses[0]
        return f"redis://[{host}]:{port}" if ":" in host else f"redis://{host}:{port}"

    @property
    def tls_url(self) -> str | None:
        """`rediss://host:port` of the first TLS address (None without tls-port)."""
        if not self.tls_addresses:
            return None
        host, port = self.tls_addresses[0]
        return f"rediss://[{host}]:{port}" if ":" in host else f"rediss://{host}:{port}"

    @property
    def unix_url(self) -> str | None:
        """`unix:///path` of the Unix socket (None without unixsocket)."""
        path = self.config["unixsocket"]
        return f"unix://{os.path.abspath(path)}" if path else None

    def flush_touched(self, publisher: Connection | None) -> None:
        """Send each subscriber given messages by this batch what its socket takes now
        (publisher None: the keyspace's expiry task published them), after the
        invalidations of BCAST tracking that the batch's changes call for."""
        if self.tracking.pending:
            self.tracking.send_broadcasts()
        for conn in self.hub.take_touched():
            if conn is not publisher:
                conn.flush_nowait()

    def over_output_limit(self, conn: Connection) -> bool:
        """Redis's output-buffer rule for the client's class (pubsub while subscribed,
        else normal): over hard now, or over soft for longer than its seconds.

        What is counted is what the kernel would not take (the outbox), as Redis counts
        its reply list and not the socket buffer.
        """
        hard, soft, seconds = self.output_limits["pubsub" if conn.subscribed else "normal"]
        used = conn.outbox_size
        if hard and used >= hard:
            self.output_limit_disconnections += 1
            return True
        if soft and used >= soft:
            now = time.monotonic()
            if conn.soft_limit_since is None:
                conn.soft_limit_since = now
            elif now - conn.soft_limit_since > seconds:
                self.output_limit_disconnections += 1
                return True
        else:
            conn.soft_limit_since = None
        return False

    def configure(self, changed: dict[str, Any]) -> None:
        """Apply what CONFIG SET changed (the config already holds the new values).

        New TLS settings take effect for new connections; if they cannot be loaded,
        ConfigError (Redis's message) has CONFIG SET undo every change.
        """
        config = self.config
        tls = [name for name in changed if name.startswith("tls-")]
        if tls and self.tls_context is not None:
            try:
                self.tls_context = tls_context(config)
            except ConfigError as exc:
                log.warning("Failed to update TLS configuration: %s", exc)
                raise ConfigError(f"CONFIG SET failed (possibly related to argument "
                                  f"'{tls[0]}') - Unable to update TLS configuration. Check "
                                  f"server logs.") from None
        if "client-output-buffer-limit" in changed:
            self.output_limits = config["client-output-buffer-limit"]
        if "client-query-buffer-limit" in changed:
            self.query_buffer_limit = config["client-query-buffer-limit"]
        if "proto-max-bulk-len" in changed:
            for conn in self.clients.values():
                conn.parser.max_bulk_len = config["proto-max-bulk-len"]
        if "acl-pubsub-default" in changed:
            self.acl.pubsub_default = config["acl-pubsub-default"]
        if "requirepass" in changed:
            self.acl.set_requirepass(config["requirepass"])
            self.user_changed(self.acl.default)

    def user_changed(self, user: User) -> None:
        """A user's rules changed: recompute the checks of every client they concern
        (all clients, when it is the default user, which decides who must AUTH)."""
        for conn in self.clients.values():
            if conn.user is user or user is self.acl.default:
                conn.update_access()

    def refuses(self, conn: Connection) -> bool:
        """Protected mode: with no password for the default user, Redis serves only
        clients on the loopback interface or the Unix socket."""
        return (self.config["protected-mode"] and self.acl.default.nopass
                and conn.sock.family != socket.AF_UNIX and not is_local(conn.addr))

    async def _clients_cron(self) -> None:
        """Visit every client once a second, as Redis's clientsCron: close idle clients
        (`timeout`; never subscribers or MONITOR clients, which only listen) and those over
        an output soft limit for too long even when no new output arrives."""
        while True:
            await trio.sleep(CRON_PERIOD)
            now = time.monotonic()
            idle = self.config["timeout"]
            listening = self.stats.monitors
            for conn in list(self.clients.values()):
                if idle and now - conn.last_interaction > idle and not conn.subscribed \
                        and conn not in listening:
                    log.debug("Closing idle client id=%d addr=%s", conn.id, conn.addr)
                    conn.kill(None)
                elif conn.congested and self.over_output_limit(conn):
                    conn.kill("overcoming of output buffer limits")

    def forget(self, conn: Connection) -> None:
        """Remove a connection that has ended, and every subscription it had."""
        self.reactor.forget(conn)
        self.hub.remove_all(conn)
        unwatch_all(conn)
        self.tracking.disable(conn)
        stop_monitoring(conn)
        self.clients.pop(conn.id, None)
        if self.waiting:
            self.check_waiting()

    def update_hooks(self) -> None:
        """Recompute whether `execute` must take its observed path after each command."""
        self.hooks = bool(self.waiting or self.tracking.clients or self.stats.monitors
                          or self.stats.timing) or self.cluster is not None

    def check_waiting(self) -> None:
        """Wake the `wait_until` callers whose condition now holds."""
        for condition, event in self.waiting:
            if condition():
                event.set()

    async def wait_until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Return once condition() holds, checked after every command and disconnect
        (no polling); trio.TooSlowError after timeout seconds."""
        if condition():
            return
        waiter = (condition, trio.Event())
        self.waiting.append(waiter)
        self.update_hooks()
        try:
            with trio.fail_after(timeout):
                await waiter[1].wait()
        finally:
            self.waiting.remove(waiter)
            self.update_hooks()

    def receivers(self, channel: bytes, shard: bool = False) -> int:
        """How many messages a PUBLISH (SPUBLISH if shard) to channel would deliver now:
        its subscribers plus those of every matching pattern."""
        hub = self.hub
        if shard:
            return len(hub.shard_channels.get(channel, ()))
        count = len(hub.channels.get(channel, ()))
        for pattern, subscribers in hub.patterns.items():
            if match(pattern, channel):
                count += len(subscribers)
        return count

    async def wait_for_subscribers(self, channel: bytes | str, n: int = 1,
                                   timeout: float = 10.0, *, shard: bool = False) -> None:
        """Wait until a PUBLISH to channel reaches at least n subscribers (SPUBLISH with
        shard), so a test can publish right after subscribing without a sleep.

        Raises TimeoutError, naming the count reached, after timeout seconds.
        """
        name = channel.encode() if isinstance(channel, str) else channel
        try:
            await self.wait_until(lambda: self.receivers(name, shard) >= n, timeout)
        except trio.TooSlowError:
            raise TimeoutError(f"{self.receivers(name, shard)} of {n} subscribers to "
                               f"{name!r} after {timeout} s") from None

    async def drop_clients(self, ids: Iterable[int] | None = None, *, name: str | None = None,
                           subscribers: bool = False) -> int:
        """Close client connections as a network failure would, and wait until they are
        gone; return how many. The filters combine: given ids, the client named name,
        clients in pub/sub mode; with none, every client."""
        victims = list(self.clients.values())
        if ids is not None:
            wanted = set(ids)
            victims = [c for c in victims if c.id in wanted]
        if name is not None:
            victims = [c for c in victims if c.name == name.encode()]
        if subscribers:
            victims = [c for c in victims if c.subscribed]
        for conn in victims:
            conn.kill(None)
        await self.wait_until(lambda: not any(c.id in self.clients for c in victims),
                              SHUTDOWN_GRACE)
        return len(victims)

    async def _accept(self, listener: trio.socket.SocketType, nursery: trio.Nursery,
                      tls: bool) -> None:
        """Accept clients on one listening socket (TLS ones if tls), each in a task."""
        while True:
            try:
                sock, _ = await listener.accept()
            except OSError as exc:  # out of file descriptors, a reset in the queue...
                log.warning("Accepting client connection: %s", exc.strerror)
                await trio.sleep(0.01)  # let the descriptors free up rather than spin
                continue
            if len(self.clients) >= self.config["maxclients"]:
                self.rejected_connections += 1
                with contextlib.suppress(OSError):
                    sock._sock.send(b"-ERR max number of clients reached\r\n")
                sock.close()
                continue
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _keepalive(sock, self.config["tcp-keepalive"])
            if tls and self.tls_context is not None:
                conn = TLSConnection(self, sock, self.next_client_id, self.tls_context)
            else:
                conn = Connection(self, sock, self.next_client_id)
            self.next_client_id += 1
            self.clients[conn.id] = conn
            if self.refuses(conn):  # answered, then closed, by its own task
                self.rejected_connections += 1
                conn.outbox.append(DENIED)
                conn.closing = True
            else:
                self.connections_received += 1
            nursery.start_soon(conn.run)

    async def _bind(self, host: str, port: int, kind: str = "TCP") -> trio.socket.SocketType:
        """A listening socket on host:port, or StartupError naming the address."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = trio.socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            await sock.bind((host, port))
        except OSError as exc:
            sock.close()
            shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise StartupError(f"Could not create server {kind} listening socket {shown}: "
                               f"{reason}") from None
        sock.listen(self.config["tcp-backlog"])
        return sock

    async def _listen(self) -> list[tuple[trio.socket.SocketType, bool]]:
        """Listening sockets, each with whether it speaks TLS: every address of `bind`
        on `port` (with port 0 all share the first one's port), on `tls-port` when it is
        set, and the Unix socket when `unixsocket` is set.

        An address prefixed with `-` (Redis's convention) is skipped if unavailable,
        as `-::1` is on hosts without IPv6.
        """
        config = self.config
        if config["tls-port"]:
            try:
                self.tls_context = tls_context(config)
            except ConfigError as exc:
                raise StartupError(f"Failed to configure TLS: {exc}") from None
        listeners: list[tuple[trio.socket.SocketType, bool]] = []
        try:
            for port, tls in ((config["port"], False), (config["tls-port"], True)):
                if tls and not port:
                    continue
                bound = self.tls_addresses if tls else self.addresses
                for entry in config["bind"]:
                    optional = entry.startswith("-")
                    host = entry.lstrip("-")
                    try:
                        sock = await self._bind(host, port, "TLS" if tls else "TCP")
                    except StartupError:
                        if optional:
                            continue
                        raise
                    listeners.append((sock, tls))
                    host, port = sock.getsockname()[:2]
                    bound.append((host, port))
                if not bound:
                    raise StartupError("Failed listening on every address of bind")
            if config["unixsocket"]:
                listeners.append((await self._listen_unix(config["unixsocket"]), False))
        except BaseException:
            for opened, _ in listeners:
                opened.close()
            raise
        return listeners

    async def _listen_unix(self, path: str) -> trio.socket.SocketType:
        """The Unix socket at path (a stale one left by a crash is replaced), with the
        unixsocketperm permissions if set."""
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await sock.bind(path)
            if self.config["unixsocketperm"]:
                os.chmod(path, self.config["unixsocketperm"])
        except OSError as exc:
            sock.close()
            raise StartupError(f"Failed opening Unix socket: {exc.strerror}") from None
        sock.listen(self.config["tcp-backlog"])
        return sock

    def request_shutdown(self, now: bool = False) -> None:
        """Start a graceful shutdown (SHUTDOWN, a signal); `now` skips the delivery of
        what is queued (SHUTDOWN NOW)."""
        self.shutdown_now = self.shutdown_now or now
        self.shutdown_requested.set()

    async def _shutdown(self) -> None:
        """Take no more requests, send every client what is queued for it (all at once,
        within shutdown-timeout seconds), then close them all.

        A message a publisher was told was delivered is in its subscribers' outboxes,
        so a subscriber that keeps reading receives it before its connection closes.
        """
        clients = list(self.clients.values())
        for conn in clients:
            conn.closing = True
        if not self.shutdown_now:
            with trio.move_on_after(self.config["shutdown-timeout"]):
                async with trio.open_nursery() as nursery:
                    for conn in clients:
                        if conn.outbox:
                            nursery.start_soon(conn.drain_for_shutdown)
        for conn in list(self.clients.values()):
            conn.kill(None)


def _keepalive(sock: trio.socket.SocketType, interval: int) -> None:
    """tcp-keepalive, as Redis sets it: probe a silent peer after `interval` seconds,
    then every third of it, and give up after three unanswered probes."""
    if not interval:
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; other systems keep their defaults
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(interval // 3, 1))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


async def serve(config: Config | None = None, *,
                task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
                **options: Any) -> None:
    """Run a server until cancelled or SHUTDOWN; `task_status` gets the Server once bound.

    Options are parameter names with `_` for `-` (port=0, bind=["127.0.0.1"], ...).
    """
    config = config or Config(**options)
    srv = Server(config)
    listeners = await srv._listen()
    shown = [f"{h}:{p}" for h, p in srv.addresses]
    shown += [f"{h}:{p} (TLS)" for h, p in srv.tls_addresses]
    if config["unixsocket"]:
        shown.append(config["unixsocket"])
    log.info("respd %s (Redis %s compatible) ready to accept connections on %s, pid=%d",
             VERSION, REDIS_VERSION, ", ".join(shown), os.getpid())
    try:
        async with trio.open_nursery() as reading:
            reading.start_soon(srv.reactor.run)
            async with trio.open_nursery() as clients:
                async with trio.open_nursery() as accepting:
                    for listener, tls in listeners:
                        accepting.start_soon(srv._accept, listener, clients, tls)
                    accepting.start_soon(active_expiry, srv)
                    accepting.start_soon(srv._clients_cron)
                    srv.token = trio.lowlevel.current_trio_token()
                    task_status.started(srv)
                    await srv.shutdown_requested.wait()
                    accepting.cancel_scope.cancel()
                for listener, _ in listeners:  # refuse new connections while delivering
                    listener.close()
                await srv._shutdown()
            reading.cancel_scope.cancel()
    finally:
        for listener, _ in listeners:
            listener.close()
        if config["unixsocket"]:
            log.info("Removing the unix socket file.")
            with contextlib.suppress(OSError):
                os.unlink(config["unixsocket"])
        log.info("respd is now ready to exit, bye bye...")


@contextlib.contextmanager
def in_thread(config: Config) -> Iterator[Server]:
    """Run a server in a background thread and yield the Server once it is listening.

    The server stops, delivering what is queued, when the block ends; a start-up
    failure (an address in use) is raised here.
    """
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            try:
                state["server"] = await nursery.start(serve, config)
            except BaseException as exc:  # report start-up failures to the caller
                state["error"] = exc
                raise
            finally:
                ready.set()

    def target() -> None:
        with contextlib.suppress(BaseException):
            trio.run(main)
        ready.set()

    thread = threading.Thread(target=target, name="respd", daemon=True)
    thread.start()
    ready.wait()
    if "error" in state:
        thread.join()
        raise state["error"]
    srv: Server = state["server"]
    try:
        yield srv
    finally:
        with contextlib.suppress(trio.RunFinishedError):  # already stopped by SHUTDOWN
            trio.from_thread.run_sync(srv.shutdown_requested.set, trio_token=srv.token)
        thread.join()


@contextlib.contextmanager
def running(**options: Any) -> Iterator[str]:
    """Run a server in a background thread for a synchronous program; yield its URL.

    `with running(port=0) as url: redis.Redis.from_url(url)...`; the server stops
    (delivering what is queued) when the block ends.
    """
    options.setdefault("port", 0)
    with in_thread(Config(**options)) as srv:
        yield srv.url
