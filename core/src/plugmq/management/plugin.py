"""Built-in plugin: the management service and its commands (hook implementations only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from plugmq.hookspecs import Service, hookimpl
from plugmq.management import accounts, entities, observe
from plugmq.management.commands import Command
from plugmq.management.service import ManagementService
from plugmq.management.statistics import Statistics

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker
    from plugmq.broker.vhost import VHost


@hookimpl
def plugmq_management_commands() -> Sequence[Command]:
    """The built-in commands: entities, observation, users/vhosts/permissions."""
    return [*entities.COMMANDS, *observe.COMMANDS, *accounts.COMMANDS]


@hookimpl
def plugmq_services(broker: Broker) -> Sequence[Service]:
    """The statistics sampler, then the management service (which reads its rates)."""
    statistics = Statistics(broker)
    service = ManagementService(broker, broker.plugins.management_commands(), statistics)
    return [statistics.run, service.run]


@hookimpl
def plugmq_vhost_added(broker: Broker, vhost: VHost) -> None:
    """Give a vhost created at run time its management queue (start-up ones are attached when
    the service starts)."""
    service = ManagementService.of(broker)
    if service is not None:
        service.attach(vhost)
