"""Built-in commands on users, vhosts and permissions (``plugmq user|vhost|permissions``).

Passwords arrive in the request body (as with ``rabbitmqctl add_user``); they are hashed at
once, never logged, never stored (see :mod:`plugmq.access`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from plugmq.access import FULL
from plugmq.amqp.errors import ConnectionForced
from plugmq.management.commands import Command, CommandContext, CommandError, strings, text

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker


# -- users ----------------------------------------------------------------------------------------


def add_user(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Create a user with a password and tags."""
    name = text(arguments, "name")
    tags = strings(arguments, "tags")
    context.broker.access.add_user(name, text(arguments, "password"), set(tags))
    return {"name": name, "tags": sorted(tags)}


def delete_user(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Delete a user and its permissions, and close its connections (320) right after."""
    name = text(arguments, "name")
    context.broker.access.delete_user(name)
    broker = context.broker
    # In the background, so the response still reaches a user deleting itself.
    broker.spawn(lambda: _close_connections(broker, name, f"user '{name}' was deleted"))
    return {"name": name}


async def _close_connections(broker: Broker, user: str, reason: str) -> None:
    error = ConnectionForced(reason)
    async with trio.open_nursery() as nursery:
        for connection in [c for c in broker.connections if c.user == user]:
            nursery.start_soon(connection.close, error)


def list_users(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Users and their tags."""
    return [
        {"name": user.name, "tags": sorted(user.tags)}
        for user in context.broker.access.users.users.values()
    ]


def change_password(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Set a user's password."""
    name = text(arguments, "name")
    context.broker.access.change_password(name, text(arguments, "password"))
    return {"name": name}


def set_tags(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Replace a user's tags."""
    name = text(arguments, "name")
    tags = strings(arguments, "tags")
    context.broker.access.set_tags(name, set(tags))
    return {"name": name, "tags": sorted(tags)}


# -- vhosts ---------------------------------------------------------------------------------------


def add_vhost(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Create a virtual host (with its management queue)."""
    name = text(arguments, "name")
    context.broker.declare_vhost(name)
    return {"name": name}


async def delete_vhost(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Delete a virtual host, its entities and permissions; close its connections."""
    name = text(arguments, "name")
    await context.broker.delete_vhost(name)
    return {"name": name}


def list_vhosts(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Virtual hosts with a few counts."""
    connections = [c.vhost for c in list(context.broker.connections)]
    return [
        {
            "name": vhost.name,
            "queues": len(vhost.queues),
            "exchanges": len(vhost.exchanges),
            "connections": sum(1 for v in connections if v is vhost),
        }
        for vhost in context.broker.vhosts.values()
    ]


# -- permissions ----------------------------------------------------------------------------------


def set_permissions(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Set a user's configure/write/read patterns in a vhost (``.*`` by default)."""
    vhost = text(arguments, "vhost", context.vhost.name)
    if vhost not in context.broker.vhosts:
        raise CommandError(f"no vhost '{vhost}'")
    user = text(arguments, "user")
    patterns = [text(arguments, action, FULL) for action in ("configure", "write", "read")]
    context.broker.access.set_permissions(user, vhost, *patterns)
    return context.broker.access.permissions[(user, vhost)].as_dict()


def clear_permissions(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Remove a user's permissions in a vhost."""
    vhost = text(arguments, "vhost", context.vhost.name)
    user = text(arguments, "user")
    context.broker.access.clear_permissions(user, vhost)
    return {"user": user, "vhost": vhost}


def list_permissions(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Permissions, optionally of one vhost and/or one user."""
    vhost, user = arguments.get("vhost"), arguments.get("user")
    return [
        permission.as_dict()
        for (who, where), permission in context.broker.access.permissions.items()
        if vhost in (None, where) and user in (None, who)
    ]


COMMANDS = [
    Command("user.add", add_user, help="Create a user."),
    Command("user.delete", delete_user, help="Delete a user."),
    Command("user.list", list_users, admin_only=False, help="Users and tags."),
    Command("user.passwd", change_password, help="Change a user's password."),
    Command("user.tags", set_tags, help="Replace a user's tags."),
    Command("vhost.add", add_vhost, help="Create a virtual host."),
    Command("vhost.delete", delete_vhost, help="Delete a virtual host."),
    Command("vhost.list", list_vhosts, admin_only=False, help="Virtual hosts."),
    Command("permissions.set", set_permissions, help="Set a user's permissions in a vhost."),
    Command("permissions.clear", clear_permissions, help="Clear a user's permissions."),
    Command("permissions.list", list_permissions, admin_only=False, help="Permissions."),
]
