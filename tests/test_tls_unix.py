"""Transports: TLS on tls-port (redis-py rediss://, redis-cli --tls, client
certificates) and the Unix socket (redis-py, redis-cli -s, permissions).

Certificates are made for each test session with trustme: a CA, a server certificate
for 127.0.0.1, and a client certificate.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest
import redis
import trustme
from redis.backoff import NoBackoff
from redis.retry import Retry

from server.serve import StartupError, running
from tests.conftest import DEADLINE, RawClient, free_port

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Certificates:
    ca: Path  # the CA certificate clients and the server trust
    server: Path  # server key and certificate chain, one PEM file
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    made = Certificates(folder / "ca.pem", folder / "server.pem", folder / "client.crt",
                        folder / "client.key")
    ca.cert_pem.write_to_path(str(made.ca))
    ca.issue_cert("127.0.0.1", "localhost").private_key_and_cert_chain_pem.write_to_path(
        str(made.server))
    client = ca.issue_cert("client@example.com")
    client.cert_chain_pems[0].write_to_path(str(made.client_cert))
    client.private_key_pem.write_to_path(str(made.client_key))
    return made


@dataclass(frozen=True)
class Servers:
    port: int  # plain TCP
    tls_port: int


def tls_options(certs: Certificates, **extra: object) -> dict[str, object]:
    return {"port": 0, "bind": ["127.0.0.1"], "tls_port": free_port(),
            "tls_cert_file": str(certs.server), "tls_key_file": str(certs.server),
            "tls_ca_cert_file": str(certs.ca), **extra}


@pytest.fixture
def tls(certs: Certificates) -> Iterator[Servers]:
    """A respd serving TCP and TLS (client certificates required, as Redis's default)."""
    options = tls_options(certs)
    with running(**options) as url:
        yield Servers(urlparse(url).port, int(options["tls_port"]))


def tls_client(certs: Certificates, port: int, *, with_cert: bool = True,
               **kwargs: object) -> redis.Redis:
    extra = {"ssl_certfile": str(certs.client_cert), "ssl_keyfile": str(certs.client_key)} \
        if with_cert else {}
    return redis.Redis.from_url(f"rediss://127.0.0.1:{port}", ssl_ca_certs=str(certs.ca),
                                retry=Retry(NoBackoff(), 0), **extra, **kwargs)


def redis_cli(*args: str) -> str:
    binary = shutil.which("redis-cli")
    if binary is None:
        pytest.skip("redis-cli is not installed")
    done = subprocess.run([binary, *args], capture_output=True, text=True,
                          timeout=DEADLINE, check=False)
    return (done.stdout + done.stderr).strip()


# --- TLS ---------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", [2, 3])
def test_redis_py_over_tls(certs: Certificates, tls: Servers, protocol: int) -> None:
    r = tls_client(certs, tls.tls_port, protocol=protocol)
    plain = redis.Redis(port=tls.port)
    big = os.urandom(3_000_000)  # many TLS records each way
    assert r.set("big", big)
    assert r.get("big") == big
    p = r.pubsub()
    p.subscribe("news")
    assert p.get_message(timeout=DEADLINE)["type"] == "subscribe"
    assert plain.publish("news", big) == 1  # published over TCP, delivered over TLS
    message = None
    while message is None:
        message = p.get_message(timeout=DEADLINE)
    assert message["data"] == big
    assert "127.0.0.1" in r.client_info()["laddr"]
    p.close()
    r.close()
    plain.close()


def test_redis_cli_over_tls(certs: Certificates, tls: Servers) -> None:
    base = ["--tls", "-p", str(tls.tls_port), "--cacert", str(certs.ca)]
    with_cert = [*base, "--cert", str(certs.client_cert), "--key", str(certs.client_key)]
    assert redis_cli(*with_cert, "ping") == "PONG"
    assert redis_cli(*with_cert, "set", "k", "v") == "OK"
    assert redis_cli(*with_cert, "get", "k") == "v"
    # tls-auth-clients yes (the default): no client certificate, no connection.
    assert "PONG" not in redis_cli(*base, "ping")


def test_client_certificates_required_or_optional(certs: Certificates) -> None:
    for auth, accepted in (("yes", False), ("optional", True), ("no", True)):
        options = tls_options(certs, tls_auth_clients=auth)
        with running(**options):
            r = tls_client(certs, int(options["tls_port"]), with_cert=False)
            if accepted:
                assert r.ping()
            else:
                with pytest.raises(redis.ConnectionError):
                    r.ping()
            r.close()


def test_the_first_request_may_arrive_with_the_handshake(certs: Certificates,
                                                         tls: Servers) -> None:
    """The client's last handshake message and its first request in one TCP segment:
    the server must answer without waiting for more bytes."""
    context = ssl.create_default_context(cafile=str(certs.ca))
    context.load_cert_chain(str(certs.client_cert), str(certs.client_key))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_object = context.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", tls.tls_port), timeout=DEADLINE) as sock:
        while True:
            try:
                tls_object.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(outgoing.read())
                incoming.write(sock.recv(65536))
        tls_object.write(b"PING\r\n")
        sock.sendall(outgoing.read())  # Finished and the request together
        reply = b""
        while b"\r\n" not in reply:
            try:
                reply += tls_object.read(1024)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
    assert reply == b"+PONG\r\n"


def test_plain_text_on_the_tls_port_is_dropped(tls: Servers) -> None:
    client = RawClient(tls.tls_port)
    client.send(b"PING\r\n")
    try:
        assert client.read_until_closed() == b""
    except ConnectionResetError:
        pass
    client.close()
    assert redis.Redis(port=tls.port).ping()


def test_config_set_reloads_or_refuses_tls_files(certs: Certificates, tls: Servers,
                                                 tmp_path: Path) -> None:
    r = redis.Redis(port=tls.port, decode_responses=True)
    with pytest.raises(redis.ResponseError) as raised:
        r.config_set("tls-cert-file", str(tmp_path / "missing.pem"))
    assert str(raised.value) == ("CONFIG SET failed (possibly related to argument "
                                 "'tls-cert-file') - Unable to update TLS configuration. "
                                 "Check server logs.")
    assert r.config_get("tls-cert-file") == {"tls-cert-file": str(certs.server)}
    assert r.config_set("tls-auth-clients", "optional")
    anonymous = tls_client(certs, tls.tls_port, with_cert=False)
    assert anonymous.ping()  # the new setting applies to new connections
    anonymous.close()
    r.close()


def test_tls_without_a_certificate_does_not_start() -> None:
    with pytest.raises(StartupError, match="Failed to configure TLS: tls-cert-file and "
                                           "tls-key-file must be set"), \
            running(port=0, bind=["127.0.0.1"], tls_port=free_port()):
        pass


# --- the Unix socket ---------------------------------------------------------------

@pytest.fixture
def unix_path(tmp_path: Path) -> Path:
    return tmp_path / "respd.sock"


def test_unix_socket(unix_path: Path) -> None:
    unix_path.write_bytes(b"")  # not a socket: left alone, and the bind fails
    with pytest.raises(StartupError, match="Failed opening Unix socket"), \
            running(port=0, bind=["127.0.0.1"], unixsocket=str(unix_path)):
        pass
    unix_path.unlink()
    with running(port=0, bind=["127.0.0.1"], unixsocket=str(unix_path),
                 unixsocketperm=0o700) as url:
        assert stat.S_IMODE(unix_path.stat().st_mode) == 0o700
        r = redis.Redis(unix_socket_path=str(unix_path))
        info = r.client_info()
        assert (info["addr"], info["laddr"], info["flags"]) == (
            f"{unix_path}:0", f"{unix_path}:0", "U")
        assert r.config_get("unixsocket*") == {"unixsocket": str(unix_path),
                                              "unixsocketperm": "700"}
        p = r.pubsub()
        p.subscribe("local")
        assert p.get_message(timeout=DEADLINE)["type"] == "subscribe"
        assert redis.Redis.from_url(url).publish("local", "hi") == 1
        assert p.get_message(timeout=DEADLINE)["data"] == b"hi"
        assert redis_cli("-s", str(unix_path), "ping") == "PONG"
        p.close()
        r.close()
    assert not unix_path.exists()  # removed on shutdown, as Redis does


def test_a_stale_socket_file_is_replaced(unix_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(unix_path))
    stale.close()  # the file stays, as after a crash
    with running(port=0, bind=["127.0.0.1"], unixsocket=str(unix_path)):
        assert redis.Redis(unix_socket_path=str(unix_path)).ping()
