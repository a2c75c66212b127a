"""``plugmq permissions``: RabbitMQ-style configure/write/read patterns per user and vhost.

::

    plugmq permissions set alice '^alice\\.' '.*' '.*' --vhost /orders
"""

from __future__ import annotations

from typing import Annotated

import typer

from plugmq.cli.admin import Admin, BrokerOption, JsonOption, TimeoutOption, VhostOption
from plugmq.cli.output import show_message, show_table
from plugmq.management.client import DEFAULT_TIMEOUT

COLUMNS = [
    ("vhost", "vhost"),
    ("user", "user"),
    ("configure", "configure"),
    ("write", "write"),
    ("read", "read"),
]


def _pattern(help_text: str):
    return Annotated[str, typer.Argument(help=help_text)]


def make_permissions_app(admin: Admin) -> typer.Typer:
    """The ``permissions`` command group."""
    app = typer.Typer(help="Set, clear and list users' permissions.", no_args_is_help=True)

    @app.command("set")
    def set_(
        user: str,
        configure: _pattern("Regex of resources USER may declare and delete ('' = none)."),
        write: _pattern("Regex of exchanges USER may publish to, queues it may bind."),
        read: _pattern("Regex of queues USER may consume, exchanges it may bind from."),
        vhost: VhostOption = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Set the permissions of USER in a vhost."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("permissions of '{user}' in vhost '{vhost}' set"),
            "permissions.set",
            user=user,
            configure=configure,
            write=write,
            read=read,
            vhost=vhost,
        )

    @app.command("clear")
    def clear(
        user: str,
        vhost: VhostOption = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Remove the permissions of USER in a vhost."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("permissions of '{user}' in vhost '{vhost}' cleared"),
            "permissions.clear",
            user=user,
            vhost=vhost,
        )

    @app.command("list")
    def list_(
        vhost: VhostOption = None,
        user: Annotated[str | None, typer.Option("--user", help="Only this user's.")] = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """List permissions (of every vhost unless --vhost)."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_table(COLUMNS),
            "permissions.list",
            vhost=vhost,
            user=user,
        )

    return app
