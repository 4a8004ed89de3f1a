"""respd for test suites: a pytest plugin, and the same controls for any synchronous program.

Installing respd registers this module as the pytest plugin `respd` (a `pytest11`
entry point). It gives:

- `respd_server` (session): one server in a background thread for the whole run.
- `respd` (per test): that server in a clean state (every database flushed, every
  client of the previous test disconnected, configuration as at start), its `url`
  for the RESP version in force, and the controls below.
- `respd_protocol`: 2 or 3, from `--respd-protocol` (or the `respd_protocol` ini
  value, default 3); `--respd-protocol both` runs each test that uses it twice.
- `respd_options` (session): parameters for the server; override it in a conftest.py
  (`return {"cluster_enabled": True}`).

The controls make tests deterministic without sleeps: `wait_for_subscribers` returns
once a PUBLISH would reach n subscribers (a subscription sent by another connection
is otherwise a race), and `drop_clients` closes connections as a network failure
would, for testing reconnect code. Each has a synchronous form and an asyncio form
(`..._async`); the server object itself offers the trio forms.

An `async def` test that uses `respd` and that no async plugin (pytest-asyncio,
anyio) has taken is run with `asyncio.run`, so asyncio tests need no other plugin.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
import trio

from server.acl import Acl
from server.config import Config
from server.serve import Server, in_thread

if TYPE_CHECKING:
    import redis
    import redis.asyncio

T = TypeVar("T")

WAIT_TIMEOUT = 10.0  # seconds wait_for_subscribers waits by default
_PROTOCOLS = ("2", "3", "both")


class RespdServer:
    """A respd server running in a background thread, driven from other threads.

    Every method may be called from synchronous code (or from an asyncio task through
    its `_async` form); the work itself runs in the server's trio thread.
    """

    __slots__ = ("_initial", "_token", "server")

    def __init__(self, server: Server, initial: dict[str, Any]) -> None:
        self.server = server  # the trio-side Server, for trio programs
        assert server.token is not None
        self._token = server.token  # runs calls in the server's thread
        self._initial = initial  # the configuration at start, restored by reset()

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT`: the server's address for any client."""
        return self.server.url

    @property
    def host(self) -> str:
        return self.server.addresses[0][0]

    @property
    def port(self) -> int:
        return self.server.port

    def _run(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run an async function of the server in its thread and return its result."""
        return trio.from_thread.run(function, *args, trio_token=self._token)

    def _run_sync(self, function: Callable[..., T], *args: Any) -> T:
        """Run a plain function in the server's thread (between commands)."""
        return trio.from_thread.run_sync(function, *args, trio_token=self._token)

    def wait_for_subscribers(self, channel: str | bytes, n: int = 1,
                             timeout: float = WAIT_TIMEOUT, *, shard: bool = False) -> None:
        """Block until a PUBLISH to channel would reach at least n subscribers (counting
        matching patterns; with shard, SPUBLISH and shard subscribers).

        Raises TimeoutError after timeout seconds.
        """
        self._run(_wait_for_subscribers, self.server, channel, n, timeout, shard)

    async def wait_for_subscribers_async(self, channel: str | bytes, n: int = 1,
                                         timeout: float = WAIT_TIMEOUT, *,
                                         shard: bool = False) -> None:
        """`wait_for_subscribers` for asyncio code: the event loop keeps running."""
        await asyncio.to_thread(self.wait_for_subscribers, channel, n, timeout, shard=shard)

    def receivers(self, channel: str | bytes, *, shard: bool = False) -> int:
        """How many subscribers a PUBLISH (SPUBLISH with shard) to channel would reach now."""
        name = channel.encode() if isinstance(channel, str) else channel
        return self._run_sync(self.server.receivers, name, shard)

    def drop_clients(self, ids: Iterable[int] | None = None, *, name: str | None = None,
                     subscribers: bool = False) -> int:
        """Close client connections as a network failure would; return how many.

        The filters combine: the given client ids (`client.client_id()`), the clients
        named name (`client_name=`), clients in pub/sub mode. With no filter, every
        client. When this returns, the server has forgotten them and their subscriptions.
        """
        chosen = None if ids is None else list(ids)
        return self._run(_drop_clients, self.server, chosen, name, subscribers)

    async def drop_clients_async(self, ids: Iterable[int] | None = None, *,
                                 name: str | None = None, subscribers: bool = False) -> int:
        """`drop_clients` for asyncio code."""
        chosen = None if ids is None else list(ids)
        return await asyncio.to_thread(self.drop_clients, chosen, name=name,
                                       subscribers=subscribers)

    def drop_subscribers(self) -> int:
        """Close the connection of every client in pub/sub mode; return how many."""
        return self.drop_clients(subscribers=True)

    async def drop_subscribers_async(self) -> int:
        """`drop_subscribers` for asyncio code."""
        return await self.drop_clients_async(subscribers=True)

    def reset(self) -> None:
        """Back to a fresh server's state: no clients, empty databases, initial config."""
        self._run(_reset, self.server, self._initial)


async def _wait_for_subscribers(server: Server, channel: str | bytes, n: int, timeout: float,
                                shard: bool) -> None:
    await server.wait_for_subscribers(channel, n, timeout, shard=shard)


async def _drop_clients(server: Server, ids: list[int] | None, name: str | None,
                        subscribers: bool) -> int:
    return await server.drop_clients(ids, name=name, subscribers=subscribers)


async def _reset(server: Server, initial: dict[str, Any]) -> None:
    """Disconnect every client, flush every database, restore the initial configuration
    and users, and start the statistics, the slow log and the latency events afresh."""
    await server.drop_clients()
    server.keyspace.flush_all()
    server.config.values = dict(initial)
    server.acl = Acl(server.config["requirepass"], server.config["acl-pubsub-default"])
    server.keyspace.configure(server.config)
    server.stats.clear()
    server.stats.configure()
    server.update_hooks()


@contextlib.contextmanager
def serving(**options: Any) -> Iterator[RespdServer]:
    """Run a respd server in a background thread and yield its RespdServer.

    Options are parameters with `_` for `-` (`port=0` is the default: an ephemeral
    port on 127.0.0.1). The server stops, delivering what is queued, when the block ends.
    """
    options.setdefault("port", 0)
    options.setdefault("bind", ["127.0.0.1"])
    config = Config(**options)
    initial = dict(config.values)
    with in_thread(config) as srv:
        yield RespdServer(srv, initial)


class Respd(RespdServer):
    """The per-test view of the session's server: a URL for the chosen RESP version and
    clients that are closed when the test ends."""

    __slots__ = ("_clients", "protocol")

    def __init__(self, base: RespdServer, protocol: int) -> None:
        super().__init__(base.server, base._initial)
        self.protocol = protocol  # 2 or 3: what clients made from `url` speak
        self._clients: list[redis.Redis] = []

    @property
    def url(self) -> str:
        """`redis://127.0.0.1:PORT?protocol=N`: redis-py clients made from it speak RESP N."""
        return f"{self.server.url}?protocol={self.protocol}"

    def client(self, **options: Any) -> redis.Redis:
        """A redis-py client for this server (RESP `protocol` unless the options say
        otherwise), closed when the test ends."""
        import redis

        options.setdefault("protocol", self.protocol)
        client = redis.Redis.from_url(self.server.url, **options)
        self._clients.append(client)
        return client

    def async_client(self, **options: Any) -> redis.asyncio.Redis:
        """A redis.asyncio client for this server (`async with respd.async_client() as r`)."""
        import redis.asyncio

        options.setdefault("protocol", self.protocol)
        return redis.asyncio.Redis.from_url(self.server.url, **options)

    def close(self) -> None:
        """Close the clients `client()` made."""
        for client in self._clients:
            client.close()
        self._clients.clear()


# --- the pytest plugin ------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("respd", "respd server for tests")
    group.addoption("--respd-protocol", choices=_PROTOCOLS, default=None,
                    help="RESP version of the `respd` fixture's clients: 2, 3 or both "
                         "(each test twice). Default: the respd_protocol ini value, or 3.")
    parser.addini("respd_protocol", "RESP version for the respd fixture: 2, 3 or both",
                  default="3")


def _protocol_choice(config: pytest.Config) -> str:
    choice = config.getoption("respd_protocol") or config.getini("respd_protocol")
    if choice not in _PROTOCOLS:
        raise pytest.UsageError(f"respd_protocol must be 2, 3 or both, not {choice!r}")
    return choice


def pytest_configure(config: pytest.Config) -> None:
    _protocol_choice(config)  # a bad value stops the run before any test


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """With `both`, run each test that uses respd under RESP2 and RESP3, unless the test
    parametrizes `respd_protocol` itself."""
    if "respd_protocol" not in metafunc.fixturenames:
        return
    if _protocol_choice(metafunc.config) != "both":
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if "respd_protocol" in names:
            return
    metafunc.parametrize("respd_protocol", [2, 3], ids=["resp2", "resp3"])


@pytest.hookimpl
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an `async def` test that uses respd with asyncio.run, when no async plugin
    has run it (their hooks come first, or they wrap the coroutine function)."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    if not {"respd", "respd_server"} & set(pyfuncitem.fixturenames):
        return None
    funcargs = pyfuncitem.funcargs
    arguments = {name: funcargs[name] for name in inspect.signature(function).parameters
                 if name in funcargs}
    asyncio.run(function(**arguments))
    return True


@pytest.fixture(scope="session")
def respd_options() -> dict[str, Any]:
    """Parameters for the session's server (`_` for `-`); override in a conftest.py."""
    return {}


@pytest.fixture(scope="session")
def respd_server(respd_options: dict[str, Any]) -> Iterator[RespdServer]:
    """One respd server for the whole test session, in a background thread."""
    with serving(**respd_options) as server:
        yield server


@pytest.fixture
def respd_protocol(request: pytest.FixtureRequest) -> int:
    """The RESP version (2 or 3) of the `respd` fixture's URL and clients."""
    choice = _protocol_choice(request.config)
    return 3 if choice == "both" else int(choice)


@pytest.fixture
def respd(respd_server: RespdServer, respd_protocol: int) -> Iterator[Respd]:
    """The session's server, reset for this test: no data, no clients of earlier tests."""
    respd_server.reset()
    handle = Respd(respd_server, respd_protocol)
    try:
        yield handle
    finally:
        handle.close()
