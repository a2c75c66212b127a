"""The plugin contract of plugmq: every hook a plugin may implement.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose names are
hook names below. Plugins are loaded from the ``plugmq.plugins`` entry-point group and with
``plugmq broker --load-module NAME|dotted.module|path/to/file.py``. A function whose name
starts with ``plugmq_`` but is not a hook here stops the broker at start-up (misspelt hooks
never fail silently).

Rules that hold for every hook:

* Hooks are synchronous and are called on the control plane only (start-up, declares,
  consumers coming and going, shutdown), never once per message.
* A hook that hands the core a long-running activity returns an object or an async callable;
  the core runs it in the broker's nursery, so errors are never lost.
* "First result wins" hooks stop at the first implementation that returns something other
  than None; ``tryfirst``/``trylast`` order them. Other hooks return a list of every non-None
  result.

The built-in behaviour (exchange types, PLAIN/AMQPLAIN authentication, the in-memory store,
the standalone HA strategy, the core's own flags) is implemented as plugins of this very
contract, in :mod:`plugmq.builtin`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import trio
    import typer

    from plugmq.admission import ConnectionInfo, ConnectionRefusal
    from plugmq.auth import Mechanism
    from plugmq.broker.broker import Broker
    from plugmq.broker.exchange import Exchange
    from plugmq.broker.queue import Consumer, Queue
    from plugmq.broker.vhost import VHost
    from plugmq.cli.admin import Admin
    from plugmq.config import Config, OptionRegistry
    from plugmq.events import BindingEvent
    from plugmq.ha import HAStrategy, Role
    from plugmq.management.commands import Command
    from plugmq.network import GroupAnnouncement
    from plugmq.store.base import Store
    from plugmq.transport import Dialer, ListenerFactory

PROJECT = "plugmq"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Service = Callable[["trio.TaskStatus[None]"], Awaitable[None]]
"""An async callable ``service(task_status)`` the broker runs in its nursery.

