"""One client connection: its state, its outbox, and its read/answer loop.

Who sends (one rule per connection, so bytes stay in order):
- Every send is one non-blocking `send` system call with no `await` around it
  (`send_now`): the reader sends its batch's replies, a publisher sends each
  subscriber it touched, and no task can slip bytes in between.
- What the kernel refuses stays at the front of the outbox and wakes the writer task,
  which otherwise sleeps; until the writer has drained it, others only append.
- Measured: trio's `await sock.send` yields to the scheduler after every successful
  send; sending without it, and waiting for readability before `recv` instead of
  trying a `recv` that usually fails, cut the CPU per request (see the README).

Who reads: for a plain socket, the server's reactor (`server/reactor.py`) runs the
connection's `step` when requests arrive, and wakes the connection's reader task only
for what must be awaited; a TLS connection's reader task waits and steps itself.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING

import trio

from pubsub.hub import Subscriber
from resp.encode import error
from resp.parser import RequestParser
from server.commands import run as run_commands

if TYPE_CHECKING:
    from server.serve import Server

log = logging.getLogger("respd")

RECV_SIZE = 65536
# Full reads a step takes before it answers. Reads stay at RECV_SIZE: 256 KiB reads
# measured slower with 16 KiB PUBLISHes (14-15 us of CPU per message against 10.5-11.5).
MAX_READS = 16
# An outbox of at most GATHER_MAX frames, the first of GATHER_FROM bytes or more, is sent
# with sendmsg rather than joined first.
GATHER_MAX = 64
GATHER_FROM = 4096
# A read can carry thousands of small requests with large replies (GET of a big value):
# such a batch runs CHUNK commands at a time, and once more than REPLY_BOUND bytes of
# replies wait, they are sent (and, for a client that does not read, waited for) first.
CHUNK = 64
REPLY_BOUND = 1 << 20
# What a connection's step leaves to do (Connection.step).
READY, WAIT, ENDED = 0, 1, 2


def _address(addr: object) -> str:
    """Redis's `ip:port` form of a socket address (`[::1]:port` is not used by Redis)."""
    if isinstance(addr, tuple):
        return f"{addr[0]}:{addr[1]}"
    return str(addr or "")


def is_local(addr: str) -> bool:
    """Whether a client's `ip:port` is on the loopback interface (protected mode)."""
    return addr.startswith(("127.", "::1:"))


