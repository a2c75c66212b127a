"""The broker: owns the plugin manager, the journal, the virtual hosts and the listeners.

A broker is always in one :class:`plugmq.ha.Role`, and the HA strategy owns the transitions
(see :mod:`plugmq.ha`). It starts as a standby with its store closed. Promotion opens the store,
recovers its records into virtual hosts, and starts the journal writer, timers, plugins'
services and listeners, each in the *role's* nursery; fencing stops the journal at once and then
cancels that nursery, so nothing a master started outlives its mastership and a later promotion
starts everything once. Connections live in a nursery of their own so they are closed with
connection.close rather than cut.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
import trio

from plugmq.access import VHOST, AccessControl, AccessError
from plugmq.admission import ConnectionInfo, ConnectionRefusal
from plugmq.amqp.errors import ConnectionForced
from plugmq.auth import Users
from plugmq.broker.connection import Connection
from plugmq.broker.expiry import Timers
from plugmq.broker.memory import MemoryMonitor, watermark_bytes
from plugmq.broker.recovery import recover_into
from plugmq.broker.vhost import VHost
from plugmq.config import Config, ConfigError
from plugmq.ha import Role
from plugmq.journal import DurabilityGate, Journal
from plugmq.settings import PluginSettings, SettingsRegistry
from plugmq.store.records import ConfigSet

if TYPE_CHECKING:
    from plugmq.auth import Mechanism
    from plugmq.hookspecs import Service
    from plugmq.plugins.manager import PluginManager

log = structlog.get_logger("plugmq.broker")


class Broker:
    """One plugmq broker process (or one of several in a test process)."""

    def __init__(self, config: Config, plugins: PluginManager) -> None:
        self.config = config
        self.plugins = plugins
        self.frame_max: int = config.frame_max
        self.channel_max: int = config.channel_max
        self.heartbeat: int = config.heartbeat
        self.max_message_size: int = config.max_message_size
        self.max_connections: int = config.max_connections
        self.cluster_name: str = config.cluster_name
        self.queue_max_memory: int = config.queue_max_memory
        self.exchange_types = plugins.exchange_types()
        self.mechanisms: dict[str, Mechanism] = {
            cls.name: cls() for cls in plugins.auth_mechanisms()
        }
        self.store = plugins.store(config)
        self.ha = plugins.ha_strategy(config)
        self.journal = Journal(self.store)
        #: Filled by recovery, or with the default guest on a new store (ensure_defaults).
        self.users = Users()
        self.access = AccessControl(self.users, self.journal)
        #: Plugins' persistent settings, per namespace; filled by recovery.
        self.plugin_settings = SettingsRegistry(self.journal)
        #: Per-broker state of plugins (pytest's ``config.stash``): no module-level singletons.
        self.stash: dict[str, Any] = {}
        self.memory = MemoryMonitor(watermark_bytes(config.memory_high_watermark))
        self.memory.on_change(self._memory_alarm_changed)
        #: Message TTL and x-expires deadlines of every queue, served by one task.
        self.timers = Timers()
        self.vhosts: dict[str, VHost] = {}
        self.connections: set[Connection] = set()
        self._message_ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None
        self._connection_nursery: trio.Nursery | None = None
        self._serving: trio.CancelScope | None = None
        self.addresses: list[str] = []
        #: The HA role (see :mod:`plugmq.ha`); only a master serves clients and writes.
        self.role = Role.STANDBY
        #: The mastership's epoch (0 until the first promotion).
        self.epoch = 0
        #: Set while this broker is the serving master; cleared at once by :meth:`fence`.
        self.active = trio.Event()
        self.stopped = trio.Event()
        self._first_role = trio.Event()
        self._role_scope: _RoleScope | None = None
        self._store_open = False
        self._gates: list[DurabilityGate] = []

    # -- identities ----------------------------------------------------------------------------

    def next_message_id(self) -> int:
        """A broker-unique, increasing message id (continues after recovery)."""
        return next(self._message_ids)

    def settings(self, namespace: str) -> PluginSettings:
        """A plugin's persistent settings (:mod:`plugmq.settings`); SettingsError if reserved."""
        return self.plugin_settings.namespace(namespace)

    def spawn(self, task: Callable[[], Awaitable[None]]) -> None:
        """Run a background task of the engine (paging in) in the broker's nursery."""
        assert self._nursery is not None
        self._nursery.start_soon(task)

    def add_vhost(self, name: str) -> VHost:
        """Create a virtual host (idempotent, not journaled: recovery and start-up use it)."""
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VHost(self, name)
            self.plugins.events.vhost_added(self, vhost)
            vhost.announce_standard_exchanges()
        return vhost

    def declare_vhost(self, name: str) -> VHost:
        """Create a durable virtual host; :class:`AccessError` if it exists."""
        if not name:
            raise AccessError("a vhost name must not be empty")
        if name in self.vhosts:
            raise AccessError(f"vhost '{name}' already exists")
        self.journal.append(ConfigSet(VHOST, name, {"name": name}))
        return self.add_vhost(name)

    async def delete_vhost(self, name: str) -> None:
        """Delete a virtual host: close its connections (320), drop its entities and
        permissions. The default vhost ``/`` stays (recovery and guest rely on it)."""
        vhost = self.vhosts.get(name)
        if vhost is None:
            raise AccessError(f"no vhost '{name}'")
        if name == "/":
            raise AccessError("the default vhost '/' cannot be deleted")
        error = ConnectionForced(f"vhost '{name}' is deleted")
        async with trio.open_nursery() as nursery:
            for connection in [c for c in self.connections if c.vhost is vhost]:
                nursery.start_soon(connection.close, error)
        vhost.delete_everything()
        del self.vhosts[name]
        self.access.forget_vhost(name)
        self.journal.append(ConfigSet(VHOST, name, None))
        self.plugins.events.vhost_deleted(self, vhost)
        log.info("vhost_deleted", vhost=name)

    # -- running -------------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled or :meth:`shutdown`; ``started`` once the broker has its first
        role (for a master: once listeners accept)."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._connection_nursery = await nursery.start(self._host_connections)
                await nursery.start(self._run_ha)
                await self._first_role.wait()
                task_status.started()
                await self.stopped.wait()
                self.stop_serving()
                if self.role is Role.MASTER:
                    self.plugins.events.broker_stopping(self)
                await self._close_connections("broker shutdown")
                if self.role is Role.MASTER:
                    with trio.CancelScope(shield=True), trio.move_on_after(10):
                        await self.journal.flush()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self._close_store()
            log.info(
                "broker_stopped",
                role=self.role.value,
                journal_batches=self.journal.batches_written,
                journal_records=self.journal.records_written,
                journal_cancelled=self.journal.annihilated,
            )

    async def _run_ha(self, task_status: trio.TaskStatus[None]) -> None:
        """Run the HA strategy; it must give the broker a first role before it is started."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.ha.run, self)
            if not self._first_role.is_set():
                raise RuntimeError(f"HA strategy '{self.ha.name}' started without giving a role")
            task_status.started()

    @staticmethod
    async def _host_connections(task_status: trio.TaskStatus[trio.Nursery]) -> None:
        """A nursery for connection tasks, apart from the listeners' accept loops.

        Closing the listeners (shutdown, fencing) must not kill connections before they are
        sent connection.close: connections are closed explicitly, then this is cancelled.
        """
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()

    # -- the store ------------------------------------------------------------------------------

    async def open_store(self) -> None:
        """Open the store (idempotent). :meth:`promote` calls it; a strategy may call it
        earlier (a replica whose store receives records before it serves)."""
        if self._store_open:
            return
        log.info("store_opening", store=self.store.name, role=self.role.value)
        await trio.to_thread.run_sync(self.store.open)
        self._store_open = True

    async def _close_store(self) -> None:
        if self._store_open:
            self._store_open = False
            await trio.to_thread.run_sync(self.store.close)

    async def _recover(self) -> None:
        """Rebuild the engine's state from the store, from scratch (every promotion)."""
        self.vhosts = {}
        self.users = Users()
        self.access = AccessControl(self.users, self.journal)
        self.timers = Timers()
        self.journal.reset()
        self.plugin_settings.clear()
        highest = await recover_into(self)
        self._message_ids = itertools.count(highest + 1)
        self.add_vhost("/")
        self.access.ensure_defaults()

    # -- roles (called by the HA strategy, see plugmq.ha) ---------------------------------------

    async def become(self, role: Role) -> None:
        """Enter a non-serving role (standby, replica); services of the old role stop."""
        if role is Role.MASTER:
            raise ValueError("use promote() to become master")
        if role is Role.FENCED:
            raise ValueError("use fence() to leave mastership")
        if self.role is Role.MASTER:
            await self.fence(f"becoming {role.value}")
        previous = self.role
        await self._enter_role(role)
        log.info("broker_role", role=role.value, ha=self.ha.name, epoch=self.epoch)
        self._role_entered(previous)

    async def promote(self, epoch: int | None = None) -> None:
        """Become the serving master (see :mod:`plugmq.ha`); nothing happens when already."""
        if self.role is Role.MASTER:
            return
        self.epoch = epoch if epoch is not None else self.epoch + 1
        previous = self.role
        scope = await self._enter_role(Role.MASTER)
        await self.open_store()
        await self._recover()
        for gate in self._gates:
            self.journal.add_gate(gate)
        await scope.start(self.journal.run)
        await scope.start(self.timers.run)
        for service in self.plugins.services(self):
            await scope.start(service)
        await self.serve_clients()
        self.active.set()
        log.info(
            "broker_active",
            listening=self.addresses,
            store=self.store.name,
            ha=self.ha.name,
            epoch=self.epoch,
            plugins=self.plugins.names(),
        )
        self.plugins.events.broker_started(self)
        self._role_entered(previous)

    async def fence(self, reason: str, *, keep_listening: bool = False) -> None:
        """Stop serving at once: mastership is lost (or handed over).

        Before any checkpoint: the journal writes nothing more and confirms nothing pending,
        ``active`` is cleared. Then listeners (unless ``keep_listening``: a strategy that
        answers clients with a redirect), services, timers and connections stop and the store
        closes. Fencing a broker that is not master only changes nothing but the log.
        """
        if self.role is not Role.MASTER:
            return
        self.journal.fence()
        self.role = Role.FENCED
        self.active = trio.Event()
        log.warning("broker_fenced", reason=reason, epoch=self.epoch)
        if not keep_listening:
            self.stop_serving()
        self.plugins.events.broker_stopping(self)
        await self._close_connections(reason)
        await self._enter_role(Role.FENCED)
        with trio.CancelScope(shield=True):
            await self._close_store()
        self._role_entered(Role.MASTER)

    async def _enter_role(self, role: Role) -> _RoleScope:
        """Cancel the old role's tasks (waiting for them), open the new role's nursery."""
        old = self._role_scope
        if old is not None:
            await old.stop()
        assert self._nursery is not None
        self._role_scope = await self._nursery.start(_RoleScope.run)
        self.role = role
        return self._role_scope

    def _role_entered(self, previous: Role) -> None:
        """The new role is complete: let the runner go on, tell plugins."""
        self._first_role.set()
        if previous is not self.role:
            self.plugins.events.role_changed(self, previous, self.role)

    async def start_service(self, service: Service) -> None:
        """Run ``service`` until the broker's role next changes (a standby's lock watcher)."""
        assert self._role_scope is not None, "no role yet"
        await self._role_scope.start(service)

    def block_publishers(self, name: str, reason: str) -> None:
        """Block every publisher (connection.blocked with ``reason``, as the memory alarm
        does) until :meth:`unblock_publishers` ``name``: an HA master below its quorum."""
        self.memory.block(name, reason)

    def unblock_publishers(self, name: str) -> None:
        """Withdraw ``name``'s reason to block publishers."""
        self.memory.unblock(name)

    def add_durability_gate(self, gate: DurabilityGate) -> None:
        """Hold confirms until ``gate`` releases records, in this and every later mastership
        (the replication seam, see :class:`plugmq.journal.DurabilityGate`)."""
        self._gates.append(gate)
        if self.role is Role.MASTER:
            self.journal.add_gate(gate)

    def remove_durability_gate(self, gate: DurabilityGate) -> None:
        """Stop holding confirms for ``gate``."""
        if gate in self._gates:
            self._gates.remove(gate)
        self.journal.remove_gate(gate)

    # -- listeners ------------------------------------------------------------------------------

    async def serve_clients(self) -> None:
        """Open every transport's listeners (idempotent). A standby that answers clients with
        a redirect calls this itself; the connection hook then refuses them."""
        if self._serving is not None:
            return
        assert self._nursery is not None
        self._serving = trio.CancelScope()
        await self._nursery.start(self._serve)
        log.info("broker_listening", listening=self.addresses, role=self.role.value)

    def stop_serving(self) -> None:
        """Close the listeners (connections already open stay until closed)."""
        if self._serving is not None:
            self._serving.cancel()
            self._serving = None
            self.addresses = []

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        factories = self.plugins.listeners(self.config)
        if not factories:
            raise ConfigError("no transport plugin provides a listener (load transport_tcp)")
        with self._serving:  # type: ignore[union-attr]
            async with trio.open_nursery() as nursery:
                self.addresses = []
                for factory in factories:
                    listeners = await factory.open()
                    if not listeners:  # a transport may find nothing to listen on
                        continue
                    self.addresses += [factory.describe(listener) for listener in listeners]
                    nursery.start_soon(self._serve_listeners, listeners)
                task_status.started()

    async def _serve_listeners(self, listeners: Sequence[trio.abc.Listener]) -> None:
        await trio.serve_listeners(
            self._handle_stream, list(listeners), handler_nursery=self._connection_nursery
        )

    async def _handle_stream(self, stream: trio.abc.Stream) -> None:
        peer = _peer_of(stream)
        if len(self.connections) >= self.max_connections:
            log.warning("connection_refused", peer=peer, reason="max-connections reached")
            await trio.aclose_forcefully(stream)
            return
        connection = Connection(self, stream, peer)
        self.connections.add(connection)
        try:
            await connection.serve()
        except Exception:
            # A bug in one connection must not take the broker (and every other client) down.
            log.exception("connection_crashed", conn=connection.id, peer=peer)
        finally:
            self.connections.discard(connection)

    def admit(self, info: ConnectionInfo) -> ConnectionRefusal | None:
        """Why a new connection must be refused, or None to serve it.

        Plugins answer first (``plugmq_connection_check``: a standby names the master); a
        broker that does not serve refuses every connection no plugin refused. "Serves" is
        ``active``, not the role: a listening standby is master from the start of its promotion,
        and a client let in before recovery ends would meet no users (403) and no vhosts.
        """
        refusal = self.plugins.connection_check(self, info)
        if refusal is None and not self.active.is_set():
            state = self.role.value if self.role is not Role.MASTER else "recovering"
            refusal = ConnectionRefusal(f"broker is {state}: not serving clients")
        return refusal

    def _memory_alarm_changed(self, alarm: bool) -> None:
        for connection in self.connections:
            connection.memory_alarm_changed(alarm)

    def connection_closed(self, connection: Connection) -> None:
        """Called by a connection when it ends."""
        self.connections.discard(connection)

    async def _close_connections(self, reason: str) -> None:
        error = ConnectionForced(f"broker forced connection closure with reason '{reason}'")
        async with trio.open_nursery() as nursery:
            for connection in list(self.connections):
                nursery.start_soon(connection.close, error)

    def shutdown(self) -> None:
        """Begin a clean shutdown (connections closed with 320, journal flushed)."""
        self.stopped.set()

    async def stop_on_signals(self) -> None:
        """Shut down cleanly on SIGTERM or SIGINT."""
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                log.info("signal_received", signal=signal.Signals(signum).name)
                self.shutdown()
                return


def _peer_of(stream: trio.abc.Stream) -> str:
    socket = getattr(stream, "socket", None)
    if socket is None:
        return getattr(stream, "peer", "unknown")
    try:
        host, port = socket.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"{host}:{port}"


class _RoleScope:
    """The nursery of one role's tasks: cancelled, and waited for, when the role ends."""

    def __init__(self, scope: trio.CancelScope, nursery: trio.Nursery) -> None:
        self._scope = scope
        self._nursery = nursery
        self._done = trio.Event()

    @classmethod
    async def run(cls, task_status: trio.TaskStatus[_RoleScope]) -> None:
        """Hold the role's nursery open until :meth:`stop`."""
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                role_scope = cls(scope, nursery)
                task_status.started(role_scope)
                try:
                    await trio.sleep_forever()
                finally:
                    role_scope._done.set()

    async def start(self, service: Callable[..., Awaitable[Any]]) -> Any:
        """Start ``service(task_status)`` in this role's nursery and wait until it started."""
        return await self._nursery.start(service)

    async def stop(self) -> None:
        """Cancel every task of the role and wait until they are gone."""
        self._scope.cancel()
        await self._done.wait()
