"""``plugmq vhost``: virtual hosts of a remote broker (``rabbitmqctl add_vhost``...)."""

from __future__ import annotations

import typer

from plugmq.cli.admin import Admin, BrokerOption, JsonOption, TimeoutOption
from plugmq.cli.output import show_message, show_table
from plugmq.management.client import DEFAULT_TIMEOUT

COLUMNS = [
    ("vhost", "name"),
    ("queues", "queues"),
    ("exchanges", "exchanges"),
    ("connections", "connections"),
]


def make_vhost_app(admin: Admin) -> typer.Typer:
    """The ``vhost`` command group."""
    app = typer.Typer(help="Add, delete and list virtual hosts.", no_args_is_help=True)

    @app.command("add")
    def add(
        name: str,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Create virtual host NAME."""
        admin.run(
            broker, timeout, as_json, show_message("vhost '{name}' added"), "vhost.add", name=name
        )

    @app.command("delete")
    def delete(
        name: str,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Delete virtual host NAME with everything in it; its connections are closed."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("vhost '{name}' deleted"),
            "vhost.delete",
            name=name,
        )

    @app.command("list")
    def list_(
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """List virtual hosts."""
        admin.run(broker, timeout, as_json, show_table(COLUMNS), "vhost.list")

    return app
