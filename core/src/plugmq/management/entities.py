"""Built-in commands on queues, exchanges and bindings (``plugmq config``, ``plugmq stat``).

Every change goes through the management service's in-broker client of the target vhost
(:mod:`plugmq.inbroker`), so it follows the same rules (RabbitMQ's errors), is journaled and
fires the same hooks as a client's method. Listings read the engine's objects directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from plugmq.inbroker import InBrokerConsumer
from plugmq.management.commands import Command, CommandContext, CommandError, flag, table, text

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker
    from plugmq.broker.exchange import Exchange
    from plugmq.broker.queue import Queue
    from plugmq.broker.vhost import VHost


# -- queues ---------------------------------------------------------------------------------------


def add_queue(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Declare a queue (idempotent for an equivalent one, 406 text otherwise)."""
    client = context.target_client(arguments)
    status = client.declare_queue(
        text(arguments, "name"),
        durable=flag(arguments, "durable"),
        auto_delete=flag(arguments, "auto_delete"),
        arguments=table(arguments, "arguments"),
    )
    return {"vhost": client.vhost, "name": status.name, "durable": status.durable}


def delete_queue(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Delete a queue (404 text when it does not exist); return how many messages it held."""
    client = context.target_client(arguments)
    name = text(arguments, "name")
    if client.owns(name):
        raise CommandError(f"queue '{name}' is reserved for the management service")
    client.declare_queue(name, passive=True)
    messages = client.delete_queue(
        name, if_unused=flag(arguments, "if_unused"), if_empty=flag(arguments, "if_empty")
    )
    return {"vhost": client.vhost, "name": name, "messages": messages}


def list_queues(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Every queue of the vhost with its configuration, depth, consumers and rates."""
    vhost = context.target_vhost(arguments)
    unacked = unacked_by_queue(context.broker)
    return [_queue_info(q, context, unacked.get(q, 0)) for q in vhost.queues.values()]


def _queue_info(queue: Queue, context: CommandContext, unacked: int) -> dict[str, Any]:
    publish_rate, deliver_rate = context.statistics.rates(queue)
    return {
        "vhost": queue.vhost.name,
        "name": queue.name,
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive_owner is not None,
        "arguments": queue.arguments,
        "messages_ready": queue.message_count,
        "messages_unacknowledged": unacked,
        "messages": queue.message_count + unacked,
        "consumers": queue.consumer_count,
        "published": queue.published,
        "delivered": queue.delivered,
        "publish_rate": publish_rate,
        "deliver_rate": deliver_rate,
    }


def unacked_by_queue(broker: Broker) -> dict[Queue, int]:
    """Unacknowledged deliveries per queue, counted over every channel and in-broker consumer
    (on request only)."""
    counts: dict[Queue, int] = {}
    for connection in list(broker.connections):
        for channel in list(connection.channels.values()):
            for _, queue, _ in channel.unacked.values():
                counts[queue] = counts.get(queue, 0) + 1
    for vhost in broker.vhosts.values():
        for queue in vhost.queues.values():
            for consumer in queue.consumers:
                if isinstance(consumer.channel, InBrokerConsumer):
                    counts[queue] = counts.get(queue, 0) + consumer.unacked
    return counts


# -- exchanges ------------------------------------------------------------------------------------


def add_exchange(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Declare an exchange of a registered type."""
    client = context.target_client(arguments)
    exchange_arguments = table(arguments, "arguments")
    alternate = arguments.get("alternate_exchange")
    if alternate:
        exchange_arguments["alternate-exchange"] = text(arguments, "alternate_exchange")
    name, type_name = text(arguments, "name"), text(arguments, "type")
    client.declare_exchange(
        name,
        type_name,
        durable=flag(arguments, "durable"),
        auto_delete=flag(arguments, "auto_delete"),
        internal=flag(arguments, "internal"),
        arguments=exchange_arguments,
    )
    return {"vhost": client.vhost, "name": name, "type": type_name}


def delete_exchange(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Delete an exchange (404 text when it does not exist, unlike exchange.delete)."""
    client = context.target_client(arguments)
    name = text(arguments, "name")
    client.declare_exchange(name, passive=True)
    client.delete_exchange(name, if_unused=flag(arguments, "if_unused"))
    return {"vhost": client.vhost, "name": name}


def _exchange(vhost: VHost, name: str) -> Exchange:
    exchange = vhost.exchanges.get(name)
    if exchange is None:
        raise CommandError(f"no exchange '{name}' in vhost '{vhost.name}'")
    return exchange


def list_exchanges(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Every exchange of the vhost."""
    vhost = context.target_vhost(arguments)
    return [
        {
            "vhost": vhost.name,
            "name": exchange.name,
            "type": exchange.type_name,
            "durable": exchange.durable,
            "auto_delete": exchange.auto_delete,
            "internal": exchange.internal,
            "arguments": exchange.arguments,
            "bindings": exchange.binding_count,
        }
        for exchange in vhost.exchanges.values()
    ]


# -- bindings -------------------------------------------------------------------------------------


def _destination_kind(arguments: dict[str, Any]) -> str:
    kind = text(arguments, "destination_kind", "queue")
    if kind not in ("queue", "exchange"):
        raise CommandError(f"destination_kind must be 'queue' or 'exchange', not '{kind}'")
    return kind


def add_binding(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Bind a queue (or exchange) to an exchange."""
    client = context.target_client(arguments)
    kind = _destination_kind(arguments)
    destination = text(arguments, "destination")
    exchange = text(arguments, "exchange")
    key = text(arguments, "routing_key", "")
    binding_arguments = table(arguments, "arguments")
    if kind == "queue":
        client.bind_queue(destination, exchange, key, binding_arguments)
    else:
        client.bind_exchange(destination, exchange, key, binding_arguments)
    return {"exchange": exchange, "destination": destination, "routing_key": key}


def delete_binding(context: CommandContext, arguments: dict[str, Any]) -> dict[str, Any]:
    """Remove a binding (an error when there is no such binding)."""
    vhost = context.target_vhost(arguments)
    client = context.target_client(arguments)
    kind = _destination_kind(arguments)
    destination = text(arguments, "destination")
    exchange = _exchange(vhost, text(arguments, "exchange"))
    key = text(arguments, "routing_key", "")
    binding_arguments = table(arguments, "arguments")
    if not any(
        b.destination.kind == kind
        and b.destination.name == destination
        and b.routing_key == key
        and b.arguments == binding_arguments
        for b in exchange.bindings()
    ):
        raise CommandError(
            f"no binding from '{exchange.name}' to '{destination}' with key '{key}' "
            f"in vhost '{vhost.name}'"
        )
    if kind == "queue":
        client.unbind_queue(destination, exchange.name, key, binding_arguments)
    else:
        client.unbind_exchange(destination, exchange.name, key, binding_arguments)
    return {"exchange": exchange.name, "destination": destination, "routing_key": key}


def list_bindings(context: CommandContext, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """Every binding of the vhost, by source exchange."""
    vhost = context.target_vhost(arguments)
    return [
        {
            "vhost": vhost.name,
            "exchange": exchange.name,
            "destination": binding.destination.name,
            "destination_kind": binding.destination.kind,
            "routing_key": binding.routing_key,
            "arguments": binding.arguments,
        }
        for exchange in vhost.exchanges.values()
        for binding in exchange.bindings()
    ]


COMMANDS = [
    Command("queue.add", add_queue, help="Declare a queue."),
    Command("queue.delete", delete_queue, help="Delete a queue."),
    Command("queue.list", list_queues, admin_only=False, help="Queues with depth and rates."),
    Command("exchange.add", add_exchange, help="Declare an exchange."),
    Command("exchange.delete", delete_exchange, help="Delete an exchange."),
    Command("exchange.list", list_exchanges, admin_only=False, help="Exchanges."),
    Command("binding.add", add_binding, help="Bind a queue or exchange to an exchange."),
    Command("binding.delete", delete_binding, help="Remove a binding."),
    Command("binding.list", list_bindings, admin_only=False, help="Bindings."),
]
