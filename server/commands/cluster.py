"""Cluster mode: respd as a one-node Redis Cluster that owns every hash slot.

With `--cluster-enabled yes`, cluster clients (redis-py's RedisCluster, sharded
pub/sub) find one master owning slots 0-16383, so the code written against respd in
development runs unchanged against a real cluster. What a real cluster refuses,
respd refuses too: multi-key commands (and SSUBSCRIBE) whose keys hash to different
slots get CROSSSLOT, and so does an EXEC whose queued commands do.

The node is described to each client at the address it connected to (unless
`cluster-announce-ip` / `cluster-announce-port` say otherwise), since that is an
address the client can reach.

CLUSTER KEYSLOT and the slot checks use Redis's hash: CRC16-XMODEM of the key, or of
its hash tag (what lies between the first `{` and the next `}`, when not empty),
modulo 16384.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from resp.encode import OK, array, bulk, bulk_array, error, integer, map_, verbatim
from resp.parser import _parse_int as parse_integer
from server.commands import Command, Handler, command, container, help_reply

if TYPE_CHECKING:
    from server.connection import Connection

SLOTS = 16384
CROSSSLOT = error("Keys in request don't hash to the same slot", "CROSSSLOT")
_DISABLED = error("This instance has cluster support disabled")


def _crc16_table() -> list[int]:
    """The CRC16-XMODEM table (polynomial 0x1021), one entry per byte value."""
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return table


_CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    crc = 0
    table = _CRC16
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def key_slot(key: bytes) -> int:
    """The hash slot of a key: its hash tag's, if it has a non-empty one."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc16(key) & (SLOTS - 1)


def command_keys(entry: Command, args: list[bytes]) -> list[bytes]:
    """The keys of a command, from its declared positions (first, last, step), as
    Redis's COMMAND GETKEYS finds them for commands without movable keys."""
    first, last, step = entry.keys
    if not first:
        return []
    if last < 0:
        last += len(args)
    return args[first:min(last, len(args) - 1) + 1:step]


class Cluster:
    """The one node's identity and the slot rule it enforces."""

    __slots__ = ("node_id",)

    def __init__(self) -> None:
        self.node_id = os.urandom(20).hex()  # CLUSTER MYID: 40 hex characters

    @staticmethod
    def cross_slot(conn: Connection, entry: Command, args: list[bytes]) -> bool:
        """Whether the command's keys (for EXEC: every queued command's) span slots."""
        if entry.name == "exec":
            queued = conn.multi or []
        elif entry.keys[0]:
            queued = [(entry, args)]
        else:
            return False
        slot = None
        for queued_entry, queued_args in queued:
            for key in command_keys(queued_entry, queued_args):
                this = key_slot(key)
                if slot is None:
                    slot = this
                elif this != slot:
                    return True
        return False


def _node(conn: Connection) -> tuple[Cluster | None, bytes, int]:
    """The cluster state (None in standalone mode) and the address to announce to conn."""
    srv = conn.server
    host, _, port = conn.laddr.rpartition(":")
    host = srv.config["cluster-announce-ip"] or host
    announced = srv.config["cluster-announce-port"] or int(port or srv.port)
    return srv.cluster, host.encode(), announced


def _bus_port(conn: Connection, port: int) -> int:
    return conn.server.config["cluster-announce-bus-port"] or port + 10000


container("cluster", "", "slow", group="cluster", since="3.0.0",
          summary="A container for Redis Cluster commands.", help_lines=(
              "COUNTKEYSINSLOT <slot>", "    Return the number of keys in <slot>.",
              "GETKEYSINSLOT <slot> <count>",
              "    Return key names stored by current node in a slot.",
              "INFO", "    Return information about the cluster.",
              "KEYSLOT <key>", "    Return the hash slot for <key>.",
              "MYID", "    Return the node id.",
              "NODES", "    Return cluster configuration seen by node. Output format:",
              ("    <id> <ip:port@bus-port[,hostname]> <flags> <master> <pings> <pongs> "
               "<epoch> <link> <slot> ..."),
              "REPLICAS <node-id>", "    Return <node-id> replicas.",
              "SLOTS",
              "    Return information about slots range mappings. Each range is made of:",
              "    start, end, master and replicas IP addresses, ports and ids",
              "SHARDS",
              ("    Return information about slot range mappings and the nodes associated "
               "with them."),
              "LINKS",
              "    Return information about all network links between this node and its peers.",
              ("    Output format is an array where each array element is a map "
               "containing attributes of a link"),
          ))


