"""The pytest plugin (server/testing.py): registration, fixtures, the controls that replace
sleeps in tests (wait_for_subscribers, drop_clients), and the same controls from trio."""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import socket
import tomllib
from pathlib import Path

import pytest
import redis
import trio

import server.testing
from server.serve import serve
from server.testing import serving

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parent.parent


# --- registration -----------------------------------------------------------------

def test_registered_through_the_pytest11_entry_point(pytestconfig: pytest.Config) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"respd": "server.testing"}
    installed = importlib.metadata.entry_points(group="pytest11", name="respd")
    assert [entry.value for entry in installed] == ["server.testing"]
    assert pytestconfig.pluginmanager.get_plugin("respd") is server.testing


# --- the fixtures, seen from a user's test suite (pytester) --------------------------

def run_suite(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    """Run a test module with the installed plugin, as a user's project would."""
    pytester.makepyfile(test_user=source)
    return pytester.runpytest("-p", "no:cacheprovider", *args)


def test_each_test_gets_a_clean_server(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, """
        import redis

        def test_leaves_things_behind(respd):
            r = respd.client()
            r.set("left", "over")
            r.config_set("notify-keyspace-events", "KEA")
            p = r.pubsub()
            p.subscribe("news")
            respd.wait_for_subscribers("news")
            other = redis.Redis.from_url(respd.url, db=3)
            other.set("in-db-3", "x")
            r.acl_setuser("alice", enabled=True, passwords=["+secret"])

        def test_starts_clean(respd):
            r = respd.client()
            assert r.dbsize() == 0
            assert r.execute_command("SELECT", 3) and r.dbsize() == 0
            assert r.pubsub_numsub("news") == [(b"news", 0)]
            assert r.config_get("notify-keyspace-events") == {"notify-keyspace-events": ""}
            assert [c["id"] for c in r.client_list()] == [str(r.client_id())]
            assert r.acl_users() == [b"default"]
    """)
    result.assert_outcomes(passed=2)


def test_one_server_for_the_session(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, """
        ports = set()

        def test_a(respd, respd_server):
            ports.add(respd.port)
            assert respd.port == respd_server.port

        def test_b(respd):
            ports.add(respd.port)
            assert len(ports) == 1
    """)
    result.assert_outcomes(passed=2)


PROTOCOL_SUITE = """
    def test_protocol(respd, respd_protocol):
        assert respd.protocol == respd_protocol
        assert respd.url.endswith(f"?protocol={respd_protocol}")
        assert respd.client().client_info()["resp"] == str(respd_protocol)
        print("ran with", respd_protocol)
"""


@pytest.mark.parametrize(("args", "protocols"), [
    ((), ["3"]),
    (("--respd-protocol", "2"), ["2"]),
    (("--respd-protocol", "both"), ["2", "3"]),
    (("-o", "respd_protocol=2"), ["2"]),
])
def test_protocol_option(pytester: pytest.Pytester, args: tuple[str, ...],
                         protocols: list[str]) -> None:
    result = run_suite(pytester, PROTOCOL_SUITE, "-s", "-v", *args)
    result.assert_outcomes(passed=len(protocols))
    ran = [line.split()[-1] for line in result.outlines if "ran with" in line]
    assert sorted(ran) == protocols


def test_both_protocols_named_in_test_ids(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, PROTOCOL_SUITE, "-v", "--respd-protocol", "both")
    result.stdout.fnmatch_lines(["*test_protocol?resp2? PASSED*",
                                 "*test_protocol?resp3? PASSED*"])


def test_a_test_may_parametrize_the_protocol_itself(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, """
        import pytest

        @pytest.mark.parametrize("respd_protocol", [2])
        def test_only_resp2(respd):
            assert respd.client().client_info()["resp"] == "2"
    """, "--respd-protocol", "both")
    result.assert_outcomes(passed=1)


def test_a_bad_protocol_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, PROTOCOL_SUITE, "-o", "respd_protocol=4")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*respd_protocol must be 2, 3 or both*"])


def test_asyncio_tests_run_without_another_plugin(pytester: pytest.Pytester) -> None:
    result = run_suite(pytester, """
        async def test_passes(respd):
            async with respd.async_client() as r:
                assert await r.ping() is True

        async def test_fails(respd):
            async with respd.async_client() as r:
                assert await r.get("missing") == b"something"
    """)
    result.assert_outcomes(passed=1, failed=1)


