"""A test plugin keeping its own durable settings, set and read through management commands.

It uses only the public contract: the hook markers, management commands and
:mod:`plugmq.settings` (through ``context.broker.settings``), the way federation keeps routes.
"""

from __future__ import annotations

from typing import Any

from plugmq.hookspecs import hookimpl
from plugmq.management.commands import Command, CommandContext, CommandError, text
from plugmq.settings import SettingsError

NAMESPACE = "toy"


async def set_value(context: CommandContext, arguments: dict) -> dict:
    """Set ``key`` to ``value``; answer once it is durable."""
    settings = context.broker.settings(NAMESPACE)
    try:
        settings.set(text(arguments, "key"), arguments.get("value"))
    except SettingsError as error:
        raise CommandError(str(error)) from None
    await settings.durable()
    return {"durable": True}


async def delete_value(context: CommandContext, arguments: dict) -> dict:
    """Delete ``key``; answer once that is durable."""
    settings = context.broker.settings(NAMESPACE)
    existed = settings.delete(text(arguments, "key"))
    await settings.durable()
    return {"existed": existed}


def get_all(context: CommandContext, arguments: dict) -> dict[str, Any]:
    """Every setting of the namespace."""
    return dict(context.broker.settings(NAMESPACE).items())


def take_core_namespace(context: CommandContext, arguments: dict) -> None:
    """Try to use a core namespace: must be refused."""
    try:
        context.broker.settings(text(arguments, "namespace"))
    except SettingsError as error:
        raise CommandError(str(error)) from None


@hookimpl
def plugmq_management_commands() -> list[Command]:
    """The toy's commands."""
    return [
        Command("toy.set", set_value),
        Command("toy.delete", delete_value),
        Command("toy.get", get_all),
        Command("toy.take", take_core_namespace),
    ]