def _cluster_command(name: str, arity: int, flags: str, categories: str, *, since: str,
                     summary: str) -> Callable[[Handler], Handler]:
    """Declare a CLUSTER subcommand whose handler runs only in cluster mode, as in Redis
    (which answers every subcommand, HELP included, with an error otherwise)."""

    def register(handler: Handler) -> Handler:
        def checked(conn: Connection, args: list[bytes]) -> bytes:
            if conn.server.cluster is None:
                return _DISABLED
            return handler(conn, args)

        command(f"cluster|{name}", arity, flags, categories, group="cluster", since=since,
                summary=summary)(checked)
        return handler

    return register


_cluster_command("help", 2, "loading stale", "slow", since="5.0.0",
                  summary="Returns helpful text about the different subcommands.")(help_reply)


# CLUSTER INFO
@_cluster_command("info", 2, "stale", "slow", since="3.0.0",
                  summary="Returns information about the state of a node.")
def cluster_info(conn: Connection, args: list[bytes]) -> bytes:
    fields = (("cluster_state", "ok"), ("cluster_slots_assigned", SLOTS),
              ("cluster_slots_ok", SLOTS), ("cluster_slots_pfail", 0),
              ("cluster_slots_fail", 0), ("cluster_known_nodes", 1), ("cluster_size", 1),
              ("cluster_current_epoch", 0), ("cluster_my_epoch", 0),
              ("cluster_stats_messages_sent", 0), ("cluster_stats_messages_received", 0),
              ("total_cluster_links_buffer_limit_exceeded", 0))
    body = "".join(f"{name}:{value}\r\n" for name, value in fields)
    return verbatim(body.encode(), conn.proto)


# CLUSTER MYID
@_cluster_command("myid", 2, "stale", "slow", since="3.0.0",
                  summary="Returns the ID of a node.")
def cluster_myid(conn: Connection, args: list[bytes]) -> bytes:
    return bulk(conn.server.cluster.node_id.encode())


# CLUSTER SLOTS
@_cluster_command("slots", 2, "stale", "slow", since="3.0.0",
                  summary="Returns the mapping of cluster slots to nodes.")
def cluster_slots(conn: Connection, args: list[bytes]) -> bytes:
    cluster, host, port = _node(conn)
    master = array([bulk(host), integer(port), bulk(cluster.node_id.encode()),
                    map_([], conn.proto)])
    return array([array([integer(0), integer(SLOTS - 1), master])])


# CLUSTER SHARDS
@_cluster_command("shards", 2, "stale", "slow", since="7.0.0",
                  summary="Returns the mapping of cluster slots to shards.")
def cluster_shards(conn: Connection, args: list[bytes]) -> bytes:
    cluster, host, port = _node(conn)
    proto = conn.proto
    node = map_([
        (bulk(b"id"), bulk(cluster.node_id.encode())), (bulk(b"port"), integer(port)),
        (bulk(b"ip"), bulk(host)), (bulk(b"endpoint"), bulk(host)),
        (bulk(b"role"), bulk(b"master")), (bulk(b"replication-offset"), integer(0)),
        (bulk(b"health"), bulk(b"online")),
    ], proto)
    shard = map_([(bulk(b"slots"), array([integer(0), integer(SLOTS - 1)])),
                  (bulk(b"nodes"), array([node]))], proto)
    return array([shard])


# CLUSTER NODES
@_cluster_command("nodes", 2, "stale", "slow", since="3.0.0",
                  summary="Returns the cluster configuration for a node.")
