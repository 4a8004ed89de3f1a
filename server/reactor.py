"""The reactor: one task that reads every plain-socket client.

trio's cost is per wake-up: a task per connection waiting for its socket pays, for
each batch of requests, an epoll registration and a task switch. The reactor keeps the
sockets of the connections that are waiting for requests in its own level-triggered
epoll set, waits on that set's descriptor once, and runs the batch of every connection
that is ready in one loop (`Connection.step`: recv, run, no yield), then sends each
its replies with one send. A connection is handed back to its own task, and leaves
the set, only when it must wait for something: a client that does not take its replies
(what is left of its batch waits with it), or a close. TLS connections read in their
own tasks.

Why the replies wait for the end of the round, as Redis writes them in beforeSleep: a
send to a client that sleeps waiting for its replies pays, in the kernel, for waking
it (17% of the server's CPU under `redis-benchmark -c 50 -P 16 -t set`, perf). Sent
back to back, the sends after the first find the client already awake. Measured with
redis-benchmark -c 50 -P 16: SET from 622k to 818k requests/s, GET from 693k to 846k,
PING from 963k to 1,126k; pipeline 1 unchanged.
"""

from __future__ import annotations

import logging
import select
from typing import TYPE_CHECKING

import trio

from server.connection import ENDED, READY, WAIT

if TYPE_CHECKING:
    from server.connection import Connection

log = logging.getLogger("respd")

MAX_EVENTS = 1024  # connections served per round; more wait for the next round


class Reactor:
    """Watches waiting connections' sockets; runs their batches as they become readable."""

    def __init__(self) -> None:
        self.watched: dict[int, Connection] = {}  # by file descriptor
        self.running = False
        self._epoll: select.epoll | None = None
        # During a round, the connections whose replies wait to be sent at its end.
        self.replies: list[Connection] | None = None

    def watch(self, conn: Connection) -> None:
        """Read conn's requests here until it must wait; then set its handoff event."""
        self.watched[conn.fd] = conn
        self._epoll.register(conn.fd, select.EPOLLIN)

    def forget(self, conn: Connection) -> None:
        """Stop watching conn (its task ends; its socket is about to close)."""
        if self.watched.get(conn.fd) is conn:
            del self.watched[conn.fd]
            self._epoll.unregister(conn.fd)

    def _hand_back(self, conn: Connection, state: int) -> None:
        """Stop watching conn and wake its task to do what `state` says."""
        self.forget(conn)
        conn.handoff_state = state
        conn.handoff.set()

    async def run(self) -> None:
        """Serve ready connections until cancelled."""
        epoll = self._epoll = select.epoll()
        self.running = True
        watched = self.watched
        wait_readable = trio.lowlevel.wait_readable
        checkpoint = trio.lowlevel.checkpoint
        try:
            while True:
                ready = epoll.poll(0, MAX_EVENTS)
                if not ready:
                    await wait_readable(epoll)
                    continue
                replies = self.replies = []
                for fd, _ in ready:
                    conn = watched.get(fd)
                    if conn is None:
                        continue
                    try:
                        state = conn.step()
                    except OSError:  # a reset: the connection's task ends it
                        state = ENDED
                    except Exception:
                        log.exception("client id=%d failed", conn.id)
                        state = ENDED
                    if state != READY:
                        self._hand_back(conn, state)
                self.replies = None
                for conn in replies:
                    if conn.outbox and not conn.congested:
                        conn.send_now()
                        # A client that does not take its replies waits in its task.
                        if (conn.outbox and not conn.subscribed
                                and watched.get(conn.fd) is conn):
                            self._hand_back(conn, WAIT)
                # Let other tasks run, then look again: while clients keep the server
                # busy this skips trio's registration of the epoll descriptor (a
                # system call) on every round.
                await checkpoint()
        finally:
            self.running = False
            self.replies = None
            for conn in list(watched.values()):  # wake them: they read on their own
                self._hand_back(conn, READY)
            epoll.close()
