"""One client connection: its state, its outbox, and its read/answer loop.

Who sends (one rule per connection, so bytes stay in order):
- While nobody is sending, any task may send the outbox: the reader after each batch
  (with `await sock.send`), a publisher for each subscriber it touched (a non-blocking
  send that never waits). Taking the bytes and starting the send happen with no
  `await` between them.
- While the reader or the writer is inside a send, others only append.
- What the kernel refuses goes back to the front of the outbox, and the writer task,
  which otherwise sleeps, sends it when the socket drains.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from pubsub.hub import Subscriber
from resp.encode import error
from resp.parser import RequestParser
from server.commands import execute

if TYPE_CHECKING:
    from server.serve import Server

log = logging.getLogger("respd")

RECV_SIZE = 65536


def _address(addr: object) -> str:
    """Redis's `ip:port` form of a socket address (`[::1]:port` is not used by Redis)."""
    if isinstance(addr, tuple):
        return f"{addr[0]}:{addr[1]}"
    return str(addr or "")


class Connection(Subscriber):
    """A client: protocol state, subscriptions (from Subscriber), and its socket."""

    __slots__ = (
        "addr",
        "authenticated",
        "cancel_scope",
        "closing",
        "created",
        "db",
        "fd",
        "flags",
        "id",
        "laddr",
        "last_command",
        "last_interaction",
        "lib_name",
        "lib_ver",
        "multi",
        "multi_failed",
        "name",
        "parser",
        "raw",
        "sending",
        "server",
        "sock",
        "soft_limit_since",
        "wakeup",
        "watch_dirty",
        "watching",
    )

    def __init__(self, server: Server, sock: trio.socket.SocketType, client_id: int) -> None:
        super().__init__()
        self.server = server
        self.sock = sock  # trio socket: the reader and writer await on it
        self.raw = sock._sock  # the stdlib socket, for sends that must not wait
        self.id = client_id
        try:
            self.addr = _address(sock.getpeername())
            self.laddr = _address(sock.getsockname())
        except OSError:
            self.addr = self.laddr = ""
        self.fd = sock.fileno()
        self.name = b""  # CLIENT SETNAME
        self.lib_name = b""  # CLIENT SETINFO LIB-NAME
        self.lib_ver = b""
        self.db = 0  # SELECTed database
        self.created = self.last_interaction = time.monotonic()
        self.parser = RequestParser(server.config["proto-max-bulk-len"])
        self.sending = False  # a task is inside a send on this socket
        self.closing = False  # close once the outbox is flushed (QUIT, protocol error)
        self.wakeup = trio.Event()  # set to wake the writer
        self.cancel_scope: trio.CancelScope | None = None  # ends both tasks (CLIENT KILL)
        self.authenticated = not server.config["requirepass"]
        self.last_command = "NULL"  # for CLIENT LIST's cmd=
        self.soft_limit_since: float | None = None  # when the output soft limit was passed
        self.flags = ""  # extra CLIENT LIST flags
        self.multi: list | None = None  # commands queued since MULTI (None: not in MULTI)
        self.multi_failed = False  # a command was refused while queuing: EXEC aborts
        self.watching: list = []  # (database, key) pairs this client WATCHes
        self.watch_dirty = False  # a watched key changed: EXEC fails

    @property
    def proto(self) -> int:
        return 3 if self.resp3 else 2

    @property
    def must_authenticate(self) -> bool:
        return not self.authenticated

    # --- the tasks ---------------------------------------------------------------

    async def run(self) -> None:
        """Serve the client until it leaves or is killed; always leave the hub clean."""
        try:
            async with trio.open_nursery() as nursery:
                self.cancel_scope = nursery.cancel_scope
                nursery.start_soon(self._writer)
                await self._reader()
                nursery.cancel_scope.cancel()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.server.forget(self)
            self.sock.close()

    async def _reader(self) -> None:
        """Read, run every complete command, answer the whole batch with one send."""
        recv = self.sock.recv
        feed = self.parser.feed
        server = self.server
        while not self.closing:
            data = await recv(RECV_SIZE)
            if not data:
                return
            commands, problem = feed(data)
            self.last_interaction = time.monotonic()
            server.commands_processed += len(commands)
            for args in commands:
                try:
                    execute(self, args)
                except Exception:
                    log.exception("command %r failed", args[:1])
                    self.outbox.append(error("internal error"))
                if self.closing:
                    break
            if problem is not None and not self.closing:
                if isinstance(problem, str):
                    problem = problem.encode()
                log.debug("Protocol error (%s) from client: id=%d addr=%s",
                          problem.decode(errors="replace"), self.id, self.addr)
                self.outbox.append(error(problem))
                self.closing = True
            if server.hub.touched:
                server.flush_touched(self)
            if self.outbox:
                await self.send_outbox()
                # Backpressure: a client that does not read its replies is not read
                # either, so its pipelined requests cannot grow the server's memory.
                # (A subscriber's growth is bounded by the pub/sub output limits.)
                while self.outbox and not self.sending and not self.subscribed:
                    await self.send_outbox()
        await self._drain()

    async def _writer(self) -> None:
        """Send what the kernel refused earlier and what arrives while the reader waits."""
        while True:
            await self.wakeup.wait()
            self.wakeup = trio.Event()
            await self._drain()

    async def _drain(self) -> None:
        """Send until the outbox is empty (or another task is sending)."""
        while self.outbox and not self.sending:
            await self.send_outbox()

    async def drain_for_shutdown(self) -> None:
        """Send everything queued, waiting for a send in progress to finish first."""
        self.closing = True
        while self.outbox or self.sending:
            if self.sending:
                await trio.sleep(0.005)
            else:
                await self.send_outbox()

    async def send_outbox(self) -> None:
        """Send the outbox with one send; leave what the kernel refused to the writer."""
        if self.sending:
            return
        outbox = self.outbox
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        outbox.clear()
        self.sending = True
        try:
            sent = await self.sock.send(data)
        finally:
            self.sending = False
        self._after_send(data, sent)

    def flush_nowait(self) -> None:
        """Send what the kernel takes right now, without waiting (from any task)."""
        if self.outbox_size and self.subscribed and self.server.over_output_limit(self):
            self.kill("overcoming of output buffer limits")
            return
        if self.sending or not self.outbox:
            return
        outbox = self.outbox
        data = outbox[0] if len(outbox) == 1 else b"".join(outbox)
        outbox.clear()
        try:
            sent = self.raw_send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.kill(None)
            return
        self._after_send(data, sent)

    def raw_send(self, data: bytes) -> int:
        """A non-blocking send on the underlying socket (never yields to trio)."""
        return self.raw.send(data)

    def _after_send(self, data: bytes, sent: int) -> None:
        """Put back what was not sent, ahead of anything appended meanwhile."""
        if sent < len(data):
            self.outbox.insert(0, memoryview(data)[sent:])
        if self.outbox:
            self.outbox_size = sum(map(len, self.outbox))
            self.wakeup.set()
        else:
            self.outbox_size = 0

    def kill(self, reason: str | None) -> None:
        """Close the connection now, dropping its subscriptions and what it has queued."""
        if reason:
            log.warning("Client id=%d addr=%s closed for %s.", self.id, self.addr, reason)
        self.closing = True
        self.server.hub.remove_all(self)
        self.outbox.clear()
        self.outbox_size = 0
        if self.cancel_scope is not None:
            self.cancel_scope.cancel()
