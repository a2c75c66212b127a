"""A test plugin adding two management commands through ``plugmq_management_commands``."""

from __future__ import annotations

import trio

from plugmq.hookspecs import hookimpl
from plugmq.management.commands import Command, CommandContext, CommandError, text


def echo(context: CommandContext, arguments: dict) -> dict:
    """Return who asked, from which vhost, and what."""
    return {"user": context.user, "vhost": context.vhost.name, "said": text(arguments, "say")}


async def slow_refusal(context: CommandContext, arguments: dict) -> None:
    """An async handler that refuses after awaiting."""
    await trio.sleep(0)
    raise CommandError("refused on purpose")


def crash(context: CommandContext, arguments: dict) -> None:
    """A bug: the service must survive it."""
    raise RuntimeError("boom")


@hookimpl
def plugmq_management_commands() -> list[Command]:
    """Three commands; ``test.echo`` is open to monitoring users."""
    return [
        Command("test.echo", echo, admin_only=False),
        Command("test.refuse", slow_refusal),
        Command("test.crash", crash),
    ]
