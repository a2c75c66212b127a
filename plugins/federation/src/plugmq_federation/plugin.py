"""Hook implementations of the federation plugin (the logic is in the modules beside it)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import typer

from plugmq.cli.admin import Admin
from plugmq.config import Config, ConfigError, OptionRegistry
from plugmq.events import BindingEvent
from plugmq.hookspecs import hookimpl
from plugmq.management.commands import Command
from plugmq_federation.bindings import registry_of
from plugmq_federation.commands import COMMANDS
from plugmq_federation.demand import consumers_of
from plugmq_federation.egress import LocalOnlyExchange
from plugmq_federation.federation import STASH_KEY, Federation
from plugmq_federation.identity import check_broker_id
from plugmq_federation.ingress import IngressExchange, ingress_state
from plugmq_federation.link import ID_PROPERTY
from plugmq_federation.network import network_settings
from plugmq_federation.persistence import NAMESPACE, RouteStore, broker_id
from plugmq_federation.routes import RouteError, parse_static

GROUP = "Federation"


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """Register ``--broker-id`` and ``--federation-route``."""
    options.add(
        "--broker-id",
        type=str,
        default=None,
        help="This broker's id in federation paths (default: a uuid made once and kept in "
        "the broker's durable settings). Every broker of a federation needs its own.",
        group=GROUP,
    )
    options.add(
        "--federation-route",
        type=str,
        default=None,
        multiple=True,
        help="A static route this broker runs: 'pull URL[,URL] EXCHANGE KEY', "
        "'push URL[,URL] EXCHANGE KEY' or 'queue URL[,URL] EXCHANGE QUEUE' (repeatable).",
        group=GROUP,
    )
    options.add(
        "--network",
        type=str,
        default=None,
        help="'dynamic': as master, keep routes to every other HA group discovery finds "
        "(dynamic routes on --network-exchange, demand routes on --network-queue). Off by "
        "default; needs --discovery.",
        group=GROUP,
    )
    options.add(
        "--network-exchange",
        type=str,
        default=None,
        multiple=True,
        help="An exchange linked across the network with dynamic routes (repeatable; "
        "default amq.topic).",
        group=GROUP,
    )
    options.add(
        "--network-queue",
        type=str,
        default=None,
        multiple=True,
        help="A queue linked across the network on demand: its messages move to the group "
        "whose consumers want them (repeatable).",
        group=GROUP,
    )


@hookimpl
def plugmq_configure(config: Config) -> None:
    """Reject a bad ``--broker-id``, ``--federation-route`` or ``--network`` before anything
    starts."""
    network_settings(config)
    if config.get("broker_id"):
        check_broker_id(config.broker_id)
    for text in config.get("federation_route") or ():
        try:
            parse_static(text)
        except RouteError as error:
            raise ConfigError(str(error)) from error


@hookimpl
def plugmq_services(broker: Any) -> list:
    """The federation service: every route's link, while this broker is master."""
    config = broker.config
    settings = broker.settings(NAMESPACE)
    static = [parse_static(text) for text in config.get("federation_route") or ()]
    federation = Federation(
        broker,
        broker_id(config.get("broker_id"), settings),
        RouteStore(settings),
        static,
        network_settings(config),
    )
    broker.stash[STASH_KEY] = federation
    return [federation.run]


@hookimpl
def plugmq_network_changed(broker: Any, peers: Any) -> None:
    """Discovery found, lost or moved a group: keep the network routes in step."""
    federation = broker.stash.get(STASH_KEY)
    if federation is not None:
        federation.network_changed()


@hookimpl
def plugmq_server_properties(broker: Any) -> dict[str, Any] | None:
    """Announce the broker id, so links detect loops and id collisions."""
    federation = broker.stash.get(STASH_KEY)
    if federation is None:
        return None
    return {ID_PROPERTY: federation.broker_id}


@hookimpl
def plugmq_management_commands() -> Sequence[Command]:
    """``route.add``, ``route.del``, ``route.list``, ``link.list``."""
    return COMMANDS


@hookimpl
def plugmq_cli_commands(admin: Admin) -> Sequence[tuple[str, typer.Typer]]:
    """``plugmq route ...`` and ``plugmq link ...``."""
    from plugmq_federation.cli import make_link_app, make_route_app

    return [("route", make_route_app(admin)), ("link", make_link_app(admin))]


@hookimpl
def plugmq_exchange_types() -> list[type]:
    """``x-plugmq-federation-ingress``: where push links publish (the duplicate window);
    ``x-plugmq-federation-local-only``: what network routes' queues take (local messages)."""
    return [IngressExchange, LocalOnlyExchange]


@hookimpl
def plugmq_exchange_declared(vhost: Any, exchange: Any) -> None:
    """Give an ingress exchange its broker's duplicate window (recovered ones too)."""
    if isinstance(exchange, IngressExchange):
        exchange.attach(ingress_state(vhost.broker))


@hookimpl
def plugmq_binding_added(vhost: Any, binding: BindingEvent) -> None:
    """Keep the exchange's binding keys (dynamic routes propagate them)."""
    registry_of(vhost.broker).added(
        vhost.name, binding.source, binding.routing_key, binding.arguments
    )


@hookimpl
def plugmq_binding_removed(vhost: Any, binding: BindingEvent) -> None:
    """Forget a binding key (dynamic routes unbind it on their remote)."""
    registry_of(vhost.broker).removed(
        vhost.name, binding.source, binding.routing_key, binding.arguments
    )


@hookimpl
def plugmq_consumer_added(vhost: Any, queue: Any, consumer: Any) -> None:
    """Count the queue's consumers (demand routes move messages only where they are)."""
    consumers_of(vhost.broker).changed(vhost.name, queue.name, consumer.tag, +1)


@hookimpl
def plugmq_consumer_removed(vhost: Any, queue: Any, consumer: Any) -> None:
    """A consumer went: a demand route with none left stops pulling."""
    consumers_of(vhost.broker).changed(vhost.name, queue.name, consumer.tag, -1)