def cluster_nodes(conn: Connection, args: list[bytes]) -> bytes:
    cluster, host, port = _node(conn)
    line = b"%b %b:%d@%d myself,master - 0 0 0 connected 0-%d\n" % (
        cluster.node_id.encode(), host, port, _bus_port(conn, port), SLOTS - 1)
    return verbatim(line, conn.proto)


# CLUSTER LINKS
@_cluster_command("links", 2, "stale", "slow", since="7.0.0",
                  summary="Returns a list of all TCP links to and from peer nodes.")
def cluster_links(conn: Connection, args: list[bytes]) -> bytes:
    return b"*0\r\n"  # no peers


# CLUSTER KEYSLOT key
@_cluster_command("keyslot", 3, "stale", "slow", since="3.0.0",
                  summary="Returns the hash slot for a key.")
def cluster_keyslot(conn: Connection, args: list[bytes]) -> bytes:
    return integer(key_slot(args[2]))


def _slot(text: bytes) -> int | bytes:
    """A slot argument: its number, or the error for a non-integer."""
    value = parse_integer(text)
    if value is None:
        return error("value is not an integer or out of range")
    return value


def _keys_in_slot(conn: Connection, slot: int) -> list[bytes]:
    """The live keys of the node's database that hash to slot."""
    ks = conn.server.keyspace
    return [key for key in ks.live_keys(ks.dbs[0]) if key_slot(key) == slot]


# CLUSTER COUNTKEYSINSLOT slot
@_cluster_command("countkeysinslot", 3, "stale", "slow", since="3.0.0",
                  summary="Returns the number of keys in a hash slot.")
def cluster_countkeysinslot(conn: Connection, args: list[bytes]) -> bytes:
    slot = _slot(args[2])
    if type(slot) is bytes:
        return slot
    if not 0 <= slot < SLOTS:
        return error("Invalid slot")
    return integer(len(_keys_in_slot(conn, slot)))


# CLUSTER GETKEYSINSLOT slot count
@_cluster_command("getkeysinslot", 4, "stale", "slow", since="3.0.0",
                  summary="Returns the key names in a hash slot.")
def cluster_getkeysinslot(conn: Connection, args: list[bytes]) -> bytes:
    slot, count = _slot(args[2]), _slot(args[3])
    for value in (slot, count):
        if type(value) is bytes:
            return value
    if not 0 <= slot < SLOTS or count < 0:
        return error("Invalid slot or number of keys")
    return bulk_array(_keys_in_slot(conn, slot)[:count])


def _replicas(name: str, since: str) -> None:
    """CLUSTER REPLICAS / SLAVES node-id: the node has no replicas."""

    def handler(conn: Connection, args: list[bytes]) -> bytes:
        if args[2].decode(errors="replace") != conn.server.cluster.node_id:
            return error(b"Unknown node %b" % args[2])
        return b"*0\r\n"

    _cluster_command(name, 3, "admin stale", "admin slow dangerous", since=since,
                     summary="Lists the replica nodes of a master node.")(handler)


_replicas("replicas", "5.0.0")
_replicas("slaves", "3.0.0")


def _connection_mode(name: str, flags: str, summary: str) -> None:
    """READONLY / READWRITE / ASKING: accepted in cluster mode (a master serves all reads,
    and no slot is ever migrating), refused otherwise as Redis does."""

    def handler(conn: Connection, args: list[bytes]) -> bytes:
        return OK if conn.server.cluster is not None else _DISABLED

    command(name, 1, flags, "fast connection", group="cluster", since="3.0.0",
            summary=summary)(handler)


_connection_mode("readonly", "loading stale fast",
                 "Enables read-only queries for a connection to a Redis Cluster replica node.")
_connection_mode("readwrite", "loading stale fast",
                 "Enables read-write queries for a connection to a Redis Cluster replica node.")
_connection_mode("asking", "fast", "Signals that a cluster client is following an -ASK "
                                   "redirect.")
