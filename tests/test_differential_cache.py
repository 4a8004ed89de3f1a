"""The cache against a real redis-server: the same commands, byte-identical replies.

Each scenario starts from empty databases on both servers and sends its commands
one by one over raw sockets, comparing every reply byte for byte (RESP2 and RESP3).
Notification scenarios also compare what a `PSUBSCRIBE __key*__:*` client receives.
Replies that depend on the clock are avoided (TTLs are whole seconds far away).
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Iterator

import pytest
import trio

from server.config import Config
from server.serve import Server, serve
from tests.conftest import DEADLINE, RawClient

pytestmark = pytest.mark.timeout(60)

FAR = "4102444800"  # 2100-01-01 in seconds: an EXPIREAT that never passes in a test
FAR_MS = FAR + "000"


def _reply_end(data: bytes, pos: int) -> int:
    """Where the RESP value starting at pos ends, or -1 if data is incomplete."""
    line_end = data.find(b"\r\n", pos)
    if line_end < 0:
        return -1
    kind = data[pos:pos + 1]
    head = data[pos + 1:line_end]
    after = line_end + 2
    if kind in b"+-:_,#(":
        return after
    if kind in b"$=!":
        size = int(head)
        if size < 0:
            return after
        return after + size + 2 if len(data) >= after + size + 2 else -1
    if kind in b"*~>%|":
        count = int(head)
        if count < 0:
            return after
        count *= 2 if kind in b"%|" else 1
        for _ in range(count):
            after = _reply_end(data, after)
            if after < 0:
                return -1
        return after
    raise AssertionError(f"bad reply {data[pos:]!r}")


class Client(RawClient):
    """A raw client that reads exactly one reply per command."""

    def call(self, *args: str | bytes) -> bytes:
        self.command(*args)
        return self.reply()

    def reply(self) -> bytes:
        while True:
            end = _reply_end(self.buffer, 0) if self.buffer else -1
            if end >= 0:
                data, self.buffer = self.buffer[:end], self.buffer[end:]
                return data
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buffer)
            self.buffer += chunk


@pytest.fixture(scope="module")
def respd_server() -> Iterator[tuple[Server, trio.lowlevel.TrioToken]]:
    """One respd for the module, in a thread, with its Server object for setting up state
    that no respd command can make yet (keys of other types)."""
    ready = threading.Event()
    box: dict = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            box["server"] = await nursery.start(serve, Config(port=0, bind=["127.0.0.1"]))
            box["token"] = trio.lowlevel.current_trio_token()
            ready.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(DEADLINE)
    yield box["server"], box["token"]
    trio.from_thread.run_sync(box["server"].shutdown_requested.set, trio_token=box["token"])
    thread.join(DEADLINE)


@pytest.fixture(scope="module")
def respd_module_port(respd_server: tuple[Server, trio.lowlevel.TrioToken]) -> int:
    return respd_server[0].port


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def pair(request: pytest.FixtureRequest, respd_module_port: int,
         redis_port: int) -> Iterator[tuple[Client, Client]]:
    """A client on respd and one on redis, both in the protocol under test, databases empty."""
    clients = (Client(respd_module_port), Client(redis_port))
    for client in clients:
        client.call("HELLO", str(request.param))
        client.call("CONFIG", "SET", "notify-keyspace-events", "")
        client.call("CONFIG", "SET", "maxmemory", "0")
        client.call("CONFIG", "SET", "maxmemory-policy", "noeviction")
        client.call("FLUSHALL")
    yield clients
    for client in clients:
        client.close()


def _elements(data: bytes) -> list[bytes]:
    """The bulk strings of a reply, in order (for replies whose order is unspecified)."""
    found = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\r\n", pos)
        if data[pos:pos + 1] == b"$":
            size = int(data[pos + 1:end])
            found.append(data[end + 2:end + 2 + size])
            pos = end + 4 + size
        else:
            pos = end + 2
    return found


def _run(pair: tuple[Client, Client], script: str) -> None:
    """Send each line of script to both servers; every reply must be the same bytes.

    A line starting with `~` has a reply whose order Redis leaves unspecified (KEYS,
    SCAN): the same bulk strings in any order are the same reply.
    """
    ours, theirs = pair
    for line in script.strip().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        unordered = line.startswith("~")
        args = shlex.split(line.lstrip("~"))
        expected = theirs.call(*args)
        got = ours.call(*args)
        if unordered:
            assert sorted(_elements(got)) == sorted(_elements(expected)), line
        else:
            assert got == expected, line


SCENARIOS = {
    "get-set": """
        GET k
        SET k v
        GET k
        SET k ""
        GET k
        SET k v extra
        SET
        SET k
        GET
        GET a b
        SET k v NX
        SET k v2 XX
        GET k
        SET n v NX
        SET n2 v XX
        EXISTS n2
        SET k v NX XX
        SET k v XX NX
        SET k v NX NX
        SET k v GET
        SET k v3 GET NX
        SET nk v GET XX
        SET nk v GET NX
        GET nk
        SET k v EX
        SET k v EX 0
        SET k v EX -1
        SET k v PX 0
        SET k v EX abc
        SET k v EX 1.5
        SET k v EX 10 PX 100
        SET k v EX 10 EX 20
        TTL k
        SET k v EX 10 KEEPTTL
        SET k v KEEPTTL EX 10
        SET k v EXAT 0
        SET k v PXAT -5
        SET k v EX 9223372036854775807
        SET k v EX 9223372036854775
        SET k v EX 9223372036854776
        SET k v PX 9223372036854775807
        SET k v EXAT 9223372036854775
        SET k v PXAT 9223372036854775807
        SET k v badopt
        SET k v GET GET
        SET k v KEEPTTL KEEPTTL
        SET k v PERSIST
        SET k v XX GET NX
        SET k v KEEPTTL NX GET
        SET k v ex 100
        TTL k
        SET k v2
        TTL k
        SET k v EXAT """ + FAR + """
        EXPIRETIME k
        SET k v3 KEEPTTL
        EXPIRETIME k
        GET k
        SET k v PXAT """ + FAR_MS + """
        PEXPIRETIME k
        SET past v EXAT 1
        GET past
        EXISTS past
        SET k v GET EX 100
        TTL k
    """,
    "setnx-setex-getset": """
        SETNX k v
        SETNX k w
        GET k
        SETNX
        SETEX k 100 v
        TTL k
        SETEX k 0 v
        SETEX k -1 v
        SETEX k abc v
        SETEX k 9223372036854776 v
        PSETEX k 100000 v
        TTL k
        PSETEX k 0 v
        PSETEX k x v
        SETEX k 100
        GETSET k new
        TTL k
        GETSET missing v
        GETSET
        GETDEL k
        GETDEL k
        GETDEL
    """,
    "getex": """
        GETEX nokey
        GETEX nokey EX 10
        GETEX nokey BAD
        SET k v
        GETEX k
        GETEX k EX 100
        TTL k
        GETEX k PERSIST
        TTL k
        GETEX k PX 100000
        TTL k
        GETEX k EXAT """ + FAR + """
        EXPIRETIME k
        GETEX k PXAT """ + FAR_MS + """
        GETEX k EX 0
        GETEX k EX -1
        GETEX k EX abc
        GETEX k EX
        GETEX k EX 10 PX 10
        GETEX k EX 10 EX 20
        GETEX k PERSIST EX 10
        GETEX k EX 10 PERSIST
        GETEX k KEEPTTL
        GETEX k NX
        GETEX k GET
        GETEX k PERSIST PERSIST
        GETEX k EXAT 1
        EXISTS k
        SET k v
        GETEX k PXAT 1
        EXISTS k
    """,
    "mget-mset": """
        MSET a 1 b 2 c 3
        MGET a b c d
        MSET a
        MSET a 1 b
        MSET
        MGET
        MSETNX a 1 x 2
        GET x
        MSETNX x 1 y 2
        MGET x y
        MSETNX x
        MSETNX p 1 p 2
        GET p
    """,
    "substr-role-memory-usage": """
        SET k hello
        SUBSTR k 1 3
        SUBSTR k -3 -1
        SUBSTR k 0 -100
        SUBSTR nokey 0 1
        SUBSTR k a 1
        SUBSTR k 1
        ROLE
        ROLE x
        MEMORY USAGE nokey
        MEMORY USAGE nokey SAMPLES 0
        MEMORY USAGE k SAMPLES -1
        MEMORY USAGE k FOO
        MEMORY USAGE k SAMPLES
        MEMORY USAGE nokey SAMPLES x
        MEMORY USAGE
        MEMORY NOSUCH
    """,
    "append-strlen-ranges": """
        APPEND k hello
        APPEND k " world"
        GET k
        STRLEN k
        STRLEN nokey
        OBJECT ENCODING k
        APPEND n 12
        OBJECT ENCODING n
        APPEND n 3
        GET n
        OBJECT ENCODING n
        GETRANGE k 0 4
        GETRANGE k -5 -1
        GETRANGE k 0 -1
        GETRANGE k 0 -100
        GETRANGE k -1 -5
        GETRANGE k 5 2
        GETRANGE k 100 200
        GETRANGE k -100 100
        GETRANGE k 0 9223372036854775807
        GETRANGE k a 1
        GETRANGE k 0 b
        GETRANGE nokey 0 1
        SET e ""
        GETRANGE e 0 -1
        SETRANGE k 6 WORLD
        GET k
        SETRANGE k 20 x
        GET k
        SETRANGE k -1 x
        SETRANGE k a x
        SETRANGE new 3 abc
        GET new
        SETRANGE new2 0 ""
        EXISTS new2
        SETRANGE k 0 ""
        SETRANGE k 536870912 x
        SETRANGE k 536870911 ""
        SETRANGE nn 100000 x
        STRLEN nn
        OBJECT ENCODING new
        SET i 123
        SETRANGE i 0 9
        GET i
        OBJECT ENCODING i
    """,
    "counters": """
        INCR c
        INCR c
        DECR c
        DECR d
        INCRBY c 10
        INCRBY c -20
        DECRBY c 5
        DECRBY c -5
        INCRBY c abc
        INCRBY c 1.5
        INCRBY c 9223372036854775808
        SET c 9223372036854775806
        INCR c
        INCR c
        SET c -9223372036854775807
        DECR c
        DECR c
        DECRBY c -9223372036854775808
        DECRBY x 9223372036854775807
        DECRBY x 9223372036854775807
        SET s abc
        INCR s
        SET s " 1"
        INCR s
        SET s 01
        INCR s
        SET s +1
        INCR s
        SET s -0
        INCR s
        SET s 12345678901234567890
        INCR s
        SET t 5
        EXPIRE t 100
        INCR t
        TTL t
        OBJECT ENCODING t
        INCR
        INCRBY c
    """,
    "incrbyfloat": """
        INCRBYFLOAT f 0.1
        INCRBYFLOAT f 0.2
        INCRBYFLOAT f -0.3
        INCRBYFLOAT f 1e10
        INCRBYFLOAT f 1.5e-5
        INCRBYFLOAT f 3.0e3
        INCRBYFLOAT g 10.5
        INCRBYFLOAT g 0.1
        INCRBYFLOAT h 5.0e3
        INCRBYFLOAT h 2.0e-3
        INCRBYFLOAT h 1e300
        INCRBYFLOAT h -1e300
        INCRBYFLOAT i 1.
        INCRBYFLOAT i .5
        INCRBYFLOAT i +2
        INCRBYFLOAT i abc
        INCRBYFLOAT i ""
        INCRBYFLOAT i " 1"
        INCRBYFLOAT i "1 "
        INCRBYFLOAT i nan
        INCRBYFLOAT i inf
        INCRBYFLOAT i -inf
        INCRBYFLOAT i 1e5000
        INCRBYFLOAT i 0x10
        INCRBYFLOAT i 1e
        SET s abc
        INCRBYFLOAT s 1
        SET s inf
        INCRBYFLOAT s 1
        SET big 1e4000
        INCRBYFLOAT big 1
        SET neg -0.0000000000000000001
        INCRBYFLOAT neg 0
        INCRBYFLOAT z 0.1
        INCRBYFLOAT z 0.7
        INCRBYFLOAT z 1.1
        INCRBYFLOAT z 3.3333333333333333333
        INCRBYFLOAT z 123456789.987654321
        INCRBYFLOAT w 5
        OBJECT ENCODING w
    """,
    "wrongtype": """
        SET s v
        GET s
    """,
    "del-exists-type": """
        MSET a 1 b 2 c 3
        DEL a b x
        DEL a
        EXISTS a b c c x
        UNLINK c c
        EXISTS c
        DEL
        EXISTS
        TYPE b
        TYPE nokey
        TOUCH b b nokey
        TOUCH
        SET e v EX 100
        DEL e
    """,
    "copy-rename-move": """
        SET a 1
        EXPIRE a 100
        COPY a b
        GET b
        TTL b
        COPY a b
        COPY a b REPLACE
        COPY a a
        COPY nokey z
        COPY a c DB 1
        COPY a c DB 99
        COPY a c DB -1
        COPY a c DB x
        COPY a c DB
        COPY a c FOO
        COPY a a DB 1
        COPY a a DB 0
        SELECT 1
        GET c
        TTL c
        SELECT 0
        APPEND app x
        APPEND app y
        COPY app app2
        APPEND app2 z
        MGET app app2
        RENAME a r
        GET a
        GET r
        TTL r
        RENAME a r
        RENAME r r
        RENAME nokey nokey
        SET x 1
        RENAME r x
        GET x
        TTL x
        RENAMENX x y
        SET z 1
        RENAMENX y z
        RENAMENX y y
        RENAMENX none y
        MOVE y 1
        MOVE y 1
        MOVE z 1
        MOVE z 0
        MOVE z 16
        MOVE z -1
        MOVE z abc
        MOVE nokey 1
        SELECT 1
        ~KEYS *
        SELECT 0
    """,
    "swapdb": """
        SET a 0
        SELECT 1
        SET b 1
        EXPIRE b 100
        SWAPDB 0 1
        GET b
        SELECT 0
        GET b
        TTL b
        GET a
        SWAPDB 0 0
        SWAPDB 0 16
        SWAPDB a 0
        SWAPDB 0 b
        SWAPDB -1 0
        SWAPDB 0
    """,
    "keys-scan-random": """
        ~KEYS *
        RANDOMKEY
        MSET one 1 two 2 three 3 four 4 "" e
        ~KEYS t*
        ~KEYS *o*
        KEYS ?ne
        ~KEYS [ot]*
        KEYS nomatch
        KEYS
        SCAN x
        SCAN " 0"
        SCAN 0 COUNT 0
        SCAN 0 COUNT -1
        SCAN 0 COUNT x
        SCAN 0 MATCH
        SCAN 0 FOO bar
        SCAN 0 COUNT
        SCAN 18446744073709551616
        DBSIZE
        DEL one two three four ""
        SCAN 0
        SCAN 0 TYPE string
        SET only 1
        RANDOMKEY
        ~SCAN 0 MATCH o* COUNT 100
        SCAN 0 MATCH x* COUNT 100
        ~SCAN 0 TYPE string COUNT 100
        SCAN 0 TYPE hash
        SCAN 0 TYPE STRING
    """,
    "expire": """
        EXPIRE nokey 10
        SET k v
        EXPIRE k 100
        TTL k
        PTTL nokey
        TTL nokey
        EXPIRE k 100 NX
        EXPIRE k 200 XX
        TTL k
        EXPIRE k 100 GT
        EXPIRE k 300 GT
        TTL k
        EXPIRE k 400 LT
        EXPIRE k 50 LT
        TTL k
        EXPIRE k 10 NX XX
        EXPIRE k 10 NX GT
        EXPIRE k 10 GT LT
        EXPIRE k 10 XX GT
        TTL k
        EXPIRE k 10 FOO
        EXPIRE k 10 nx NX
        EXPIRE k abc
        EXPIRE k 1.5
        EXPIRE k 9223372036854775807
        EXPIRE k 9223372036854776
        EXPIRE k -9223372036854776
        PEXPIRE k 9223372036854775807
        EXPIREAT k 9223372036854776
        PEXPIREAT k 9223372036854775807
        PEXPIRETIME k
        SET p v
        PERSIST p
        EXPIRE p 100 XX
        EXPIRE p 100 GT
        EXPIRE p 100 LT
        TTL p
        PERSIST p
        PERSIST p
        TTL p
        PERSIST nokey
        EXPIRETIME p
        EXPIRETIME nokey
        EXPIREAT p """ + FAR + """
        EXPIRETIME p
        PEXPIREAT p """ + FAR_MS + """1
        PEXPIRETIME p
        EXPIRE p 0
        EXISTS p
        SET p v
        EXPIRE p -10
        EXISTS p
        SET p v
        EXPIREAT p 1
        EXISTS p
        SET p v
        PEXPIREAT p -1
        EXISTS p
        SET p v
        PEXPIRE p 0 NX
        EXISTS p
        EXPIRE
        TTL
        PERSIST
    """,
    "object": """
        OBJECT ENCODING nokey
        SET i 12345
        OBJECT ENCODING i
        SET i -12
        OBJECT ENCODING i
        SET i 9223372036854775807
        OBJECT ENCODING i
        SET i 9223372036854775808
        OBJECT ENCODING i
        SET e short
        OBJECT ENCODING e
        SET r 01234567890123456789012345678901234567890123
        OBJECT ENCODING r
        SET r 012345678901234567890123456789012345678901234
        OBJECT ENCODING r
        SET z 0
        OBJECT REFCOUNT z
        SET z 9999
        OBJECT REFCOUNT z
        SET z 10000
        OBJECT REFCOUNT z
        OBJECT REFCOUNT e
        OBJECT REFCOUNT nokey
        OBJECT IDLETIME e
        OBJECT IDLETIME nokey
        OBJECT FREQ e
        OBJECT FREQ nokey
        OBJECT HELP
        OBJECT FOO
        OBJECT
        OBJECT ENCODING
        OBJECT ENCODING a b
        CONFIG SET maxmemory-policy allkeys-lfu
        OBJECT IDLETIME e
        OBJECT FREQ e
        CONFIG SET maxmemory-policy noeviction
    """,
    "flush-dbsize": """
        MSET a 1 b 2
        SELECT 2
        SET c 3
        DBSIZE
        FLUSHDB
        DBSIZE
        SET c 3
        SELECT 0
        DBSIZE
        FLUSHDB ASYNC
        DBSIZE
        FLUSHDB SYNC
        FLUSHDB FOO
        FLUSHDB ASYNC SYNC
        FLUSHALL
        SELECT 2
        DBSIZE
        FLUSHALL sync
        FLUSHALL async
        FLUSHALL foo
        DBSIZE x
    """,
    "transactions": """
        EXEC
        DISCARD
        MULTI
        MULTI
        SET a 1
        INCR a
        GET a
        EXEC
        MULTI
        SET a
        SET b 2
        EXEC
        GET b
        MULTI
        NOSUCHCOMMAND
        EXEC
        MULTI
        SET a x
        INCR a
        GET a
        EXEC
        MULTI
        SET d 1
        DISCARD
        GET d
        MULTI
        WATCH a
        EXEC
        WATCH
        MULTI
        EXEC
        UNWATCH
        MULTI
        PING
        ECHO hi
        SELECT 1
        SET indb1 1
        EXEC
        GET indb1
        SELECT 0
    """,
    "watch": """
        SET w 1
        WATCH w
        SET w 2
        MULTI
        GET w
        EXEC
        WATCH w
        MULTI
        INCR w
        EXEC
        WATCH w nokey
        UNWATCH
        SET w 5
        MULTI
        GET w
        EXEC
        WATCH nokey
        SET nokey 1
        MULTI
        PING
        EXEC
        WATCH w
        EXPIRE w 100
        MULTI
        PING
        EXEC
        WATCH w
        PERSIST w
        MULTI
        PING
        EXEC
        WATCH w
        GET w
        MULTI
        PING
        EXEC
        WATCH w
        FLUSHALL
        MULTI
        PING
        EXEC
        WATCH w
        FLUSHALL
        MULTI
        PING
        EXEC
        SET x 1
        WATCH x
        MULTI
        DEL x
        EXEC
        WATCH x
        DISCARD
        SET x 2
        MULTI
        PING
        EXEC
    """,
    "config-notify": """
        CONFIG SET notify-keyspace-events KEA
        CONFIG GET notify-keyspace-events
        CONFIG SET notify-keyspace-events KEAnm
        CONFIG GET notify-keyspace-events
        CONFIG SET notify-keyspace-events Ex
        CONFIG GET notify-keyspace-events
        CONFIG SET notify-keyspace-events g$lshzxetdnKEm
        CONFIG GET notify-keyspace-events
        CONFIG SET notify-keyspace-events g$
        CONFIG GET notify-keyspace-events
        CONFIG SET notify-keyspace-events KEw
        CONFIG GET notify-keyspace-events
        CONFIG SET notify-keyspace-events ""
        CONFIG GET notify-keyspace-events
        CONFIG SET maxmemory 10mb
        CONFIG GET maxmemory
        CONFIG SET maxmemory-policy allkeys-lru
        CONFIG GET maxmemory-policy
        CONFIG SET maxmemory-policy foo
        CONFIG SET maxmemory 0
        CONFIG SET maxmemory-policy noeviction
        CONFIG GET maxmemory-samples
        ~CONFIG GET lfu-*
    """,
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_same_replies(pair: tuple[Client, Client], name: str) -> None:
    _run(pair, SCENARIOS[name])


def test_wrongtype(pair: tuple[Client, Client],
                   respd_server: tuple[Server, trio.lowlevel.TrioToken]) -> None:
    """Every string command on a key of another type answers like Redis (WRONGTYPE)."""
    srv, token = respd_server
    pair[1].call("RPUSH", "l", "a")  # respd has no lists yet: it gets a non-string by hand

    def put_list() -> None:
        srv.keyspace.store(srv.keyspace.dbs[0], b"l", ["a"])  # type: ignore[arg-type]

    trio.from_thread.run_sync(put_list, trio_token=token)
    _run(pair, """
        GET l
        SET l v GET
        GETSET l v
        GETDEL l
        GETEX l
        GETEX l EX 10
        GETEX l BAD
        MGET l x
        APPEND l x
        STRLEN l
        GETRANGE l 0 1
        GETRANGE l x 1
        SETRANGE l 0 x
        SETRANGE l 0 ""
        SETRANGE l -1 x
        INCR l
        DECR l
        INCRBY l 1
        DECRBY l 1
        INCRBY l x
        INCRBYFLOAT l 1
        INCRBYFLOAT l x
        EXISTS l
        OBJECT REFCOUNT l
        RENAME l l2
        COPY l2 l3
        SET l2 v XX
        GET l2
        GET l3
    """)


NOTIFY_SCENARIOS = {
    "strings": """
        SET k v
        SET k v EX 100
        SET k v KEEPTTL
        SET k v PX 100000 NX
        SET k v XX GET
        SETNX k v
        SETNX k2 v
        SETEX k 100 v
        PSETEX k 100000 v
        GETSET k v
        MSET a 1 b 2
        MSETNX a 1 c 2
        MSETNX c 1 d 2
        APPEND k x
        APPEND new x
        INCR a
        DECR a
        INCRBY a 5
        DECRBY a 5
        INCRBYFLOAT a 1.5
        SETRANGE k 1 y
        SETRANGE sr 2 y
        SETRANGE k 0 ""
        GETDEL k
        GETDEL k
        SET k v
        GETEX k EX 100
        GETEX k PERSIST
        GETEX k PERSIST
        GETEX k EXAT 1
        SET past v EXAT 1
        GET past
        GET missing
        MGET missing a
        STRLEN missing
    """,
    "generic": """
        MSET a 1 b 2 c 3
        DEL a x b
        UNLINK c
        SET k v
        EXPIRE k 100
        PEXPIRE k 100000
        EXPIREAT k """ + FAR + """
        EXPIRE k 100 NX
        PERSIST k
        PERSIST k
        EXPIRE k 0
        SET k v
        PEXPIREAT k 1
        SET k v
        COPY k k2
        COPY k k2 REPLACE
        COPY k k3 DB 1
        RENAME k k4
        RENAMENX k4 k5
        RENAMENX k5 k2
        RENAME k2 k2
        MOVE k5 2
        EXISTS none k2
        TYPE none
        TTL none
        TOUCH none k2
        SWAPDB 0 1
        FLUSHDB
        FLUSHALL
    """,
}


def _subscriber(port: int, flags: str) -> Client:
    sub = Client(port)
    sub.call("CONFIG", "SET", "notify-keyspace-events", flags)
    sub.call("PSUBSCRIBE", "__key*__:*")
    return sub


@pytest.mark.parametrize("flags", ["KEA", "KEAnm", "Kg", "E$", "Ex", "Km"])
@pytest.mark.parametrize("name", NOTIFY_SCENARIOS)
def test_same_notifications(pair: tuple[Client, Client], name: str, flags: str) -> None:
    """The same commands make the same keyspace and keyevent messages, in order."""
    ours, theirs = pair
    subs = [_subscriber(ours.sock.getpeername()[1], flags),
            _subscriber(theirs.sock.getpeername()[1], flags)]
    try:
        _run(pair, NOTIFY_SCENARIOS[name])
        marker = ("PUBLISH", "__keyspace@0__:end", "end")
        ours.call(*marker)
        theirs.call(*marker)
        received = []
        for sub in subs:
            frames = []
            while not frames or b"__keyspace@0__:end" not in frames[-1]:
                frames.append(sub.reply())
            received.append(frames)
        assert received[0] == received[1]
    finally:
        for sub in subs:
            sub.close()
        for client in pair:
            client.call("CONFIG", "SET", "notify-keyspace-events", "")
