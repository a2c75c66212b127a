"""Built-in read-only commands on connections, channels and consumers (``plugmq stat``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugmq.management.commands import Command, CommandContext
from plugmq.network import GroupAnnouncement, NetworkView, network_view

if TYPE_CHECKING:
    from plugmq.broker.connection import Connection
    from plugmq.broker.queue import Consumer


def _opened(context: CommandContext, arguments: dict[str, Any]) -> list[Connection]:
    """Connections past connection.open, of one vhost when the ``vhost`` argument is given."""
    wanted = arguments.get("vhost")
    return [
        c
        for c in list(context.broker.connections)
        if c.vhost is not None and (wanted is None or c.vhost.name == wanted)
    ]


def list_connections(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Client connections with their byte counters and rates."""
    rows = []
    for connection in _opened(context, arguments):
        receive_rate, send_rate = context.statistics.rates(connection)
        rows.append(
            {
                "id": connection.id,
                "peer": connection.peer,
                "user": connection.user,
                "vhost": connection.vhost.name,
                "channels": len(connection.channels),
                "client": str(connection.client_properties.get("product", "")),
                "bytes_received": connection.bytes_received,
                "bytes_sent": connection.bytes_sent,
                "receive_rate": receive_rate,
                "send_rate": send_rate,
            }
        )
    return rows


def list_channels(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Open channels with their consumers, unacknowledged messages and modes."""
    return [
        {
            "connection": connection.id,
            "peer": connection.peer,
            "number": channel.number,
            "user": connection.user,
            "vhost": connection.vhost.name,
            "consumers": len(channel.consumers),
            "unacknowledged": len(channel.unacked),
            "prefetch": channel.prefetch_count,
            "global_prefetch": channel.global_prefetch,
            "confirm": channel.confirm_mode,
            "transactional": channel.tx_mode,
            "published": channel.messages_published,
        }
        for connection in _opened(context, arguments)
        for channel in list(connection.channels.values())
    ]


def list_consumers(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Consumers of the vhost's queues (in-broker ones, like management's, included)."""
    vhost = context.target_vhost(arguments)
    return [
        _consumer_info(consumer)
        for queue in list(vhost.queues.values())
        for consumer in list(queue.consumers)
    ]


def _consumer_info(consumer: Consumer) -> dict[str, Any]:
    connection = getattr(consumer.channel, "connection", None)
    return {
        "vhost": consumer.queue.vhost.name,
        "queue": consumer.queue.name,
        "tag": consumer.tag,
        "connection": connection.id if connection is not None else None,
        "peer": connection.peer if connection is not None else "broker",
        "channel": getattr(consumer.channel, "number", None),
        "ack_required": not consumer.no_ack,
        "exclusive": consumer.exclusive,
        "prefetch": consumer.prefetch,
        "unacknowledged": consumer.unacked,
        "priority": consumer.priority,
    }


def ha_status(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """This broker's HA role and epoch, and what its strategy adds (holder, lease, replicas);
    then, where discovery runs, one row per other group it found (its master and standbys)."""
    broker = context.broker
    details = broker.ha.describe() if hasattr(broker.ha, "describe") else {}
    view = network_view(broker)
    local = view.local if view is not None else None
    row = {
        "group": local.group if local is not None else broker.config.get("ha_group"),
        "role": broker.role.value,
        "epoch": broker.epoch,
        "mode": broker.ha.name,
        "listening": list(broker.addresses),
        "details": details,
    }
    if local is not None:
        row["details"] = details | {"group_urls": list(local.urls)}
    return [row, *(_peer_row(peer, view.source) for peer in _peers(view))]


def _peers(view: NetworkView | None) -> list[GroupAnnouncement]:
    return [] if view is None else sorted(view.peers.values(), key=lambda peer: peer.group)


def _peer_row(peer: GroupAnnouncement, source: str) -> dict[str, Any]:
    """Another group as discovery knows it (its master's announcement)."""
    return {
        "group": peer.group,
        "role": "master (discovered)",
        "epoch": peer.epoch,
        "mode": peer.ha,
        "listening": [peer.master],
        "details": {
            "broker_id": peer.broker_id,
            "standbys": list(peer.standbys),
            "discovered_by": source,
        },
    }


COMMANDS = [
    Command("ha.status", ha_status, admin_only=False, help="HA role, epoch and details."),
    Command("connection.list", list_connections, admin_only=False, help="Client connections."),
    Command("channel.list", list_channels, admin_only=False, help="Open channels."),
    Command("consumer.list", list_consumers, admin_only=False, help="Consumers."),
]