It calls ``task_status.started()`` once it is ready; the broker starts serving clients only
after every service has started. A service belongs to the role it was started in: it is
cancelled when the broker's role changes (fencing cancels every master service).
"""


# ---------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------


@hookspec
def plugmq_add_options(options: OptionRegistry) -> None:
    """Register command-line flags with ``options.add(...)``.

    Called once when ``plugmq broker`` builds its command line, after every plugin is loaded,
    so a loaded plugin's flags appear in ``plugmq broker --help``. Flags can also be set in the
    ``--config`` file (command-line flags win). Registering a flag twice is an error that names
    both plugins.

    :param options: the registry to add flags to.
    """


@hookspec
def plugmq_configure(config: Config) -> None:
    """Validate and take note of the parsed configuration.

    Called once after the command line is parsed, before anything is started. Raise
    :class:`plugmq.config.ConfigError` with a clear message for a bad value: the broker prints it
    and exits non-zero.

    :param config: every flag's value, as attributes named like the flag (``config.port``).
    """


# ---------------------------------------------------------------------------------------------
# Transports
# ---------------------------------------------------------------------------------------------


@hookspec
def plugmq_listeners(config: Config) -> Sequence[ListenerFactory] | None:
    """Return factories for the client listeners this plugin provides.

    Called each time the broker starts serving clients: when it is promoted to master, or
    earlier when the HA strategy lets a standby answer clients with a redirect. Each
    :class:`plugmq.transport.ListenerFactory` opens trio listeners whose streams carry AMQP; the
    engine never knows which transport carried the bytes. Return None or an empty list to
    provide none (for example when a transport is disabled by its flags).

    :param config: the broker configuration.
    """


@hookspec(firstresult=True)
def plugmq_dialer(scheme: str) -> Dialer | None:
    """Return a :class:`plugmq.transport.Dialer` able to open streams for URL ``scheme``.

    Called by :mod:`plugmq.client` (and so by federation links, HA replication and the CLI)
    when it connects to a URL such as ``amqp://host:5672`` or ``amqp+rdma://host:5673``.
    First result wins; return None for schemes this plugin does not serve.

    :param scheme: the URL scheme, lower case (``"amqp"``).
    """


# ---------------------------------------------------------------------------------------------
# Storage and high availability
# ---------------------------------------------------------------------------------------------


@hookspec(firstresult=True)
def plugmq_store(config: Config) -> Store | None:
    """Return the :class:`plugmq.store.Store` that persists journal records.

    Called once at start-up. First result wins; the built-in in-memory store is registered
    ``trylast`` so any store plugin takes precedence. A plugin that is loaded but disabled by
    its flags returns None.

    :param config: the broker configuration.
    """


@hookspec(firstresult=True)
def plugmq_ha_strategy(config: Config) -> HAStrategy | None:
    """Return the :class:`plugmq.ha.HAStrategy` that moves this broker between roles.

    Called once at start-up. First result wins; the built-in standalone strategy (master at
    once, epoch 1) is registered ``trylast``. The strategy decides when the store opens and in
    which role, and fences the broker the instant it loses mastership (see :mod:`plugmq.ha`).
    A plugin that is loaded but not chosen by the flags (``--ha``) returns None.

    :param config: the broker configuration.
    """


@hookspec
def plugmq_role_changed(broker: Broker, old: Role, new: Role) -> None:
    """Called after the broker changed its HA role (``plugmq.ha.Role``).

    Fires once per change, on the trio thread, when the new role is complete: to master after
    recovery, once services run and listeners accept (after ``plugmq_broker_started``); to
    fenced after the journal stopped, connections closed and the store closed. Services of the
    old role are already cancelled. An exception is logged and does not undo the change.

    :param broker: the broker whose role changed.
    :param old: the role it had.
    :param new: the role it has now (``broker.role``).
    """


# ---------------------------------------------------------------------------------------------
# Routing and authentication
# ---------------------------------------------------------------------------------------------


@hookspec
def plugmq_exchange_types() -> Sequence[type[Exchange]] | None:
    """Return :class:`plugmq.broker.exchange.Exchange` subclasses to register.

    Called once at start-up. Each class has a ``type_name`` (``"x-consistent-hash"``) that
    clients name in exchange.declare. Two plugins registering the same name stop the broker
    with an error naming both.
    """


@hookspec
def plugmq_auth_mechanisms() -> Sequence[type[Mechanism]] | None:
    """Return :class:`plugmq.auth.Mechanism` classes (SASL mechanisms) to offer clients.

    Called once at start-up. Mechanisms are advertised in connection.start in the order
    plugins are called. Two mechanisms with the same name are an error naming both.
    """


# ---------------------------------------------------------------------------------------------
# Connections (once per connection, never per message)
# ---------------------------------------------------------------------------------------------


@hookspec
def plugmq_server_properties(broker: Broker) -> dict[str, Any] | None:
    """Return entries to add to the server-properties of connection.start.

    Called once per new connection, before the client authenticates. A ``"capabilities"``
    entry (a dict) is merged into the broker's capabilities; other keys are added (a later
    plugin overrides an earlier one's key). An HA master advertises its group here, e.g.
    ``{"cluster_urls": ["amqp://h1:5672/", "amqp://h2:5672/"]}``, which ``plugmq.client``
    adds to its failover list. Values must be AMQP field values (str, int, bool, lists, dicts).

    :param broker: the broker the client connects to.
    """


@hookspec(firstresult=True)
def plugmq_connection_check(broker: Broker, connection: ConnectionInfo) -> ConnectionRefusal | None:
    """Decide whether to serve a new connection; return a refusal to close it.

    Called once per connection after the client's connection.start-ok, before authentication
    (a standby has no user database). Return a :class:`plugmq.admission.ConnectionRefusal` to
    answer with connection.close (code and text of the refusal: a standby names the current
    master's URL there), or None to let the next plugin decide. First result wins. When no
    plugin refuses, a broker that is not master refuses with 320 and its role.

    :param broker: the broker the client connects to (``broker.role`` says its HA role).
    :param connection: peer address, client properties and mechanism of the connection.
    """


# ---------------------------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------------------------


@hookspec
def plugmq_services(broker: Broker) -> Sequence[Service] | None:
    """Return long-running services to run while this broker is master.

    Called at every promotion to master, after recovery and before listeners open (the
    standalone broker is promoted once, at start-up). Each service runs until the broker is
    fenced or stops (federation links, statistics, discovery announcements); a later promotion
    calls the hook again and starts new ones. Standby work (a lock watcher, a replica
    receiver) is started by the HA strategy with ``broker.start_service``.

    :param broker: the broker, for access to its virtual hosts and configuration.
    """


@hookspec
def plugmq_broker_started(broker: Broker) -> None:
    """Called at every promotion, once the broker is master and its listeners accept.

    :param broker: the broker now serving (``broker.epoch`` is the new mastership's epoch).
    """


@hookspec
def plugmq_broker_stopping(broker: Broker) -> None:
    """Called when a master stops serving (clean shutdown, or fenced), before connections
    are closed. Not called for a standby that shuts down.

    :param broker: the broker that stops serving.
    """


@hookspec
def plugmq_network_changed(broker: Broker, peers: Mapping[str, GroupAnnouncement]) -> None:
    """Called when the set of other HA groups this master knows of changed.

    A discovery plugin (``plugmq-discovery``: ZooKeeper or multicast) calls it through
    :func:`plugmq.network.publish_peers` on the master only, and only for a real change: a
    group appeared, vanished (its announcements stopped, or its ZooKeeper node went), or changed
    its master, epoch, HA mode or URL set. Never per message, never per repeated announcement.
    Federation's ``--network dynamic`` keeps its routes to the groups here. The current set is
    also in :func:`plugmq.network.network_view` (a service that starts later reads it there).
    A raising implementation is logged (``plugin_event_failed``) and the other plugins are
    still called.

    :param broker: the master whose view changed.
    :param peers: every other group by name (read-only), each a
        :class:`plugmq.network.GroupAnnouncement` (``group``, ``broker_id``, ``master``,
        ``urls``, ``epoch``, ``ha``); this broker's own group is not in it.
    """


# ---------------------------------------------------------------------------------------------
# Control-plane events (never per message)
#
# Rules for every event hook (see plugmq.plugins.events, their only caller):
#
# * Called on the broker's trio thread, synchronously, AFTER the change is made; return None.
# * Exactly once per real change: a redeclare, a duplicate bind or an unbind of a missing
#   binding is no change and fires nothing. State rebuilt by recovery (at start-up, or when a
#   standby is promoted and reads the store) fires the same events as the change that made it,
#   before ``plugmq_broker_started``; ``vhost.broker.active.is_set()`` tells the two apart.
# * Order: ``plugmq_vhost_added`` comes before any other event of that vhost and
#   ``plugmq_vhost_deleted`` after all of them; a binding's ends (a consumer's queue) are
#   announced before it, and its removal comes before either end's deletion.
# * Every event names its ``vhost`` object (``vhost.name``, ``vhost.broker``), never a name: a
#   plugin serving several brokers in one process keeps its state in ``vhost.broker.stash``.
# * A raising implementation is contained: the broker logs ``plugin_event_failed`` (``plugin``,
#   ``hook``, ``exception``), still calls the other plugins, and the client operation that caused
#   the change succeeds (the change was made). Event hooks cannot be wrappers.
# * Implementations must be quick and must not block. One that declares or deletes entities
#   itself (management's ``plugmq_vhost_added`` declares a queue) fires those events nested
#   inside its own call; long work belongs in a service task.
# ---------------------------------------------------------------------------------------------


@hookspec
def plugmq_vhost_added(broker: Broker, vhost: VHost) -> None:
    """Called once after a virtual host is created: ``/`` at start-up, vhosts rebuilt by
    recovery (before services start) and ``plugmq vhost add`` at run time.

    Its standard ``amq.*`` exchanges exist already and are announced with
    ``plugmq_exchange_declared`` right after this call. A raising implementation is logged
    (``plugin_event_failed``) and the vhost is still created.

    Every promotion to master rebuilds the state from the store with new objects, so after a
    fence (``plugmq_role_changed`` to ``fenced``, where no deletion events fire) the events of
    the rebuilt vhosts, exchanges, queues and bindings fire again: drop what you kept for the
    old objects when the broker is fenced.

    :param broker: the broker owning the vhost (plugins keep per-broker state in
        ``broker.stash``).
    :param vhost: the new :class:`plugmq.broker.vhost.VHost`.
    """


@hookspec
def plugmq_vhost_deleted(broker: Broker, vhost: VHost) -> None:
    """Called once after a virtual host is deleted, once its connections are closed and its
    queues, exchanges (each announced deleted) and permissions are gone.

    A raising implementation is logged (``plugin_event_failed``); the vhost stays deleted.

    :param broker: the broker that owned the vhost.
    :param vhost: the deleted :class:`plugmq.broker.vhost.VHost` (no longer in
        ``broker.vhosts``).
    """


@hookspec
def plugmq_exchange_declared(vhost: VHost, exchange: Exchange) -> None:
    """Called once after an exchange is created: by exchange.declare (never for a redeclare
    or a passive declare), as a standard ``amq.*`` exchange of a new vhost, or by recovery
    (durable exchanges).

    A raising implementation is logged (``plugin_event_failed``); the client still gets
    declare-ok.

    :param vhost: the :class:`plugmq.broker.vhost.VHost` holding the exchange.
    :param exchange: the new exchange (``name``, ``type_name``, ``durable``,
        ``auto_delete``, ``internal``, ``arguments``).
    """


@hookspec
def plugmq_exchange_deleted(vhost: VHost, exchange: Exchange) -> None:
    """Called once after an exchange is deleted: by exchange.delete (never for a missing
    exchange), because it was auto-delete and lost its last binding, or with its vhost
    (``amq.*`` included). ``plugmq_binding_removed`` was called before for each binding it
    was the source or destination of.

    A raising implementation is logged (``plugin_event_failed``); the client still gets
    delete-ok.

    :param vhost: the :class:`plugmq.broker.vhost.VHost` that held the exchange.
    :param exchange: the deleted exchange (no longer in ``vhost.exchanges``).
    """


@hookspec
def plugmq_queue_declared(vhost: VHost, queue: Queue) -> None:
    """Called once after a queue is created: by queue.declare (never for a redeclare or a
    passive declare), by a plugin or the management service, or by recovery (durable,
    non-exclusive queues).

    A raising implementation is logged (``plugin_event_failed``); the client still gets
    declare-ok.

    :param vhost: the :class:`plugmq.broker.vhost.VHost` holding the queue.
    :param queue: the new queue (``name``, ``durable``, ``auto_delete``,
        ``exclusive_owner``, ``arguments``).
    """


@hookspec
def plugmq_queue_deleted(vhost: VHost, queue: Queue) -> None:
    """Called once after a queue is deleted: by queue.delete (never for a missing queue),
    auto-delete after its last consumer left, ``x-expires``, its exclusive owner's connection
    closing, or with its vhost. Before it, ``plugmq_binding_removed`` was called for each of
    its bindings and ``plugmq_consumer_removed`` for each of its consumers.

    A raising implementation is logged (``plugin_event_failed``); the queue stays deleted.

    :param vhost: the :class:`plugmq.broker.vhost.VHost` that held the queue.
    :param queue: the deleted queue (``queue.deleted`` is True).
    """


@hookspec
def plugmq_binding_added(vhost: VHost, binding: BindingEvent) -> None:
    """Called once after a new binding is added: by queue.bind or exchange.bind, or by
    recovery (bindings whose source and destination are both durable). Never for a bind
    equal to an existing binding (same ends, routing key and arguments).

    A raising implementation is logged (``plugin_event_failed``); the client still gets
    bind-ok.

    :param vhost: the :class:`plugmq.broker.vhost.VHost` holding the binding.
    :param binding: a :class:`plugmq.events.BindingEvent` naming ``source``,
        ``destination``, ``destination_kind`` (``"queue"`` or ``"exchange"``),
        ``routing_key`` and read-only ``arguments``; equal for equal bindings, hashable.
    """


@hookspec
def plugmq_binding_removed(vhost: VHost, binding: BindingEvent) -> None:
    """Called once after a binding is removed: by queue.unbind or exchange.unbind (never for
    a binding that does not exist), or because its source or destination was deleted
    (before that one's ``*_deleted`` event). An auto-delete source left without bindings is
    then deleted in turn.

    A raising implementation is logged (``plugin_event_failed``); the client still gets
    unbind-ok.

    :param vhost: the :class:`plugmq.broker.vhost.VHost` that held the binding.
    :param binding: the removed binding, equal to the one ``plugmq_binding_added`` passed.
    """


@hookspec
def plugmq_consumer_added(vhost: VHost, queue: Queue, consumer: Consumer) -> None:
    """Called once after a consumer subscribes to ``queue`` (basic.consume, or a consumer
    the broker adds itself, such as the management service's). Consumers are never
    recovered: a restart fires none.

    A raising implementation is logged (``plugin_event_failed``); the client still gets
    consume-ok and deliveries.

    :param vhost: the :class:`plugmq.broker.vhost.VHost` holding the queue.
    :param queue: the queue (``queue.consumer_count`` includes the new consumer).
    :param consumer: the consumer (``tag``, ``no_ack``, ``exclusive``, ``prefetch``,
        ``arguments``).
    """


@hookspec
def plugmq_consumer_removed(vhost: VHost, queue: Queue, consumer: Consumer) -> None:
    """Called once after a consumer leaves ``queue``: basic.cancel, its channel or connection
    closing, or the queue being deleted (before ``plugmq_queue_deleted``). An auto-delete
    queue that lost its last consumer is deleted right after this call.

    A raising implementation is logged (``plugin_event_failed``); the cancel still succeeds.

    :param vhost: the :class:`plugmq.broker.vhost.VHost` holding the queue.
    :param queue: the queue (``queue.consumer_count`` no longer counts the consumer).
    :param consumer: the consumer that left.
    """


# ---------------------------------------------------------------------------------------------
# Management (requests over AMQP, see docs/management.md)
# ---------------------------------------------------------------------------------------------


@hookspec
def plugmq_cli_commands(admin: Admin) -> Sequence[tuple[str, typer.Typer]] | None:
    """Return ``(name, typer_app)`` pairs to add as ``plugmq NAME ...`` command groups.

    Called once when the ``plugmq`` command line is built, after plugins are loaded (installed
    plugins load automatically, so ``plugmq route ...`` works wherever the federation plugin
    is installed). Commands that administer a remote broker take ``--broker URL`` (repeatable)
    and call ``admin.run(admin.request(urls, "route.add", ...))``, the same way the built-in
    ``plugmq config`` does. A name registered twice is an error naming both plugins.

    :param admin: the CLI's helper for management requests over AMQP
        (:class:`plugmq.cli.admin.Admin`).
    """


@hookspec
def plugmq_management_commands() -> Sequence[Command] | None:
    """Return :class:`plugmq.management.commands.Command` objects the management service serves.

    Called once when the management service starts (when the broker becomes active). Each
    command has a ``name`` (``"route.add"``) that clients put in a request's ``command``
    field, a ``handler(context, arguments)`` (a function or a coroutine function) returning
    JSON-serialisable data, and ``admin_only``: True (the default) requires the requesting
    user to carry the ``administrator`` tag, False also admits ``monitoring`` users (read-only
    commands). Handlers run on the broker's trio thread and raise
    :class:`plugmq.management.commands.CommandError` for a request they refuse. Two plugins
    registering the same name stop the broker with an error naming both.
    """
