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
import threading
import time
from collections.abc import Iterator
from typing import Any

import trio

# Importing the command modules registers their commands in the table.
import server.commands.connection
import server.commands.keys
import server.commands.pubsub
import server.commands.server
import server.commands.strings
import server.commands.transactions  # noqa: F401
from pubsub.hub import Hub
from server.config import Config
from server.connection import Connection
from server.commands.transactions import unwatch_all
from server.keyspace import Keyspace, active_expiry

log = logging.getLogger("respd")

VERSION = "0.1.0"  # respd's own version
REDIS_VERSION = "7.4.0"  # the Redis version respd answers as (clients check it)
SHUTDOWN_GRACE = 2.0  # seconds to deliver queued replies and messages on shutdown


class StartupError(Exception):
    """The server cannot start (address in use, bad option): a one-line message."""


class Server:
    """State shared by all connections of one server."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.hub = Hub()
        self.keyspace = Keyspace(config, self.hub)
        self.clients: dict[int, Connection] = {}  # client id -> connection, in id order
        self.next_client_id = 1
        self.started = time.time()
        self.run_id = os.urandom(20).hex()
        self.addresses: list[tuple[str, int]] = []  # bound (host, port) pairs
        self.commands_processed = 0
        self.connections_received = 0
        self.rejected_connections = 0
        self.output_limit_disconnections = 0
        self.shutdown_requested = trio.Event()  # SHUTDOWN, a signal, or running() ending

    @property
    def port(self) -> int:
        return self.addresses[0][1] if self.addresses else 0

    @property
    def url(self) -> str:
        """`redis://host:port` of the first address: what a client is given."""
        host, port = self.addresses[0]
        return f"redis://[{host}]:{port}" if ":" in host else f"redis://{host}:{port}"

    def flush_touched(self, publisher: Connection | None) -> None:
        """Send each subscriber given messages by this batch what its socket takes now
        (publisher None: the keyspace's expiry task published them)."""
        for conn in self.hub.take_touched():
            if conn is not publisher:
                conn.flush_nowait()

    def over_output_limit(self, conn: Connection) -> bool:
        """Redis's pub/sub output-buffer rule: over hard now, or over soft for too long."""
        hard, soft, seconds = self.config["client-output-buffer-limit"]["pubsub"]
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

    def forget(self, conn: Connection) -> None:
        """Remove a connection that has ended, and every subscription it had."""
        self.hub.remove_all(conn)
        unwatch_all(conn)
        self.clients.pop(conn.id, None)

    async def _accept(self, listener: trio.socket.SocketType, nursery: trio.Nursery) -> None:
        """Accept clients on one listening socket, each in a task of its own."""
        while True:
            try:
                sock, _ = await listener.accept()
            except OSError as exc:  # out of file descriptors, a reset in the queue...
                log.warning("Accepting client connection: %s", exc.strerror)
                await trio.sleep(0.01)  # let the descriptors free up rather than spin
                continue
            self.connections_received += 1
            if len(self.clients) >= self.config["maxclients"]:
                self.rejected_connections += 1
                with contextlib.suppress(OSError):
                    sock._sock.send(b"-ERR max number of clients reached\r\n")
                sock.close()
                continue
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Connection(self, sock, self.next_client_id)
            self.next_client_id += 1
            self.clients[conn.id] = conn
            nursery.start_soon(conn.run)

    async def _bind(self, host: str, port: int) -> trio.socket.SocketType:
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
            raise StartupError(f"Could not create server TCP listening socket {shown}: "
                               f"{reason}") from None
        sock.listen(511)
        return sock

    async def _listen(self) -> list[trio.socket.SocketType]:
        """Bind every address of `bind`; with port 0 all share the first one's port.

        An address prefixed with `-` (Redis's convention) is skipped if unavailable,
        as `-::1` is on hosts without IPv6.
        """
        port = self.config["port"]
        listeners = []
        for entry in self.config["bind"]:
            optional = entry.startswith("-")
            host = entry.lstrip("-")
            try:
                sock = await self._bind(host, port)
            except StartupError:
                if optional:
                    continue
                for opened in listeners:
                    opened.close()
                raise
            listeners.append(sock)
            host, port = sock.getsockname()[:2]
            self.addresses.append((host, port))
        if not listeners:
            raise StartupError("Failed listening on every address of bind")
        return listeners

    async def _shutdown(self) -> None:
        """Send what every client has queued, within a deadline, then close them all."""
        with trio.move_on_after(SHUTDOWN_GRACE):
            for conn in list(self.clients.values()):
                await conn.drain_for_shutdown()
        for conn in list(self.clients.values()):
            conn.kill(None)


async def serve(config: Config | None = None, *,
                task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
                **options: Any) -> None:
    """Run a server until cancelled or SHUTDOWN; `task_status` gets the Server once bound.

    Options are parameter names with `_` for `-` (port=0, bind=["127.0.0.1"], ...).
    """
    config = config or Config(**options)
    srv = Server(config)
    listeners = await srv._listen()
    log.info("respd %s (Redis %s compatible) ready to accept connections on %s, pid=%d",
             VERSION, REDIS_VERSION, ", ".join(f"{h}:{p}" for h, p in srv.addresses),
             os.getpid())
    try:
        async with trio.open_nursery() as clients:
            async with trio.open_nursery() as accepting:
                for listener in listeners:
                    accepting.start_soon(srv._accept, listener, clients)
                accepting.start_soon(active_expiry, srv)
                task_status.started(srv)
                await srv.shutdown_requested.wait()
                accepting.cancel_scope.cancel()
            await srv._shutdown()
    finally:
        for listener in listeners:
            listener.close()
        log.info("respd is now ready to exit, bye bye...")


@contextlib.contextmanager
def running(**options: Any) -> Iterator[str]:
    """Run a server in a background thread for a synchronous program; yield its URL.

    `with running(port=0) as url: redis.Redis.from_url(url)...`; the server stops
    (delivering what is queued) when the block ends.
    """
    options.setdefault("port", 0)
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            try:
                state["server"] = await nursery.start(serve, Config(**options))
            except BaseException as exc:  # report start-up failures to the caller
                state["error"] = exc
                ready.set()
                raise
            state["token"] = trio.lowlevel.current_trio_token()
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
        yield srv.url
    finally:
        trio.from_thread.run_sync(srv.shutdown_requested.set, trio_token=state["token"])
        thread.join()
