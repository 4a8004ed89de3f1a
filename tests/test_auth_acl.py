"""Authentication and ACL users through real clients (redis-py and redis-cli).

requirepass and AUTH in both forms, HELLO ... AUTH, who stays authenticated when the
password changes, RESET, CLIENT KILL USER; ACL users with passwords, command
categories and channel patterns, so that a user can be confined to some channels.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.serve import running
from tests.conftest import DEADLINE, RawClient, wait_until

pytestmark = pytest.mark.timeout(60)

WRONGPASS = "invalid username-password pair or user is disabled."


@pytest.fixture
def port() -> Iterator[int]:
    """A respd with requirepass `s3cret`."""
    with running(port=0, bind=["127.0.0.1"], requirepass="s3cret") as url:
        yield urlparse(url).port


def client(port: int, protocol: int = 3, **kwargs: object) -> redis.Redis:
    """A redis-py client that reports errors rather than reconnecting."""
    return redis.Redis(port=port, protocol=protocol, retry=Retry(NoBackoff(), 0), **kwargs)


def redis_cli(port: int, *args: str) -> str:
    """What redis-cli prints (standard output, then standard error)."""
    binary = shutil.which("redis-cli")
    if binary is None:
        pytest.skip("redis-cli is not installed")
    done = subprocess.run([binary, "-p", str(port), *args], capture_output=True, text=True,
                          timeout=DEADLINE, check=False)
    return (done.stdout + done.stderr).strip()


# --- requirepass and AUTH ----------------------------------------------------------

def test_auth_forms(port: int) -> None:
    raw = RawClient(port)
    raw.send(b"PING\r\nAUTH nope\r\nAUTH nobody s3cret\r\nAUTH a b c\r\n"
             b"AUTH s3cret\r\nAUTH default s3cret\r\nPING\r\n")
    wrongpass = b"-WRONGPASS " + WRONGPASS.encode() + b"\r\n"
    raw.expect(b"-NOAUTH Authentication required.\r\n" + wrongpass + wrongpass
               + b"-ERR syntax error\r\n+OK\r\n+OK\r\n+PONG\r\n")
    raw.close()


def test_redis_py_authenticates_in_the_handshake(port: int, protocol: int) -> None:
    """AUTH (RESP2) or HELLO 3 AUTH (RESP3), with or without the user name."""
    for kwargs in ({"password": "s3cret"}, {"username": "default", "password": "s3cret"}):
        r = client(port, protocol, client_name="named", **kwargs)
        assert r.client_getname() in (b"named", "named")  # redis-py decodes it in RESP2
        r.close()
    with pytest.raises(redis.AuthenticationError, match=WRONGPASS):
        client(port, protocol, password="wrong").ping()


def test_hello_auth_and_setname(port: int) -> None:
    raw = RawClient(port)
    raw.send(b"HELLO 3 AUTH default wrong\r\nHELLO 2 AUTH default s3cret SETNAME me\r\n"
             b"CLIENT GETNAME\r\n")
    raw.expect(b"-WRONGPASS " + WRONGPASS.encode() + b"\r\n*14\r\n")
    assert raw.read_available().endswith(b"$2\r\nme\r\n")
    raw.close()


def test_changing_the_password_keeps_authenticated_clients_in(port: int) -> None:
    """As in Redis: a client already authenticated stays so; new ones need the new one;
    RESET makes a client authenticate again."""
    admin = client(port, password="s3cret")
    before = client(port, password="s3cret")
    assert before.ping()
    admin.config_set("requirepass", "n3w")
    assert before.ping()
    with pytest.raises(redis.AuthenticationError):
        client(port, password="s3cret").ping()
    assert client(port, password="n3w").ping()
    raw = RawClient(port)
    raw.send(b"AUTH n3w\r\nRESET\r\nPING\r\n")
    raw.expect(b"+OK\r\n+RESET\r\n-NOAUTH Authentication required.\r\n")
    # No password any more: everyone is in, including a client that never authenticated.
    admin.config_set("requirepass", "")
    raw.send(b"PING\r\n")
    raw.expect(b"+PONG\r\n")
    raw.close()
    for each in (admin, before):
        each.close()


def test_redis_cli_with_a_password(port: int) -> None:
    assert "NOAUTH Authentication required." in redis_cli(port, "ping")
    assert redis_cli(port, "-a", "s3cret", "--no-auth-warning", "ping") == "PONG"
    assert redis_cli(port, "--user", "default", "--pass", "s3cret", "--no-auth-warning",
                     "ping") == "PONG"
    assert "WRONGPASS" in redis_cli(port, "-a", "bad", "--no-auth-warning", "ping")


def test_client_kill_user(port: int) -> None:
    admin = client(port, password="s3cret")
    victim = RawClient(port)
    victim.send(b"AUTH s3cret\r\n")
    victim.expect(b"+OK\r\n")
    with pytest.raises(redis.ResponseError, match="No such user 'nobody'"):
        admin.execute_command("CLIENT", "KILL", "USER", "nobody")
    assert admin.execute_command("CLIENT", "KILL", "USER", "default") == 1  # not itself
    assert victim.read_until_closed() == b""
    assert admin.ping()
    victim.close()
    admin.close()


def test_auth_without_a_password_configured() -> None:
    with running(port=0, bind=["127.0.0.1"]) as url:
        r = client(urlparse(url).port)
        with pytest.raises(redis.AuthenticationError, match="AUTH <password> called without "
                                                            "any password configured"):
            r.execute_command("AUTH", "x")
        assert r.execute_command("AUTH", "default", "anything") in (b"OK", "OK", True)
        wait_until(r.ping)
        r.close()


# --- ACL users ---------------------------------------------------------------------

@pytest.fixture
def acl_port() -> Iterator[int]:
    """A respd with no password, and an admin connection to make users with."""
    with running(port=0, bind=["127.0.0.1"]) as url:
        yield urlparse(url).port


def setuser(r: redis.Redis, name: str, *rules: str) -> None:
    assert r.execute_command("ACL", "SETUSER", name, *rules) in (b"OK", "OK", True)


def test_a_user_confined_to_some_channels(acl_port: int, protocol: int) -> None:
    admin = client(acl_port)
    setuser(admin, "alice", "on", ">wonderland", "+@pubsub", "+acl|whoami", "&news.*")
    alice = client(acl_port, protocol, username="alice", password="wonderland")
    assert alice.execute_command("ACL", "WHOAMI") in (b"alice", "alice")
    assert alice.publish("news.today", "ok") == 0
    with pytest.raises(redis.exceptions.NoPermissionError,
                       match=r"^No permissions to access a channel$"):
        alice.publish("gossip", "psst")
    with pytest.raises(redis.exceptions.NoPermissionError,
                       match=r"^User alice has no permissions to run the 'get' command$"):
        alice.get("k")
    p = alice.pubsub()
    p.subscribe("news.sport")
    assert p.get_message(timeout=DEADLINE)["type"] == "subscribe"
    p.psubscribe("news.*")  # the pattern itself is allowed: it is in the user's list
    assert p.get_message(timeout=DEADLINE)["type"] == "psubscribe"
    assert admin.publish("news.sport", "goal") == 2
    assert [p.get_message(timeout=DEADLINE)["data"] for _ in range(2)] == [b"goal", b"goal"]
    other = alice.pubsub()
    with pytest.raises(redis.exceptions.NoPermissionError):
        other.subscribe("gossip")
        other.get_message(timeout=DEADLINE)
    with pytest.raises(redis.exceptions.NoPermissionError):
        other.psubscribe("news*")  # wider than the user's pattern
        other.get_message(timeout=DEADLINE)
    for each in (p, other):
        each.close()
    alice.close()
    admin.close()


def test_taking_channels_away_drops_the_users_subscribers(acl_port: int) -> None:
    admin = client(acl_port)
    setuser(admin, "bob", "on", ">pw", "+@all", "&a*")
    bob = RawClient(acl_port)
    bob.send(b"AUTH bob pw\r\nCLIENT SETNAME bob-sub\r\nSUBSCRIBE apple\r\n")
    bob.expect(b"+OK\r\n+OK\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\napple\r\n:1\r\n")
    setuser(admin, "bob", "&a*", "&b*")  # wider: bob stays
    assert admin.publish("apple", "1") == 1
    bob.expect(b"*3\r\n$7\r\nmessage\r\n$5\r\napple\r\n$1\r\n1\r\n")
    setuser(admin, "bob", "resetchannels", "&b*")  # apple is no longer allowed
    assert bob.read_until_closed() == b""
    bob.close()
    admin.close()


def test_users_passwords_on_off_and_deletion(acl_port: int) -> None:
    admin = client(acl_port)
    setuser(admin, "carol", "on", ">one", ">two", "+@all", "~*", "&*")
    for password in ("one", "two"):
        assert client(acl_port, username="carol", password=password).ping()
    setuser(admin, "carol", "<one")
    with pytest.raises(redis.AuthenticationError, match=WRONGPASS):
        client(acl_port, username="carol", password="one").ping()
    carol = RawClient(acl_port)
    carol.send(b"AUTH carol two\r\n")
    carol.expect(b"+OK\r\n")
    setuser(admin, "carol", "off")  # no new logins; the open connection goes on
    with pytest.raises(redis.AuthenticationError, match=WRONGPASS):
        client(acl_port, username="carol", password="two").ping()
    carol.send(b"PING\r\n")
    carol.expect(b"+PONG\r\n")
    assert admin.execute_command("ACL", "USERS") == [b"carol", b"default"]
    assert admin.execute_command("ACL", "DELUSER", "carol", "nobody") == 1
    assert carol.read_until_closed() == b""  # deleting a user ends its connections
    with pytest.raises(redis.ResponseError, match="The 'default' user cannot be removed"):
        admin.execute_command("ACL", "DELUSER", "default")
    carol.close()
    admin.close()


def test_commands_categories_keys_and_first_args(acl_port: int) -> None:
    admin = client(acl_port)
    setuser(admin, "dave", "on", "nopass", "+@read", "-strlen", "+select|0", "~user:*")
    admin.set("user:1", "x")
    dave = client(acl_port, username="dave", password="anything")
    assert dave.get("user:1") == b"x"
    with pytest.raises(redis.exceptions.NoPermissionError,
                       match=r"^No permissions to access a key$"):
        dave.get("secret")
    with pytest.raises(redis.exceptions.NoPermissionError, match="'strlen' command"):
        dave.strlen("user:1")
    with pytest.raises(redis.exceptions.NoPermissionError, match="'set' command"):
        dave.set("user:2", "y")
    assert dave.execute_command("SELECT", "0")
    with pytest.raises(redis.exceptions.NoPermissionError, match="'select' command"):
        dave.execute_command("SELECT", "1")
    assert admin.execute_command("ACL", "DRYRUN", "dave", "set", "user:1", "v") == (
        b"User dave has no permissions to run the 'set' command")
    assert admin.execute_command("ACL", "DRYRUN", "dave", "get", "user:1") in (b"OK", "OK")
    with pytest.raises(redis.ResponseError) as raised:
        admin.execute_command("ACL", "SETUSER", "dave", "+nosuchcommand")
    assert str(raised.value) == ("Error in ACL SETUSER modifier '+nosuchcommand': Unknown "
                                 "command or category name in ACL")
    dave.close()
    admin.close()


def test_a_password_for_the_default_user_requires_auth(acl_port: int) -> None:
    admin = client(acl_port)
    setuser(admin, "default", ">pw")
    assert admin.ping()  # already in
    with pytest.raises(redis.AuthenticationError):
        client(acl_port).ping()
    assert client(acl_port, password="pw").ping()
    admin.close()


def test_redis_cli_as_an_acl_user(acl_port: int) -> None:
    admin = client(acl_port)
    setuser(admin, "erin", "on", ">pw", "+publish", "&alerts")
    login = ["--user", "erin", "--pass", "pw", "--no-auth-warning"]
    assert redis_cli(acl_port, *login, "publish", "alerts", "hi") == "0"
    assert "No permissions to access a channel" in redis_cli(acl_port, *login, "publish",
                                                             "other", "hi")
    # redis-cli has exited; its connection is gone once the server has seen the close.
    wait_until(lambda: b"user=erin" not in admin.execute_command("CLIENT", "LIST"),
               message="redis-cli's connection to close")
    assert admin.execute_command("CLIENT", "KILL", "USER", "erin") == 0
    admin.close()
