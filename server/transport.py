"""TLS client connections, on the same non-blocking loop as plain TCP.

A TLS client is a Connection whose `raw` is a TLSChannel: an `ssl.SSLObject` between
two memory buffers and the client's non-blocking socket, the way trio's SSLStream is
built, but with the plain socket's synchronous interface. So the reader, the writer,
publishers' sends and backpressure are the same code for TCP, TLS and Unix sockets:
- `recv` reads what the socket has, decrypts every complete record, and raises
  BlockingIOError if that was no application data;
- `send_now` encrypts the whole outbox and sends what the socket takes; the rest is
  ciphertext owed to the socket, kept in the channel, and an empty entry stays in the
  outbox so that the writer (and the reader's backpressure) wait until it has gone.
The handshake runs first in the connection's own task, so a client that never finishes
it holds only its own task (and the idle `timeout` closes it).
"""

from __future__ import annotations

import logging
import socket
import ssl
from typing import TYPE_CHECKING

import trio

from server.config import Config, ConfigError
from server.connection import RECV_SIZE, Connection

if TYPE_CHECKING:
    from server.serve import Server

log = logging.getLogger("respd")

_PROTOCOLS = {"tlsv1.2": ssl.TLSVersion.TLSv1_2, "tlsv1.3": ssl.TLSVersion.TLSv1_3}
_VERIFY = {"yes": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "no": ssl.CERT_NONE}


def tls_context(config: Config) -> ssl.SSLContext:
    """The server's TLS context from the tls-* parameters; ConfigError says what is wrong."""
    cert, key = config["tls-cert-file"], config["tls-key-file"]
    if not cert or not key:
        raise ConfigError("tls-cert-file and tls-key-file must be set to serve tls-port")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.options |= ssl.OP_NO_RENEGOTIATION
    versions = []
    for name in config["tls-protocols"].split():
        if name.lower() not in _PROTOCOLS:
            raise ConfigError(f"Invalid tls-protocols specified: {name} (supported: TLSv1.2, "
                              f"TLSv1.3)")
        versions.append(_PROTOCOLS[name.lower()])
    context.minimum_version = min(versions, default=ssl.TLSVersion.TLSv1_2)
    context.maximum_version = max(versions, default=ssl.TLSVersion.TLSv1_3)
    try:
        context.load_cert_chain(cert, key, password=config["tls-key-file-pass"] or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"Failed to load certificate {cert} or private key {key}: "
                          f"{exc}") from None
    ca_file, ca_dir = config["tls-ca-cert-file"], config["tls-ca-cert-dir"]
    auth = config["tls-auth-clients"]
    if ca_file or ca_dir:
        try:
            context.load_verify_locations(cafile=ca_file or None, capath=ca_dir or None)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"Failed to configure CA certificate(s) file/directory: "
                              f"{exc}") from None
    elif auth != "no":
        raise ConfigError("Either tls-ca-cert-file or tls-ca-cert-dir must be specified when "
                          "tls-cluster, tls-replication or tls-auth-clients are enabled!")
    context.verify_mode = _VERIFY[auth]
    if config["tls-ciphers"]:
        try:
            context.set_ciphers(config["tls-ciphers"])
        except ssl.SSLError:
            raise ConfigError(f"Failed to configure ciphers: {config['tls-ciphers']}") from None
    if config["tls-prefer-server-ciphers"]:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    return context


class TLSChannel:
    """TLS over a non-blocking socket, with the socket's synchronous recv/send shape."""

    __slots__ = ("eof", "incoming", "outgoing", "owed", "sock", "ssl")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext) -> None:
        self.sock = sock  # the client's stdlib socket, non-blocking
        self.incoming = ssl.MemoryBIO()  # ciphertext received, not decrypted yet
        self.outgoing = ssl.MemoryBIO()  # ciphertext made, not taken from the BIO yet
        self.ssl = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.owed = bytearray()  # ciphertext the socket has not taken yet
        self.eof = False  # the client closed its side of TLS (close_notify)

    def fileno(self) -> int:
        return self.sock.fileno()

    async def handshake(self) -> None:
        """Complete the TLS handshake (a failure is an ssl.SSLError, an OSError)."""
        while True:
            try:
                self.ssl.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._send_owed()
                await trio.lowlevel.wait_readable(self.sock)
                try:
                    data = self.sock.recv(RECV_SIZE)
                except BlockingIOError:
                    continue
                if not data:
                    raise ConnectionResetError("closed during the TLS handshake") from None
                self.incoming.write(data)
        await self._send_owed()

    async def _send_owed(self) -> None:
        """Send every byte of ciphertext made so far, waiting for the socket."""
        self.flush()
        while self.owed:
            await trio.lowlevel.wait_writable(self.sock)
            self.flush()

    def flush(self) -> None:
        """Send what ciphertext the socket takes now; keep the rest owed."""
        if self.outgoing.pending:
            self.owed += self.outgoing.read()
        if self.owed:
            try:
                sent = self.sock.send(self.owed)
            except BlockingIOError:
                return
            del self.owed[:sent]

    @property
    def buffered(self) -> bool:
        """Whether ciphertext already received may hold a request (read by the handshake)."""
        return self.incoming.pending > 0

    def recv(self, size: int) -> bytes:
        """Decrypted bytes that have arrived; b"" at the end; BlockingIOError if none."""
        if self.eof:
            return b""
        try:
            data = self.sock.recv(size)
        except BlockingIOError:
            if not self.incoming.pending:
                raise
        else:
            if not data:
                return b""
            self.incoming.write(data)
        chunks = []
        try:
            while chunk := self.ssl.read(size):
                chunks.append(chunk)
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLZeroReturnError:
            self.eof = True
        if self.outgoing.pending:  # a post-handshake message (a key update, a ticket)
            self.flush()
        if chunks:
            return b"".join(chunks)
        if self.eof:
            return b""
        raise BlockingIOError


class TLSConnection(Connection):
    """A client on the TLS port: a Connection whose socket I/O goes through TLS."""

    __slots__ = ()

    def __init__(self, server: Server, sock: trio.socket.SocketType, client_id: int,
                 context: ssl.SSLContext) -> None:
        super().__init__(server, sock, client_id)
        self.raw = TLSChannel(sock._sock, context)

    async def wait_readable(self, channel: TLSChannel) -> None:
        """The reader's wait: none when the handshake already read the first request."""
        if not channel.buffered:
            await trio.lowlevel.wait_readable(channel)

    async def _reader(self) -> None:
        try:
            await self.raw.handshake()
        except OSError as exc:  # ssl.SSLError included: a bad certificate, not TLS at all
            log.debug("Error accepting a client connection: %s (addr=%s laddr=%s)", exc,
                      self.addr, self.laddr)
            return
        await super()._reader()

    def send_now(self) -> None:
        """Encrypt the whole outbox and send what the socket takes (never yields)."""
        channel = self.raw
        outbox = self.outbox
        if outbox:
            data = b"".join(outbox)
            if data:
                try:
                    channel.ssl.write(data)
                except ssl.SSLWantReadError:  # still in the handshake: keep it for later
                    return
            outbox.clear()
        try:
            channel.flush()
        except OSError:  # the peer is gone; the reader will see it too
            self.kill(None)
            return
        if channel.owed:
            outbox.append(b"")  # not empty until the owed ciphertext has gone
            self.outbox_size = len(channel.owed)
            self.congested = True
            self.wakeup.set()
        else:
            self.outbox_size = 0