def test_server_options_from_a_conftest(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        import pytest

        @pytest.fixture(scope="session")
        def respd_options():
            return {"databases": 4, "notify_keyspace_events": "KEA"}
    """)
    result = run_suite(pytester, """
        def test_options(respd):
            r = respd.client()
            r.config_set("notify-keyspace-events", "")
            assert r.config_get("databases") == {"databases": "4"}

        def test_options_again(respd):
            # the reset restores the session's options, not the defaults
            events = respd.client().config_get("notify-keyspace-events")
            assert events == {"notify-keyspace-events": "AKE"}
    """)
    result.assert_outcomes(passed=2)


# --- wait_for_subscribers and drop_clients ------------------------------------------

def test_wait_counts_channel_and_pattern_subscribers(respd) -> None:
    r = respd.client()
    first, second = r.pubsub(), r.pubsub()
    first.subscribe("news.tech")
    second.psubscribe("news.*")
    respd.wait_for_subscribers("news.tech", 2)
    respd.wait_for_subscribers(b"news.sport")  # the pattern alone
    assert r.publish("news.tech", "x") == 2
    assert respd.receivers("news.tech") == 2
    first.close()
    second.close()


def test_wait_for_shard_subscribers(respd) -> None:
    r = respd.client()
    p = r.pubsub()
    p.ssubscribe("orders")
    respd.wait_for_subscribers("orders", shard=True)
    assert respd.receivers("orders") == 0  # PUBLISH does not reach shard subscribers
    assert r.spublish("orders", "x") == 1
    p.close()


def test_wait_times_out_with_the_count_reached(respd) -> None:
    p = respd.client().pubsub()
    p.subscribe("news")
    respd.wait_for_subscribers("news")
    with pytest.raises(TimeoutError, match=r"1 of 2 subscribers to b'news' after 0.05 s"):
        respd.wait_for_subscribers("news", 2, timeout=0.05)
    p.close()


def test_wait_returns_at_once_when_already_satisfied(respd) -> None:
    respd.wait_for_subscribers("nobody", 0)


def test_drop_subscribers_leaves_other_clients(respd) -> None:
    r = respd.client(client_name="plain")
    p = respd.client().pubsub()
    p.subscribe("a")
    q = respd.client().pubsub()
    q.psubscribe("b*")
    respd.wait_for_subscribers("a")
    respd.wait_for_subscribers("bee")
    assert respd.drop_subscribers() == 2
    assert respd.receivers("a") == respd.receivers("bee") == 0
    assert [c["name"] for c in r.client_list()] == ["plain"]
    p.close()
    q.close()


def test_drop_clients_filters(respd) -> None:
    a = respd.client(client_name="a")
    b = respd.client(client_name="b")
    ids = [a.client_id(), b.client_id()]
    assert respd.drop_clients(ids, name="b") == 1
    assert respd.drop_clients([12345]) == 0
    assert respd.drop_clients(name="nobody") == 0
    assert a.client_id() == ids[0]  # untouched
    assert b.client_id() != ids[1]  # reconnected
    assert respd.drop_clients() == 2


def test_drop_and_wait_from_asyncio(respd) -> None:
    async def main() -> None:
        async with respd.async_client() as r:
            p = r.pubsub()
            await p.subscribe("news")
            await respd.wait_for_subscribers_async("news")
            assert await respd.drop_clients_async(name=None, subscribers=True) == 1
            assert respd.receivers("news") == 0
            await p.aclose()

    asyncio.run(main())


# --- the same controls in a trio program, and serving() outside pytest ----------------

def test_trio_forms_on_the_server_object() -> None:
    async def main() -> None:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                srv = await nursery.start(functools.partial(serve, port=0,
                                                            bind=["127.0.0.1"]))

                def subscribe() -> redis.client.PubSub:
                    p = redis.Redis(port=srv.port).pubsub()
                    p.subscribe("news")
                    return p

                p = await trio.to_thread.run_sync(subscribe)
                await srv.wait_for_subscribers("news")
                assert srv.receivers(b"news") == 1
                assert await srv.drop_clients(subscribers=True) == 1
                assert srv.receivers(b"news") == 0
                assert not srv.clients
                with pytest.raises(TimeoutError):
                    await srv.wait_for_subscribers("news", timeout=0.01)
                await trio.to_thread.run_sync(p.close)
                nursery.cancel_scope.cancel()

    trio.run(main)


def test_serving_outside_pytest_fixtures() -> None:
    with serving(databases=2) as srv:
        r = redis.Redis.from_url(srv.url)
        assert r.config_get("databases") == {"databases": "2"}
        assert (srv.host, srv.port) == ("127.0.0.1", r.connection_pool.connection_kwargs["port"])
        r.close()
        port = srv.port
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # stopped


def test_serving_reports_a_failed_start() -> None:
    with serving() as srv, pytest.raises(Exception, match="address already in use"), \
            serving(port=srv.port):
        pass