class Connection(Subscriber):
    """A client: protocol state, subscriptions (from Subscriber), and its socket."""

    __slots__ = (
        "addr",
        "authenticated",
        "backlog",
        "cancel_scope",
        "closing",
        "congested",
        "created",
        "db",
        "drained",
        "fd",
        "flags",
        "handoff",
        "handoff_state",
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
        "restricted",
        "server",
        "sock",
        "soft_limit_since",
        "user",
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
        self.flags = ""  # extra CLIENT LIST flags
        if sock.family == socket.AF_UNIX:  # Redis shows the socket's path, port 0
            self.addr = self.laddr = f"{server.config['unixsocket']}:0"
            self.flags = "U"
        else:
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
        self.congested = False  # the kernel refused bytes: only the writer sends until drained
        self.drained: trio.Event | None = None  # set when the writer empties the outbox
        self.closing = False  # close once the outbox is flushed (QUIT, protocol error)
        self.wakeup = trio.Event()  # set to wake the writer
        self.handoff: trio.Event | None = None  # set by the reactor to wake the reader
        self.handoff_state = READY  # what the reactor's step left the reader to do
        self.backlog: tuple | None = None  # a batch too large to run without yielding
        self.cancel_scope: trio.CancelScope | None = None  # ends both tasks (CLIENT KILL)
        # As Redis: a new client runs as `default`, and is authenticated if that user has
        # no password (a client that connected before requirepass was set stays in).
        self.user = server.acl.default
        self.authenticated = self.user.nopass and self.user.enabled
        self.restricted = False  # the dispatcher must check auth or ACL (update_access)
        self.update_access()
        self.last_command = "NULL"  # for CLIENT LIST's cmd=
        self.soft_limit_since: float | None = None  # when the output soft limit was passed
        self.multi: list | None = None  # commands queued since MULTI (None: not in MULTI)
        self.multi_failed = False  # a command was refused while queuing: EXEC aborts
        self.watching: list = []  # (database, key) pairs this client WATCHes
        self.watch_dirty = False  # a watched key changed: EXEC fails

    # How the reader waits for requests (TLS overrides it: a request may be buffered).
    wait_readable = staticmethod(trio.lowlevel.wait_readable)

    @property
    def proto(self) -> int:
        return 3 if self.resp3 else 2

    @property
    def must_authenticate(self) -> bool:
        """Whether only AUTH, HELLO, QUIT and RESET may run (Redis's authRequired)."""
        return not self.authenticated and self.server.acl.auth_required

    def update_access(self) -> None:
        """Recompute what is checked before each command, after AUTH, RESET or a change
        to this client's user or to the default user."""
        must = self.must_authenticate
        self.parser.unauthenticated = must  # Redis's tighter request limits before AUTH
        self.restricted = must or self.user.restricted

    # --- the tasks ---------------------------------------------------------------

    async def run(self) -> None:
        """Serve the client until it leaves or is killed; always leave the hub clean."""
        try:
            async with trio.open_nursery() as nursery:
                self.cancel_scope = nursery.cancel_scope
                nursery.start_soon(self._writer)
                await self._reader()
                nursery.cancel_scope.cancel()
        # A reset or a failed TLS handshake ends this client only. The nursery wraps
        # errors in an ExceptionGroup, so `except*`: a plain `except` would miss them and
        # let one client's reset end the whole server.
        except* (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            self.server.forget(self)
            self.sock.close()

    async def _reader(self) -> None:
        """Read, run every complete command, answer the whole batch with one send.

        A plain socket is watched by the server's reactor, which runs this connection's
        batches itself (`step`) and wakes this task only for what must wait; a TLS
        connection waits for its socket here."""
        reactor = self.server.reactor
        plain = type(self.raw) is socket.socket
        raw = self.raw
        while not self.closing:
            if plain and reactor.running:
                self.handoff = trio.Event()
                reactor.watch(self)
                await self.handoff.wait()
                state = self.handoff_state
            else:
                # Wait first: after answering, the next request is rarely there yet, and
                # a recv that fails costs a system call. Waiting is also this loop's yield.
                await self.wait_readable(raw)
                state = self.step()
            if await self._after_step(state):
                return
        await self.drain()

    def step(self) -> int:
        """Read what has arrived, run its complete commands and send the replies, all
        without yielding. Returns READY when the connection can wait for more requests,
        or what must be awaited first: WAIT (the client does not take its replies, and
        what is left of its batch waits in self.backlog; or it is closing) or ENDED (the
        client left, or is dropped).

        In the reactor's round, the replies are left for the reactor to send once every
        ready connection has run its batch (`Reactor.run`, as Redis writes replies in
        beforeSleep). The subscribers the batch gave messages (and clients whose cached
        keys it changed) are sent them at once, before the batch's replies: sending
        those at the end of the round too measured no gain with 1,000 channels and four
        publishers (scripts/bench.py)."""
        if self.closing:  # shutting down: requests from now on are not taken
            return WAIT
        raw = self.raw
        try:
            data = raw.recv(RECV_SIZE)
        except BlockingIOError:
            return READY
        if not data:
            return ENDED
        server = self.server
        parser = self.parser
        reads = 1
        while True:
            commands, problem = parser.feed(data)
            self.last_interaction = time.monotonic()
            if parser.pending > server.query_buffer_limit:
                self._query_buffer_overflow()
                return ENDED
            server.commands_processed += len(commands)
            while parser.held:  # before AUTH: one request at a time
                if run_commands(self, commands):
                    return self._run_batch([], None)
                commands, problem = parser.feed(b"")
                server.commands_processed += len(commands)
            # A full read of large requests: more may be waiting. Run these commands
            # and answer them with those of the next reads, as Redis reads all the
            # socket holds when requests are large: the client and the subscribers they
            # reach get one send for all (16 KiB PUBLISHes: from 4 requests per send to
            # up to 64). A read of many small requests is answered at once, so that one
            # client's flood holds the others up no longer than before.
            if (len(data) < RECV_SIZE or len(commands) > CHUNK or problem is not None
                    or reads == MAX_READS or parser.unauthenticated):
                return self._run_batch(commands, problem)
            state = self._run_batch(commands, None, answer=False)
            if state is not None:
                return state
            try:
                data = raw.recv(RECV_SIZE)
            except BlockingIOError:
                return self._run_batch([], None)
            if not data:
                self._run_batch([], None)
                return ENDED
            reads += 1

    def _run_batch(self, commands: list[list[bytes]], problem: bytes | None,
                   answer: bool = True) -> int | None:
        """Run a batch of commands, then answer it with one send (see `step`).

        With answer False, replies wait for the next batch unless they have grown past
        REPLY_BOUND or the connection is closing; None then means nothing was sent and
        the caller may read on."""
        server = self.server
        if len(commands) > CHUNK:
            commands = self._run_leading_chunks(commands, problem)
            if commands is None:
                return WAIT
        closed = run_commands(self, commands)
        if not (answer or closed or sum(map(len, self.outbox)) > REPLY_BOUND):
            return None
        if problem is not None and not self.closing:
            log.debug("Protocol error (%s) from client: id=%d addr=%s",
                      problem.decode(errors="replace"), self.id, self.addr)
            reply = error(problem)
            self.outbox.append(reply)
            server.stats.error_reply(reply)  # counted in INFO errorstats, as in Redis
            self.closing = True
        # Messages and invalidations leave before this batch's replies: a client told
        # its write is done is not then served a stale value from its cache.
        if server.hub.has_touched():
            server.flush_touched(self)
        if self.outbox and not self.congested:
            round_replies = server.reactor.replies
            if round_replies is not None and not self.closing:
                round_replies.append(self)  # the reactor sends them at the round's end
                return READY
            self.send_now()
            if self.outbox and not self.subscribed:
                return WAIT
        return WAIT if self.closing else READY

    def _run_leading_chunks(self, commands: list[list[bytes]],
                            problem: bytes | None) -> list[list[bytes]] | None:
        """Run a large batch CHUNK commands at a time, sending the replies whenever more
        than REPLY_BOUND bytes of them wait; return the last chunk, to be run and
        answered as any batch. If the client does not take its replies, keep the rest
        of the batch (self.backlog) for when it has, and return None."""
        server = self.server
        start = 0
        while len(commands) - start > CHUNK:
            if run_commands(self, commands[start:start + CHUNK]):
                return []
            start += CHUNK
            if sum(map(len, self.outbox)) > REPLY_BOUND:
                if server.hub.has_touched():
                    server.flush_touched(self)
                if not self.congested:
                    self.send_now()
                if self.closing:
                    return []
                if self.outbox and not self.subscribed:
                    self.backlog = (commands[start:], problem)
                    return None
        return commands[start:]

    async def _after_step(self, state: int) -> bool:
        """Do what `step` left to await; True if the connection has ended."""
        if state == READY:
            return False
        if state == ENDED:
            return True
        while True:
            if self.outbox and not self.subscribed:
                await self._wait_drained()
            if self.backlog is None or self.closing:
                self.backlog = None
                return False
            commands, problem = self.backlog
            self.backlog = None
            if self._run_batch(commands, problem) == READY:
                return False

    async def _wait_drained(self) -> None:
        """Backpressure: a client that does not read its replies is not read either (nor
        are its pending requests run), so its pipeline cannot grow the server's memory;
        over its normal-class output limits it is dropped, as Redis drops it.
        (A subscriber's growth is bounded by the pub/sub output limits instead.)"""
        if self.server.over_output_limit(self):
            self.kill("overcoming of output buffer limits")
            return
        self.drained = trio.Event()
        await self.drained.wait()

    async def _writer(self) -> None:
        """Send what the kernel refused earlier, as the socket drains; otherwise sleep."""
        while True:
            await self.wakeup.wait()
            self.wakeup = trio.Event()
            await self.drain()
            if self.drained is not None:
                self.drained.set()
                self.drained = None

    async def drain(self) -> None:
        """Send until the outbox is empty, waiting for the socket to take more."""
        while self.outbox:
            await trio.lowlevel.wait_writable(self.raw)
            self.send_now()
        self.congested = False

    async def drain_for_shutdown(self) -> None:
        """Send everything queued before the connection is closed."""
        self.closing = True
        if self.outbox:
            self.wakeup.set()  # the writer sends it; wait for the outbox to empty
            self.drained = trio.Event()
            await self.drained.wait()

    def send_now(self) -> None:
        """Send the outbox with one non-blocking send; the writer gets what is refused.

        Every send is this call: it never yields to trio, so no other task can append
        between taking the bytes and sending them, and bytes stay in order.
        """
        outbox = self.outbox
        if len(outbox) > 1 and (len(outbox) > GATHER_MAX or len(outbox[0]) < GATHER_FROM):
            joined = b"".join(outbox)
            outbox.clear()
            outbox.append(joined)
        # A few large frames go out with one sendmsg rather than a joined copy first (a
        # copy of 1 MiB costs the allocator as much as the send).
        try:
            sent = self.raw.send(outbox[0]) if len(outbox) == 1 else self.raw.sendmsg(outbox)
        except BlockingIOError:
            sent = 0
        except OSError:  # the peer is gone; the reader will see it too
            self.kill(None)
            return
        for taken, frame in enumerate(outbox):  # noqa: B007 (used after the loop)
            if sent < len(frame):
                break
            sent -= len(frame)
        else:
            outbox.clear()
            self.outbox_size = 0
            return
        del outbox[:taken]
        outbox[0] = memoryview(outbox[0])[sent:]
        self.outbox_size = sum(map(len, outbox))
        self.congested = True
        self.wakeup.set()

    def flush_nowait(self) -> None:
        """Send a subscriber what its socket takes now (from a publisher's task); drop it
        if what the kernel will not take is over its output-buffer limits."""
        if self.outbox and not self.congested:
            self.send_now()
        if self.congested and self.server.over_output_limit(self):
            self.kill("overcoming of output buffer limits")

    def _query_buffer_overflow(self) -> None:
        """Redis closes a client whose unfinished request passes client-query-buffer-limit,
        with no reply."""
        self.server.query_limit_disconnections += 1
        log.warning("Closing client that reached max query buffer length: id=%d addr=%s "
                    "(qbuf initial bytes: %d)", self.id, self.addr, self.parser.pending)
        self.kill(None)

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
