"""The federation service of one broker: its routes, their links, adding and deleting them.

One :class:`Federation` per broker lives in ``broker.stash`` while the broker is master; it
runs as a service (``plugmq_services``), so every link stops when the broker is fenced and
starts again, from the static and durable routes, at the next promotion.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import structlog
import trio

from plugmq.amqp.errors import AMQPError
from plugmq.api import network_view
from plugmq.client import AMQPClientError, ConnectionClosed, ConnectionFailed, connect
from plugmq.inbroker import InBrokerClient, open_internal_client
from plugmq_federation.bridges import push_queue_name
from plugmq_federation.durable_window import WindowJournal
from plugmq_federation.ingress import ingress_name, ingress_state
from plugmq_federation.link import CONNECT_TIMEOUT, Link
from plugmq_federation.network import NetworkRoutes, NetworkSettings
from plugmq_federation.persistence import RouteStore
from plugmq_federation.routes import Route

log = structlog.get_logger("plugmq.federation")

STASH_KEY = "federation"
#: Seconds between two attempts to start network routes that could not start.
NETWORK_RETRY = 5.0


class FederationError(Exception):
    """A route request that cannot be done; the message is the answer."""


class Federation:
    """Routes and links of one broker."""

    def __init__(
        self,
        broker: Any,
        broker_id: str,
        store: RouteStore,
        static: list[Route],
        network: NetworkSettings | None = None,
    ) -> None:
        self.broker = broker
        self.broker_id = broker_id
        self.store = store
        self.static = static
        #: Shared with the ingress exchanges: pulled and pushed copies are recognised alike.
        self.window = ingress_state(broker).window
        self.links: dict[str, Link] = {}
        #: The window's keys, journaled (restored at every promotion; see .durable_window).
        self.window_journal = WindowJournal(store.settings) if broker.store.durable else None
        self._restored: dict[str, list[bytes]] = {}
        #: ``--network dynamic``: the routes to the groups discovery found (None: off).
        self.network = NetworkRoutes(self, network) if network is not None else None
        self._nursery: trio.Nursery | None = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the links of the static and durable routes; serve until cancelled (fenced)."""
        await self.store.settings.durable()  # a newly generated broker id, before it is used
        if self.window_journal is not None:
            self._restored = self.window_journal.restore(self.window)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for route in [*self.static, *self.store.load()]:
                try:
                    self._start(route)
                except (FederationError, AMQPError) as error:
                    log.error("federation_route_not_started", route=route.id, error=str(error))
            task_status.started()
            log.info("federation_started", broker_id=self.broker_id, routes=len(self.links))
            self.network_changed()  # the groups found before this service started
            while True:  # network routes that could not start (an exchange declared later)
                await trio.sleep(NETWORK_RETRY)
                if self.network is not None and self.network.unstarted:
                    self.network_changed()

    # -- the network of groups (``--network dynamic``) ---------------------------------------

    def network_changed(self) -> None:
        """Make the network routes what the broker's network view asks for (from the hook)."""
        view = network_view(self.broker)
        if self.network is None or self._nursery is None:
            return  # off, or not started yet: run() applies the view once it is
        self.network.apply(view.peers if view is not None else {})

    def start_network(self, route: Route) -> str | None:
        """Start a network route's link; the reason when it cannot start."""
        try:
            self._start(route)
        except (FederationError, AMQPError) as error:
            return str(error)
        return None

    def stop_link(self, route_id: str) -> None:
        """Stop a network route's link, leaving its queues (their messages wait for the group
        to come back)."""
        link = self.links.pop(route_id, None)
        if link is not None:
            link.cancel_scope.cancel()

    def retarget(self, route: Route, wake: bool) -> None:
        """A group's URL list changed: its link dials the new list from its next attempt
        (at once with ``wake``, when the group has a new master)."""
        link = self.links.get(route.id)
        if link is not None:
            link.route = route
            if wake:
                link.wake()

    # -- routes --------------------------------------------------------------------------------

    def _start(self, route: Route) -> Link:
        if route.id in self.links:
            raise FederationError(f"route {route.id} already exists ({_summary(route)})")
        with self._client(route.vhost) as client:
            if route.push:
                self._declare_push_queue(client, route)
            elif route.kind != "demand":  # a demand route moves into a queue, not an exchange
                client.declare_exchange(route.exchange, passive=True)
        link = self.links[route.id] = Link(
            route, self.broker, self.broker_id, self.window, self.window_journal
        )
        # In doubt when the last master died: at most its last ack window (older keys there
        # would only make a legitimate identical message look like a resend).
        for key in self._restored.pop(route.id, [])[-2 * route.ack :]:
            link.in_doubt.stored(key)
        assert self._nursery is not None
        self._nursery.start_soon(link.run)
        return link

    @staticmethod
    def _declare_push_queue(client: InBrokerClient, route: Route) -> None:
        """The local queue a push route collects in (declared now: nothing is missed while
        the link is down)."""
        queue = push_queue_name(route.id)
        client.declare_exchange(route.exchange, passive=True)
        client.declare_queue(queue, durable=route.durable)
        client.bind_queue(queue, route.exchange, route.key)

    def _client(self, vhost: str) -> InBrokerClient:
        try:
            return open_internal_client(self.broker, vhost)
        except AMQPError as error:
            raise FederationError(str(error)) from error

    async def add(self, route: Route, wait: float) -> dict[str, Any]:
        """Add ``route`` and start its link; wait up to ``wait`` s for its first outcome."""
        try:
            link = self._start(route)
        except AMQPError as error:
            raise FederationError(_amqp_reason(error, route)) from error
        if route.durable:
            await self.store.save(route)
        log.info("federation_route_added", route=route.id, summary=_summary(route))
        if wait > 0:
            with trio.move_on_after(wait):
                await link.first_outcome.wait()
        return link.describe()

    async def delete(self, route: Route) -> dict[str, Any]:
        """Delete ``route``: stop its link and remove the queue it made on the other side."""
        link = self.links.pop(route.id, None)
        if link is None:
            raise FederationError(f"no such route ({_summary(route)})")
        link.cancel_scope.cancel()
        await self.store.forget(link.route)
        cleanup = await self._remove_queue(link)
        log.info("federation_route_deleted", route=route.id, cleanup=cleanup)
        return {"route": route.id, "cleanup": cleanup}

    async def _remove_queue(self, link: Link) -> str:
        """Delete the route's own queue (local for push, remote for pull); say what happened."""
        route = link.route
        if route.kind in ("queue", "demand"):
            return "nothing to remove (the source queue belongs to its owner)"
        queue = link.source_queue()
        if route.push:
            with self._client(route.vhost) as client:
                client.delete_queue(queue)
            remote = await self._remote_cleanup(route, partial(_delete_ingress, route))
            return f"deleted local queue {queue}; {remote}"
        return await self._remote_cleanup(route, partial(_delete_queue, queue))

    async def _remote_cleanup(self, route: Route, action: Any) -> str:
        """Run ``action(channel)`` on the route's remote broker; say what happened."""
        try:
            with trio.fail_after(CONNECT_TIMEOUT * 2):
                async with (
                    connect(
                        list(route.remote),
                        dialer_for=self.broker.plugins.dialer_for,
                        connect_timeout=CONNECT_TIMEOUT,
                    ) as connection,
                    connection.channel() as channel,
                ):
                    return await action(channel) + f" on {route.remote_display}"
        except (ConnectionFailed, ConnectionClosed, AMQPClientError, trio.TooSlowError) as error:
            return f"could not clean up on {route.remote_display}: {error}"

    # -- reports -------------------------------------------------------------------------------

    def list_routes(self) -> dict[str, Any]:
        """This broker's id and routes (``route list``, ``route map``); with discovery, the
        groups it knows of (``network``)."""
        view = network_view(self.broker)
        return {
            "broker_id": self.broker_id,
            "routes": [
                link.route.describe() | {"peer": link.remote_id} for link in self.links.values()
            ],
            "network": view.describe() if view is not None else None,
        }

    def list_links(self) -> list[dict[str, Any]]:
        """Every link's state; push links count their local backlog."""
        rows = []
        for link in self.links.values():
            backlog = None
            if link.route.push:
                backlog = self._local_depth(link)
            rows.append(link.describe(backlog))
        return rows

    def _local_depth(self, link: Link) -> int | None:
        try:
            with self._client(link.route.vhost) as client:
                return client.declare_queue(link.source_queue(), passive=True).message_count
        except (AMQPError, FederationError):
            return None


async def _delete_queue(queue: str, channel: Any) -> str:
    await channel.queue_delete(queue)
    return f"deleted queue {queue}"


async def _delete_ingress(route: Route, channel: Any) -> str:
    names = [ingress_name(route.id), ingress_name(route.id, resent=True)]
    for name in names:
        await channel.exchange_delete(name)
    return "deleted exchanges " + ", ".join(names)


def _summary(route: Route) -> str:
    what = f"queue {route.queue}" if route.kind in ("queue", "demand") else f"key '{route.key}'"
    return f"{route.direction} {route.remote_display} exchange '{route.exchange}' {what}"


def _amqp_reason(error: AMQPError, route: Route) -> str:
    """A refused route in words (the local exchange or vhost is missing, most often)."""
    return f"cannot add route ({_summary(route)}): {error}"
