"""An example third-party plugmq plugin: the ``x-random`` exchange type.

Each message goes to ONE destination picked at random among those bound (like RabbitMQ's
random exchange), which spreads work over queues without consumers coordinating.

Load it with::

    plugmq broker --load-module examples/random_exchange.py --random-exchange-seed 42

and declare an exchange of type ``x-random``. It shows the three things most plugins do:
register a class (an exchange type), add a flag, and react to control-plane events.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Hashable
from typing import Any

import structlog

from plugmq.api import Binding, Exchange, RoutableMessage
from plugmq.config import Config, OptionRegistry
from plugmq.hookspecs import hookimpl

log = structlog.get_logger("plugmq.example.random_exchange")

#: Shared by every x-random exchange of the broker; seeded by --random-exchange-seed.
_picker = random.Random()


class RandomExchange(Exchange):
    """Routes each message to one bound destination chosen at random (keys are ignored)."""

    type_name = "x-random"

    def _setup_routing(self) -> None:
        """A list, because ``random.choice`` needs indexing."""
        self._destinations: list[Any] = []

    def _route_key(self, binding: Binding) -> Hashable:
        """All bindings to one destination count once, whatever their key."""
        return None

    def _attach(self, route_key: None, binding: Binding) -> None:
        """Add the destination to the candidates."""
        self._destinations.append(binding.destination)

    def _detach(self, route_key: None, binding: Binding) -> None:
        """Remove the destination from the candidates."""
        self._destinations.remove(binding.destination)

    def route(self, message: RoutableMessage) -> Collection[Any]:
        """One random destination, or none when nothing is bound."""
        if not self._destinations:
            return ()
        return (_picker.choice(self._destinations),)


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """A flag to make the choice reproducible (handy in tests)."""
    options.add(
        "--random-exchange-seed",
        type=int,
        default=None,
        group="Random exchange (example plugin)",
        help="Seed for x-random exchanges (default: unpredictable).",
    )


@hookimpl
def plugmq_configure(config: Config) -> None:
    """Seed the picker."""
    _picker.seed(config.random_exchange_seed)


@hookimpl
def plugmq_exchange_types() -> list[type[Exchange]]:
    """Register ``x-random``."""
    return [RandomExchange]


@hookimpl
def plugmq_exchange_declared(vhost: Any, exchange: Exchange) -> None:
    """Log when an x-random exchange appears (a control-plane event, never per message).

    ``vhost`` is the virtual host object: ``vhost.name``, and ``vhost.broker`` for a plugin
    keeping per-broker state (in ``vhost.broker.stash``).
    """
    if isinstance(exchange, RandomExchange):
        log.info("random_exchange_declared", vhost=vhost.name, exchange=exchange.name)
