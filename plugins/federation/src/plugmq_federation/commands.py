"""Management commands of federation, served over AMQP (``plugmq route``, ``plugmq link``).

``route.add`` / ``route.del`` go to the broker that runs the route's link (DEST for a pull
route, SRC for a push route); the CLI picks it, as ``qpid-route`` does.
"""

from __future__ import annotations

from typing import Any

from plugmq.management.commands import Command, CommandContext, CommandError, flag, text
from plugmq_federation.federation import STASH_KEY, Federation, FederationError
from plugmq_federation.routes import DEFAULT_ACK, DEFAULT_MAX_HOPS, Route, RouteError


def _federation(context: CommandContext) -> Federation:
    federation = context.broker.stash.get(STASH_KEY)
    if federation is None:
        raise CommandError("federation is not running on this broker (not master yet?)")
    return federation


def _number(arguments: dict[str, Any], name: str, default: int) -> int:
    value = arguments.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise CommandError(f"argument '{name}' must be a whole number")
    return value


def route_from(context: CommandContext, arguments: dict[str, Any]) -> Route:
    """The route a request describes; :class:`CommandError` when it cannot be one."""
    remote = arguments.get("remote")
    if isinstance(remote, str):
        remote = [url for url in remote.split(",") if url]
    if not isinstance(remote, list) or not all(isinstance(url, str) for url in remote):
        raise CommandError("argument 'remote' must be a list of broker URLs")
    try:
        return Route(
            kind=text(arguments, "kind", "exchange"),  # type: ignore[arg-type]
            remote=tuple(remote),
            exchange=text(arguments, "exchange"),
            key=text(arguments, "key", ""),
            queue=text(arguments, "queue", ""),
            push=flag(arguments, "push"),
            vhost=context.target_vhost(arguments).name,
            durable=flag(arguments, "durable"),
            ack=_number(arguments, "ack", DEFAULT_ACK),
            max_hops=_number(arguments, "max_hops", DEFAULT_MAX_HOPS),
            local=text(arguments, "local", ""),
        )
    except RouteError as error:
        raise CommandError(str(error)) from error


async def route_add(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Add a route and start its link; the answer holds the link's first state."""
    federation = _federation(context)
    wait = arguments.get("wait", 3.0)
    if not isinstance(wait, int | float):
        raise CommandError("argument 'wait' must be a number of seconds")
    try:
        return await federation.add(route_from(context, arguments), float(wait))
    except FederationError as error:
        raise CommandError(str(error)) from error


async def route_del(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Delete a route, its link and the queue it made."""
    federation = _federation(context)
    try:
        return await federation.delete(route_from(context, arguments))
    except FederationError as error:
        raise CommandError(str(error)) from error


def route_list(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """This broker's id and routes."""
    return _federation(context).list_routes()


def link_list(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Every link's state, last error, counters, backlog and rate."""
    return _federation(context).list_links()


COMMANDS = [
    Command("route.add", route_add, help="Add a federation route run by this broker."),
    Command("route.del", route_del, help="Delete a federation route of this broker."),
    Command("route.list", route_list, admin_only=False, help="This broker's routes."),
    Command("link.list", link_list, admin_only=False, help="State of this broker's links."),
]
