"""ACL commands: WHOAMI, USERS, SETUSER, DELUSER, CAT, GENPASS, DRYRUN, LOAD, SAVE, HELP.

The users and the rules themselves live in server/acl.py. Not here (yet): ACL LIST,
GETUSER and LOG, and selectors (`(...)` rules).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from resp.encode import OK, bulk, bulk_array, error, integer
from resp.parser import _parse_int as parse_integer
from server.acl import CATEGORIES, AclError
from server.commands import TABLE, command, container, help_reply, wrong_arity

if TYPE_CHECKING:
    from server.commands import Command
    from server.connection import Connection

_ADMIN = "admin noscript loading stale"
_ADMIN_CATEGORIES = "admin slow dangerous"
_GENPASS_MAX_BITS = 4096

container("acl", "", "slow", group="server", since="6.0.0",
          summary="A container for Access List Control commands.", help_lines=(
              "CAT [<category>]",
              "    List all commands that belong to <category>, or all command categories",
              "    when no category is specified.",
              "DELUSER <username> [<username> ...]",
              "    Delete a list of users.",
              "DRYRUN <username> <command> [<arg> ...]",
              ("    Returns whether the user can execute the given command without executing "
               "the command."),
              "GETUSER <username>",
              "    Get the user's details.",
              "GENPASS [<bits>]",
              "    Generate a secure 256-bit user password. The optional `bits` argument can",
              "    be used to specify a different size.",
              "LIST",
              "    Show users details in config file format.",
              "LOAD",
              "    Reload users from the ACL file.",
              "LOG [<count> | RESET]",
              "    Show the ACL log entries.",
              "SAVE",
              "    Save the current config to the ACL file.",
              "SETUSER <username> <attribute> [<attribute> ...]",
              "    Create or modify a user with the specified attributes.",
              "USERS",
              "    List all the registered usernames.",
              "WHOAMI",
              "    Return the current connection username.",
          ))

command("acl|help", 2, "loading stale", "slow", group="server", since="6.0.0",
        summary="Returns helpful text about the different subcommands.")(help_reply)


# ACL WHOAMI
@command("acl|whoami", 2, "noscript loading stale", "slow", group="server", since="6.0.0",
         summary="Returns the authenticated username of the current connection.")
def acl_whoami(conn: Connection, args: list[bytes]) -> bytes:
    return bulk(conn.user.name)


# ACL USERS
@command("acl|users", 2, _ADMIN, _ADMIN_CATEGORIES, group="server", since="6.0.0",
         summary="Lists all ACL users.")
def acl_users(conn: Connection, args: list[bytes]) -> bytes:
    return bulk_array(sorted(conn.server.acl.users))  # Redis keeps users in a radix tree


# ACL SETUSER username [rule [rule ...]]
@command("acl|setuser", -3, _ADMIN, _ADMIN_CATEGORIES, group="server", since="6.0.0",
         summary="Creates and modifies an ACL user and its rules.")
def acl_setuser(conn: Connection, args: list[bytes]) -> bytes:
    name = args[2]
    if any(c in b" \t\n\r\x0b\x0c\x00" for c in name):
        return error("Usernames can't contain spaces or null characters")
    srv = conn.server
    try:
        user, narrowed = srv.acl.set_user(name, args[3:])
    except AclError as exc:
        return error(str(exc))
    srv.user_changed(user)
    if narrowed:
        # Redis drops the user's subscribers whose subscriptions are no longer allowed.
        for client in list(srv.clients.values()):
            if client.user is user and client.subscribed and not user.keeps(client):
                client.kill(None)
    return OK


# ACL DELUSER username [username ...]
@command("acl|deluser", -3, _ADMIN, _ADMIN_CATEGORIES, group="server", since="6.0.0",
         summary="Deletes ACL users, and terminates their connections.")
def acl_deluser(conn: Connection, args: list[bytes]) -> bytes:
    if b"default" in args[2:]:
        return error("The 'default' user cannot be removed")
    srv = conn.server
    deleted = 0
    for name in args[2:]:
        user = srv.acl.users.pop(name, None)
        if user is None:
            continue
        deleted += 1
        for client in list(srv.clients.values()):
            if client.user is user:
                client.user = srv.acl.default
                client.authenticated = False
                client.update_access()
                if client is conn:
                    conn.closing = True  # after this reply, as Redis does
                else:
                    client.kill(None)
    return integer(deleted)


def _syntax_error(args: list[bytes]) -> bytes:
    """Redis's reply to a subcommand given more arguments than it takes."""
    return error(b"unknown subcommand or wrong number of arguments for '%b'. Try ACL HELP."
                 % args[1][:128])


