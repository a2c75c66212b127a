"""The broker: owns the plugin manager, the journal, the virtual hosts and the listeners.

Start-up order: open the store and recover its records into virtual hosts; start the journal
writer; start the HA strategy, which calls :meth:`Broker.activate` when this broker may serve;
activation starts plugin services and opens the transports' listeners. :meth:`Broker.fence`
stops serving at once when mastership is lost.
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
import trio

from plugmq.access import VHOST, AccessControl, AccessError
from plugmq.amqp.errors import ConnectionForced
from plugmq.auth import Users
from plugmq.broker.connection import Connection
from plugmq.broker.expiry import Timers
from plugmq.broker.memory import MemoryMonitor, watermark_bytes
from plugmq.broker.recovery import recover_into
from plugmq.broker.vhost import VHost
from plugmq.config import Config, ConfigError
from plugmq.journal import Journal
from plugmq.store.records import ConfigSet

if TYPE_CHECKING:
    from plugmq.auth import Mechanism
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
        self.active = trio.Event()
        self.stopped = trio.Event()

    # -- identities ----------------------------------------------------------------------------

    def next_message_id(self) -> int:
        """A broker-unique, increasing message id (continues after recovery)."""
        return next(self._message_ids)

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
        """Run until cancelled or :meth:`shutdown`; ``started`` once listeners accept."""
        await self._open_store()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._connection_nursery = await nursery.start(self._host_connections)
                await nursery.start(self.journal.run)
                await nursery.start(self.ha.run, self)
                await self.active.wait()
                task_status.started()
                await self.stopped.wait()
                await self._close_connections("broker shutdown")
                with trio.CancelScope(shield=True), trio.move_on_after(10):
                    await self.journal.flush()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.store.close)
            log.info(
                "broker_stopped",
                journal_batches=self.journal.batches_written,
                journal_records=self.journal.records_written,
                journal_cancelled=self.journal.annihilated,
            )

    @staticmethod
    async def _host_connections(task_status: trio.TaskStatus[trio.Nursery]) -> None:
        """A nursery for connection tasks, apart from the listeners' accept loops.

        Closing the listeners (shutdown, fencing) must not kill connections before they are
        sent connection.close: connections are closed explicitly, then this is cancelled.
        """
        async with trio.open_nursery() as nursery:
            task_status.started(nursery)
            await trio.sleep_forever()

    async def _open_store(self) -> None:
        log.info("store_opening", store=self.store.name)
        await trio.to_thread.run_sync(self.store.open)
        highest = await recover_into(self)
        self._message_ids = itertools.count(highest + 1)
        self.add_vhost("/")
        self.access.ensure_defaults()

    async def activate(self) -> None:
        """Become the serving master: start services, open listeners (called by HA)."""
        assert self._nursery is not None
        await self._nursery.start(self.timers.run)
        for service in self.plugins.services(self):
            await self._nursery.start(service)
        self._serving = trio.CancelScope()
        await self._nursery.start(self._serve)
        self.active.set()
        log.info(
            "broker_active",
            listening=self.addresses,
            store=self.store.name,
            ha=self.ha.name,
            plugins=self.plugins.names(),
        )
        self.plugins.hook.plugmq_broker_started(broker=self)

    async def _serve(self, task_status: trio.TaskStatus[None]) -> None:
        factories = self.plugins.listeners(self.config)
        if not factories:
            raise ConfigError("no transport plugin provides a listener (load transport_tcp)")
        with self._serving:  # type: ignore[union-attr]
            async with trio.open_nursery() as nursery:
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

    def _memory_alarm_changed(self, alarm: bool) -> None:
        for connection in self.connections:
            connection.memory_alarm_changed(alarm)

    def connection_closed(self, connection: Connection) -> None:
        """Called by a connection when it ends."""
        self.connections.discard(connection)

    async def fence(self, reason: str) -> None:
        """Stop serving at once: close listeners and every connection (mastership lost)."""
        log.warning("broker_fenced", reason=reason)
        if self._serving is not None:
            self._serving.cancel()
        await self._close_connections(reason)

    async def _close_connections(self, reason: str) -> None:
        self.plugins.hook.plugmq_broker_stopping(broker=self)
        if self._serving is not None:
            self._serving.cancel()
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
