"""The public surface plugins import: the hook markers and every type hooks pass or return.

A plugin (ours or a third party's) imports from here, from :mod:`plugmq.client` and from the
modules these names live in; never from ``plugmq.broker``, which is the engine's own and may
change without notice (``tests/test_public_contract.py`` keeps every plugin out of it).

The broker object hooks receive (``broker``) is the engine's, but plugins may rely only on
what :class:`BrokerAPI` lists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from plugmq.admission import ConnectionInfo, ConnectionRefusal
from plugmq.auth import Mechanism
from plugmq.broker.exchange import Binding, Exchange, RoutableMessage
from plugmq.cli.admin import Admin
from plugmq.config import Config, ConfigError, OptionRegistry
from plugmq.events import BindingEvent
from plugmq.ha import HAStrategy, Role, StandaloneHA
from plugmq.hookspecs import Service, hookimpl
from plugmq.inbroker import (
    ClientClosed,
    Delivery,
    InBrokerClient,
    InBrokerConsumer,
    QueueStatus,
    Unroutable,
    open_client,
    open_internal_client,
)
from plugmq.journal import DurabilityGate
from plugmq.management.commands import Command, CommandContext, CommandError
from plugmq.network import (
    AnnouncementError,
    GroupAnnouncement,
    NetworkView,
    network_view,
    publish_peers,
    start_view,
    stop_view,
)
from plugmq.settings import PluginSettings, SettingsError
from plugmq.store import NotReplicated, Store, StoreError, records
from plugmq.transport import Dialer, DirectStream, ListenerFactory

if TYPE_CHECKING:
    import trio

    from plugmq.journal import Journal
    from plugmq.plugins.manager import PluginManager


class BrokerAPI(Protocol):
    """What a plugin may use of the ``broker`` its hooks receive."""

    #: Every flag's value (``broker.config.port``).
    config: Config
    #: Per-broker state of plugins, keyed by the plugin's own name (no module singletons).
    stash: dict[str, Any]
    #: The HA role (:class:`Role`) and the mastership's epoch.
    role: Role
    epoch: int
    #: Set while this broker is the serving master.
    active: trio.Event
    #: Addresses the listeners are bound to (``tcp://127.0.0.1:5672``).
    addresses: list[str]
    #: The plugin manager: ``plugins.dialer_for(scheme)`` gives the transport dialer that
    #: ``plugmq.client.connect(..., dialer_for=broker.plugins.dialer_for)`` needs.
    plugins: PluginManager
    #: The journal: ``when_durable(seq, callback)``, ``last_seq``, ``durable_seq``,
    #: ``release``/``fail`` for durability gates.
    journal: Journal
    #: The store (a replicated HA strategy drives the replication mode of its own store).
    store: Store

    async def promote(self, epoch: int | None = None) -> None:
        """Become master (HA strategies only)."""

    async def become(self, role: Role) -> None:
        """Enter standby or replica (HA strategies only)."""

    async def fence(self, reason: str, *, keep_listening: bool = False) -> None:
        """Stop serving at once (HA strategies only)."""

    async def open_store(self) -> None:
        """Open the store before promotion (replicated HA)."""

    async def start_service(self, service: Service) -> None:
        """Run a service until the next role change."""

    async def serve_clients(self) -> None:
        """Open the listeners (a standby that redirects clients)."""

    def stop_serving(self) -> None:
        """Close the listeners."""

    def block_publishers(self, name: str, reason: str) -> None:
        """Block publishers (connection.blocked) for a plugin's reason until unblocked."""

    def unblock_publishers(self, name: str) -> None:
        """Withdraw that reason."""

    def settings(self, namespace: str) -> PluginSettings:
        """The plugin's persistent settings (journaled, back at recovery)."""

    def add_durability_gate(self, gate: DurabilityGate) -> None:
        """Hold confirms until ``gate`` releases records (replication)."""

    def remove_durability_gate(self, gate: DurabilityGate) -> None:
        """Stop holding confirms for ``gate``."""

    def shutdown(self) -> None:
        """Begin a clean shutdown."""


__all__ = [
    "Admin",
    "AnnouncementError",
    "Binding",
    "BindingEvent",
    "BrokerAPI",
    "ClientClosed",
    "Command",
    "CommandContext",
    "CommandError",
    "Config",
    "ConfigError",
    "ConnectionInfo",
    "ConnectionRefusal",
    "Delivery",
    "Dialer",
    "DirectStream",
    "DurabilityGate",
    "Exchange",
    "GroupAnnouncement",
    "HAStrategy",
    "InBrokerClient",
    "InBrokerConsumer",
    "ListenerFactory",
    "Mechanism",
    "NetworkView",
    "NotReplicated",
    "OptionRegistry",
    "PluginSettings",
    "QueueStatus",
    "Role",
    "RoutableMessage",
    "Service",
    "SettingsError",
    "StandaloneHA",
    "Store",
    "StoreError",
    "Unroutable",
    "hookimpl",
    "network_view",
    "open_client",
    "open_internal_client",
    "publish_peers",
    "records",
    "start_view",
    "stop_view",
]
