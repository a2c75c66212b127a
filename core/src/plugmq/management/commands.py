"""Management commands: the registry, what a handler receives, authorization and dispatch.

A :class:`Command` maps a name (``"queue.add"``) to a handler ``handler(context, arguments)``
that returns JSON-serialisable data (or a coroutine producing it). The built-in commands are
registered through the ``plugmq_management_commands`` hook like any plugin's, so federation
adds ``route.add`` the same way. :func:`execute` is the one place where a request becomes a
response: it checks the requesting user's tags and turns refusals into error responses.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from plugmq.access import AccessError
from plugmq.amqp.errors import AMQPError
from plugmq.management import protocol

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker
    from plugmq.broker.vhost import VHost
    from plugmq.inbroker import InBrokerClient
    from plugmq.management.statistics import Statistics

log = structlog.get_logger("plugmq.management")

ADMINISTRATOR = "administrator"
MONITORING = "monitoring"

Handler = Callable[["CommandContext", dict[str, Any]], Any | Awaitable[Any]]


class CommandError(Exception):
    """A request the handler refuses; the message is sent back as the response's error."""


@dataclass(frozen=True)
class Command:
    """One management command.

    ``admin_only`` commands need the ``administrator`` tag; the others (read-only listings)
    also admit ``monitoring`` users.
    """

    name: str
    handler: Handler
    admin_only: bool = True
    help: str = ""


@dataclass
class CommandContext:
    """What a handler works with: the broker, the request's vhost and user, statistics."""

    broker: Broker
    #: The virtual host the request was published in (the default target vhost).
    vhost: VHost
    #: The requesting user (the request's validated ``user_id`` property).
    user: str
    statistics: Statistics
    #: The management service's in-broker client of each vhost, by name (internal identity):
    #: handlers change entities through them, so the channel's rules and journal apply.
    clients: Mapping[str, InBrokerClient]

    @property
    def client(self) -> InBrokerClient:
        """The service's client in the request's vhost."""
        return self.clients[self.vhost.name]

    def target_client(self, arguments: dict[str, Any]) -> InBrokerClient:
        """The service's client in the vhost named by the ``vhost`` argument (else the
        request's own); :class:`CommandError` when there is no such vhost."""
        name = self.target_vhost(arguments).name
        client = self.clients.get(name)
        if client is None:
            raise CommandError(f"management is not attached to vhost '{name}'")
        return client

    def target_vhost(self, arguments: dict[str, Any]) -> VHost:
        """The vhost named by the ``vhost`` argument, else the request's own."""
        name = arguments.get("vhost")
        if name is None:
            return self.vhost
        vhost = self.broker.vhosts.get(text(arguments, "vhost"))
        if vhost is None:
            raise CommandError(f"no vhost '{name}'")
        return vhost


# -- reading arguments ----------------------------------------------------------------------------


def text(arguments: dict[str, Any], name: str, default: str | None = None) -> str:
    """A string argument; required when ``default`` is None."""
    value = arguments.get(name, default)
    if value is None:
        raise CommandError(f"missing argument '{name}'")
    if not isinstance(value, str):
        raise CommandError(f"argument '{name}' must be a string")
    return value


def flag(arguments: dict[str, Any], name: str, default: bool = False) -> bool:
    """A boolean argument."""
    value = arguments.get(name, default)
    if not isinstance(value, bool):
        raise CommandError(f"argument '{name}' must be true or false")
    return value


def table(arguments: dict[str, Any], name: str) -> dict[str, Any]:
    """An object argument (AMQP arguments table), empty by default."""
    value = arguments.get(name) or {}
    if not isinstance(value, dict):
        raise CommandError(f"argument '{name}' must be an object")
    return value


def strings(arguments: dict[str, Any], name: str) -> list[str]:
    """A list-of-strings argument, empty by default."""
    value = arguments.get(name) or []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise CommandError(f"argument '{name}' must be a list of strings")
    return value


# -- dispatch -------------------------------------------------------------------------------------


def authorize(command: Command, context: CommandContext) -> None:
    """Refuse users without the tag the command needs (and log the refusal)."""
    tags = context.broker.access.tags_of(context.user)
    allowed = ADMINISTRATOR in tags or (not command.admin_only and MONITORING in tags)
    if not allowed:
        needed = ADMINISTRATOR if command.admin_only else f"{ADMINISTRATOR} or {MONITORING}"
        log.warning("management_refused", user=context.user, command=command.name, needs=needed)
        raise CommandError(
            f"user '{context.user}' may not run '{command.name}': it needs the {needed} tag"
        )


async def execute(
    commands: Mapping[str, Command], context: CommandContext | None, body: bytes
) -> bytes:
    """Run the request in ``body``; return the response body (never raises for a refusal).

    ``context`` is None when the request carried no ``user_id``: the broker cannot tell who
    sent it, so it is refused.
    """
    try:
        name, arguments = protocol.decode_request(body)
        if context is None:
            log.warning("management_refused", command=name, reason="no user_id")
            raise CommandError(
                "management requests must carry the user_id property (the authenticated user)"
            )
        command = commands.get(name)
        if command is None:
            raise CommandError(f"unknown command '{name}'")
        authorize(command, context)
        log.info("management_request", user=context.user, command=name)
        result = command.handler(context, arguments)
        if inspect.isawaitable(result):
            result = await result
        return protocol.encode_result(result)
    except (CommandError, AccessError, protocol.ProtocolError) as refused:
        return protocol.encode_error(str(refused))
    except AMQPError as error:
        return protocol.encode_error(error.reply_text)