# ACL CAT [category]
@command("acl|cat", -2, "noscript loading stale", "slow", group="server", since="6.0.0",
         summary="Lists the ACL categories, or the commands inside a category.")
def acl_cat(conn: Connection, args: list[bytes]) -> bytes:
    if len(args) == 2:
        return bulk_array([c.encode() for c in CATEGORIES])
    if len(args) > 3:
        return _syntax_error(args)
    category = args[2].decode(errors="replace").lower()
    if category not in CATEGORIES:
        return error(b"Unknown category '%b'" % args[2][:128])
    names = [each.name.encode() for entry in TABLE.values()
             for each in (entry, *(entry.subcommands or {}).values())
             if category in each.categories]
    return bulk_array(names)


# ACL GENPASS [bits]
@command("acl|genpass", -2, "noscript loading stale", "slow", group="server", since="6.0.0",
         summary="Generates a pseudorandom, secure password that can be used to identify ACL "
                 "users.")
def acl_genpass(conn: Connection, args: list[bytes]) -> bytes:
    bits = 256
    if len(args) > 3:
        return _syntax_error(args)
    if len(args) == 3:
        parsed = parse_integer(args[2])
        if parsed is None:
            return error("value is not an integer or out of range")
        bits = parsed
    if not 0 < bits <= _GENPASS_MAX_BITS:
        return error(f"ACL GENPASS argument must be the number of bits for the output "
                     f"password, a positive number up to {_GENPASS_MAX_BITS}")
    chars = (bits + 3) // 4
    return bulk(os.urandom((chars + 1) // 2).hex()[:chars].encode())


def _target(args: list[bytes]) -> Command | None:
    """The command (or subcommand) ACL DRYRUN is asked about, as Redis looks it up."""
    entry = TABLE.get(args[0].lower())
    if entry is not None and entry.subcommands and len(args) > 1:
        return entry.subcommands.get(args[1].lower())
    return entry


# ACL DRYRUN username command [arg [arg ...]]
@command("acl|dryrun", -4, _ADMIN, _ADMIN_CATEGORIES, group="server", since="7.0.0",
         summary="Simulates the execution of a command by a user, without executing the "
                 "command.")
def acl_dryrun(conn: Connection, args: list[bytes]) -> bytes:
    user = conn.server.acl.users.get(args[2])
    if user is None:
        return error(b"User '%b' not found" % args[2])
    entry = _target(args[3:])
    if entry is None:
        return error(b"Command '%b' not found" % args[3])
    given = len(args) - 3
    if (entry.arity > 0 and given != entry.arity) or given < -entry.arity:
        return wrong_arity(entry.name)
    reason = user.explain(entry, args[3:])
    return OK if reason is None else bulk(reason)


_NO_ACL_FILE = error("This Redis instance is not configured to use an ACL file. You may want "
                     "to specify users via the ACL SETUSER command and then issue a CONFIG "
                     "REWRITE (assuming you have a Redis configuration file set) in order to "
                     "store users in the Redis configuration.")


def _no_acl_file(conn: Connection, args: list[bytes]) -> bytes:
    """ACL LOAD / ACL SAVE: respd has no aclfile (users come from `user` lines)."""
    return _NO_ACL_FILE


command("acl|load", 2, _ADMIN, _ADMIN_CATEGORIES, group="server", since="6.0.0",
        summary="Reloads the rules from the configured ACL file.")(_no_acl_file)
command("acl|save", 2, _ADMIN, _ADMIN_CATEGORIES, group="server", since="6.0.0",
        summary="Saves the effective ACL rules in the configured ACL file.")(_no_acl_file)
