"""``plugmq stat``: what a remote broker is doing, like ``qpid-stat`` / ``rabbitmqctl list_*``.

Rates are per second, computed by the broker's statistics service from counters it samples
once a second (never per message).
"""

from __future__ import annotations

import typer

from plugmq.cli.admin import Admin, BrokerOption, JsonOption, TimeoutOption, VhostOption
from plugmq.cli.config_command import BINDING_COLUMNS
from plugmq.cli.output import Column, show_table
from plugmq.management.client import DEFAULT_TIMEOUT

VIEWS: dict[str, tuple[str, str, list[Column]]] = {
    "connections": (
        "connection.list",
        "Client connections (rates in bytes/s).",
        [
            ("id", "id"),
            ("peer", "peer"),
            ("user", "user"),
            ("vhost", "vhost"),
            ("channels", "channels"),
            ("client", "client"),
            ("recv", "bytes_received"),
            ("sent", "bytes_sent"),
            ("recv/s", "receive_rate"),
            ("sent/s", "send_rate"),
        ],
    ),
    "channels": (
        "channel.list",
        "Open channels.",
        [
            ("conn", "connection"),
            ("channel", "number"),
            ("user", "user"),
            ("vhost", "vhost"),
            ("consumers", "consumers"),
            ("unacked", "unacknowledged"),
            ("prefetch", "prefetch"),
            ("confirm", "confirm"),
            ("tx", "transactional"),
            ("published", "published"),
        ],
    ),
    "queues": (
        "queue.list",
        "Queues: depth, consumers and message rates (msg/s).",
        [
            ("queue", "name"),
            ("durable", "durable"),
            ("ready", "messages_ready"),
            ("unacked", "messages_unacknowledged"),
            ("total", "messages"),
            ("consumers", "consumers"),
            ("publish/s", "publish_rate"),
            ("deliver/s", "deliver_rate"),
        ],
    ),
    "exchanges": (
        "exchange.list",
        "Exchanges and their binding counts.",
        [
            ("exchange", "name"),
            ("type", "type"),
            ("durable", "durable"),
            ("bindings", "bindings"),
        ],
    ),
    "bindings": ("binding.list", "Bindings.", BINDING_COLUMNS),
    "ha": (
        "ha.status",
        "HA role, epoch and what the HA mode adds (lock holder, lease, replicas); with "
        "discovery, every other group found (its master and standbys).",
        [
            ("group", "group"),
            ("role", "role"),
            ("epoch", "epoch"),
            ("mode", "mode"),
            ("listening", "listening"),
            ("details", "details"),
        ],
    ),
    "consumers": (
        "consumer.list",
        "Consumers of the vhost's queues.",
        [
            ("queue", "queue"),
            ("tag", "tag"),
            ("conn", "connection"),
            ("peer", "peer"),
            ("channel", "channel"),
            ("ack", "ack_required"),
            ("exclusive", "exclusive"),
            ("prefetch", "prefetch"),
            ("unacked", "unacknowledged"),
            ("priority", "priority"),
        ],
    ),
}


def make_stat_app(admin: Admin) -> typer.Typer:
    """The ``stat`` command group: one command per view."""
    app = typer.Typer(
        help="Show connections, channels, queues... of a broker.", no_args_is_help=True
    )
    for noun, (command, help_text, columns) in VIEWS.items():
        app.command(noun, help=help_text)(_viewer(admin, command, columns))
    return app


def _viewer(admin: Admin, command: str, columns: list[Column]):
    def viewer(
        vhost: VhostOption = None,
        broker: BrokerOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        admin.run(broker, timeout, as_json, show_table(columns), command, vhost=vhost)

    return viewer
