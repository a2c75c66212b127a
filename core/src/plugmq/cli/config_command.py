"""``plugmq config``: queues, exchanges and bindings of a remote broker, like ``qpid-config``.

::

    plugmq config add queue abc --durable
    plugmq config add exchange topic orders --durable
    plugmq config bind orders abc "order.#"
    plugmq config list queues --json
"""

from __future__ import annotations

from typing import Annotated

import typer

from plugmq.cli.admin import (
    Admin,
    ArgumentOption,
    BrokerOption,
    JsonOption,
    TimeoutOption,
    VhostOption,
    parse_arguments,
)
from plugmq.cli.output import show_message, show_table
from plugmq.management.client import DEFAULT_TIMEOUT

QUEUE_COLUMNS = [
    ("queue", "name"),
    ("durable", "durable"),
    ("auto-delete", "auto_delete"),
    ("exclusive", "exclusive"),
    ("arguments", "arguments"),
]
EXCHANGE_COLUMNS = [
    ("exchange", "name"),
    ("type", "type"),
    ("durable", "durable"),
    ("auto-delete", "auto_delete"),
    ("internal", "internal"),
    ("bindings", "bindings"),
    ("arguments", "arguments"),
]
BINDING_COLUMNS = [
    ("exchange", "exchange"),
    ("destination", "destination"),
    ("kind", "destination_kind"),
    ("key", "routing_key"),
    ("arguments", "arguments"),
]

Durable = Annotated[bool, typer.Option("--durable", help="Survive a broker restart.")]
AutoDelete = Annotated[
    bool, typer.Option("--auto-delete", help="Delete it when its last consumer/binding goes.")
]


def make_config_app(admin: Admin) -> typer.Typer:
    """The ``config`` command group."""
    app = typer.Typer(
        help="Add, delete and list queues, exchanges and bindings.", no_args_is_help=True
    )
    app.add_typer(_add_app(admin), name="add")
    app.add_typer(_del_app(admin), name="del")
    app.add_typer(_list_app(admin), name="list")
    _binding_commands(app, admin)
    return app


def _add_app(admin: Admin) -> typer.Typer:
    app = typer.Typer(help="Declare a queue or an exchange.", no_args_is_help=True)

    @app.command("queue")
    def add_queue(
        name: str,
        durable: Durable = False,
        auto_delete: AutoDelete = False,
        argument: ArgumentOption = None,
        vhost: VhostOption = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Declare queue NAME (an equivalent existing queue is fine)."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("queue '{name}' declared in vhost '{vhost}'"),
            "queue.add",
            name=name,
            durable=durable,
            auto_delete=auto_delete,
            arguments=parse_arguments(argument),
            vhost=vhost,
        )

    @app.command("exchange")
    def add_exchange(
        type_: Annotated[str, typer.Argument(metavar="TYPE", help="direct, fanout, topic...")],
        name: str,
        durable: Durable = False,
        auto_delete: AutoDelete = False,
        internal: Annotated[bool, typer.Option("--internal", help="No direct publishing.")] = False,
        alternate_exchange: Annotated[
            str | None, typer.Option("--alternate-exchange", help="Where unroutable messages go.")
        ] = None,
        argument: ArgumentOption = None,
        vhost: VhostOption = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Declare exchange NAME of type TYPE."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("exchange '{name}' ({type}) declared in vhost '{vhost}'"),
            "exchange.add",
            name=name,
            type=type_,
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            alternate_exchange=alternate_exchange,
            arguments=parse_arguments(argument),
            vhost=vhost,
        )

    return app


def _del_app(admin: Admin) -> typer.Typer:
    app = typer.Typer(help="Delete a queue or an exchange.", no_args_is_help=True)

    @app.command("queue")
    def del_queue(
        name: str,
        if_empty: Annotated[bool, typer.Option("--if-empty", help="Only if empty.")] = False,
        if_unused: Annotated[bool, typer.Option("--if-unused", help="Only if unused.")] = False,
        vhost: VhostOption = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Delete queue NAME and its messages."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("queue '{name}' deleted ({messages} messages)"),
            "queue.delete",
            name=name,
            if_empty=if_empty,
            if_unused=if_unused,
            vhost=vhost,
        )

    @app.command("exchange")
    def del_exchange(
        name: str,
        if_unused: Annotated[bool, typer.Option("--if-unused", help="Only if unbound.")] = False,
        vhost: VhostOption = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Delete exchange NAME and its bindings."""
        admin.run(
            broker,
            timeout,
            as_json,
            show_message("exchange '{name}' deleted"),
            "exchange.delete",
            name=name,
            if_unused=if_unused,
            vhost=vhost,
        )

    return app


def _binding_commands(app: typer.Typer, admin: Admin) -> None:
    app.command("bind", help="Bind QUEUE to EXCHANGE with routing KEY.")(
        _binding_command(
            admin,
            "binding.add",
            "bound '{destination}' to '{exchange}' with key '{routing_key}'",
        )
    )
    app.command("unbind", help="Remove the binding of QUEUE to EXCHANGE with routing KEY.")(
        _binding_command(
            admin,
            "binding.delete",
            "unbound '{destination}' from '{exchange}' (key '{routing_key}')",
        )
    )


def _binding_command(admin: Admin, command: str, message: str):
    """``bind`` and ``unbind`` take the same arguments and differ only in the request."""

    def binding(
        exchange: str,
        queue: str,
        key: Annotated[str, typer.Argument(help="Routing key.")] = "",
        argument: ArgumentOption = None,
        vhost: VhostOption = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        admin.run(
            broker,
            timeout,
            as_json,
            show_message(message),
            command,
            exchange=exchange,
            destination=queue,
            routing_key=key,
            arguments=parse_arguments(argument),
            vhost=vhost,
        )

    return binding


def _list_app(admin: Admin) -> typer.Typer:
    app = typer.Typer(help="List queues, exchanges or bindings.", no_args_is_help=True)
    for noun, command, columns in (
        ("queues", "queue.list", QUEUE_COLUMNS),
        ("exchanges", "exchange.list", EXCHANGE_COLUMNS),
        ("bindings", "binding.list", BINDING_COLUMNS),
    ):
        app.command(noun, help=f"List the {noun} of a vhost.")(_lister(admin, command, columns))
    return app


def _lister(admin: Admin, command: str, columns: list[tuple[str, str]]):
    def lister(
        vhost: VhostOption = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        admin.run(broker, timeout, as_json, show_table(columns), command, vhost=vhost)

    return lister
