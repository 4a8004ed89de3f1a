"""Pub/sub commands: (P|S)SUBSCRIBE, (P|S)UNSUBSCRIBE, (S)PUBLISH, PUBSUB."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pubsub.hub import CHANNEL, PATTERN, SHARD, Kind
from resp.encode import bulk, bulk_array, error, integer
from server.commands import command, container, help_reply

if TYPE_CHECKING:
    from server.connection import Connection


def _subscriber(kind: Kind, name: str, since: str, summary: str, flags: str) -> None:
    """Declare SUBSCRIBE-like and UNSUBSCRIBE-like commands for one kind."""
    hub_method = "subscribe" if "un" not in name else "unsubscribe"
    arity = -2 if hub_method == "subscribe" else -1
    keys = (1, -1, 1) if kind is SHARD else (0, 0, 0)

    def handler(conn: Connection, args: list[bytes]) -> bytes:
        return getattr(conn.server.hub, hub_method)(conn, kind, args[1:])

    command(name, arity, flags, "pubsub slow", group="pubsub", since=since, summary=summary,
            keys=keys, pubsub_ok=True)(handler)


# SUBSCRIBE channel [channel ...] / UNSUBSCRIBE [channel ...], and the P and S variants
_FLAGS = "pubsub noscript loading stale"
_subscriber(CHANNEL, "subscribe", "2.0.0", "Listens for messages published to channels.", _FLAGS)
_subscriber(CHANNEL, "unsubscribe", "2.0.0", "Stops listening to messages posted to channels.",
            _FLAGS)
_subscriber(PATTERN, "psubscribe", "2.0.0",
            "Listens for messages published to channels that match one or more patterns.", _FLAGS)
_subscriber(PATTERN, "punsubscribe", "2.0.0",
            "Stops listening to messages published to channels that match one or more "
            "patterns.", _FLAGS)
_subscriber(SHARD, "ssubscribe", "7.0.0", "Listens for messages published to shard channels.",
            _FLAGS)
_subscriber(SHARD, "sunsubscribe", "7.0.0",
            "Stops listening to messages posted to shard channels.", _FLAGS)


# PUBLISH channel message
@command("publish", 3, "pubsub loading stale fast", "pubsub fast", group="pubsub",
         since="2.0.0", summary="Posts a message to a channel.")
def publish(conn: Connection, args: list[bytes]) -> bytes:
    return integer(conn.server.hub.publish(args[1], args[2]))


# SPUBLISH shardchannel message
@command("spublish", 3, "pubsub loading stale fast", "pubsub fast", group="pubsub",
         since="7.0.0", summary="Post a message to a shard channel", keys=(1, 1, 1))
def spublish(conn: Connection, args: list[bytes]) -> bytes:
    return integer(conn.server.hub.spublish(args[1], args[2]))


container("pubsub", "", "slow", group="pubsub", since="2.8.0",
          summary="A container for Pub/Sub commands.", help_lines=(
              "CHANNELS [<pattern>]",
              "    Return the currently active channels matching a <pattern> (default: '*').",
              "NUMPAT", "    Return number of subscriptions to patterns.",
              "NUMSUB [<channel> ...]",
              "    Return the number of subscribers for the specified channels, excluding",
              "    pattern subscriptions(default: no channels).",
              "SHARDCHANNELS [<pattern>]",
              ("    Return the currently active shard level channels matching a <pattern> "
               "(default: '*')."),
              "SHARDNUMSUB [<shardchannel> ...]",
              "    Return the number of subscribers for the specified shard level channel(s)",
          ))

command("pubsub|help", 2, "loading stale", "slow", group="pubsub", since="6.2.0",
        summary="Returns helpful text about the different subcommands.")(help_reply)


def _syntax_error(args: list[bytes]) -> bytes:
    """PUBSUB checks some argument counts itself, with Redis's combined message."""
    return error(b"unknown subcommand or wrong number of arguments for '%b'. Try PUBSUB HELP."
                 % args[1][:128])


def _channels(kind: Kind, name: str, since: str, summary: str) -> None:
    """PUBSUB CHANNELS / SHARDCHANNELS [pattern]: active names, optionally filtered."""

    def handler(conn: Connection, args: list[bytes]) -> bytes:
        if len(args) > 3:
            return _syntax_error(args)
        pattern = args[2] if len(args) > 2 else None
        return bulk_array(conn.server.hub.active(kind, pattern))

    command(f"pubsub|{name}", -2, "pubsub loading stale", "pubsub slow", group="pubsub",
            since=since, summary=summary)(handler)


def _numsub(kind: Kind, name: str, since: str, summary: str) -> None:
    """PUBSUB NUMSUB / SHARDNUMSUB [name ...]: a flat array of name, count (RESP2 and 3)."""

    def handler(conn: Connection, args: list[bytes]) -> bytes:
        counts = conn.server.hub.numsub(kind, args[2:])
        return b"*%d\r\n" % (2 * len(counts)) + b"".join(
            bulk(channel) + integer(n) for channel, n in counts)

    command(f"pubsub|{name}", -2, "pubsub loading stale", "pubsub slow", group="pubsub",
            since=since, summary=summary)(handler)


_channels(CHANNEL, "channels", "2.8.0", "Returns the active channels.")
_channels(SHARD, "shardchannels", "7.0.0", "Returns the active shard channels.")
_numsub(CHANNEL, "numsub", "2.8.0", "Returns a count of subscribers to channels.")
_numsub(SHARD, "shardnumsub", "7.0.0", "Returns the count of subscribers of shard channels.")


# PUBSUB NUMPAT
@command("pubsub|numpat", 2, "pubsub loading stale", "pubsub slow", group="pubsub",
         since="2.8.0", summary="Returns a count of unique pattern subscriptions.")
def pubsub_numpat(conn: Connection, args: list[bytes]) -> bytes:
    return integer(conn.server.hub.numpat())
