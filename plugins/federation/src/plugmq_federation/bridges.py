"""Bridges: the forwarding loop of one route over one live connection.

A *pull* bridge consumes a queue on the remote broker (one it declared and bound to the
route's exchange, or the queue of a queue route) and publishes into the local exchange with
the in-broker client; it acknowledges the remote message only in ``on_durable(True)``, when
the local copy is stored. A *push* bridge consumes the route's local queue through the
in-broker client and publishes to the remote exchange in confirm mode; it acknowledges the
local message once the remote broker confirmed the copy. Either way a crash anywhere leaves
the source message unacknowledged, so it is sent again: at least once on the wire; the
receiving broker's duplicate window (asked by the pull bridge, or by the ingress exchange a
push bridge publishes into, :mod:`.ingress`) makes it once for consumers.

Both run until the connection fails; the link (:mod:`.link`) reconnects and runs them again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import structlog
import trio

from plugmq.amqp.errors import NotFound
from plugmq.client import ChannelClosed, ClientChannel, ClientConnection, Consumer, PublishNacked
from plugmq.inbroker import Delivery, InBrokerClient
from plugmq_federation.bindings import BOUND_FROM, Demand, registry_of, remote_bindings
from plugmq_federation.demand import LINK_TAG, consumers_of
from plugmq_federation.egress import TYPE_NAME as LOCAL_ONLY
from plugmq_federation.egress import local_only_name
from plugmq_federation.hops import Forward, Verdict, hop
from plugmq_federation.ingress import RESENT_ARGUMENT, ROUTE_ARGUMENT, TYPE_NAME, ingress_name
from plugmq_federation.persistence import NAMESPACE, load_bindings, save_bindings

if TYPE_CHECKING:
    from plugmq.settings import PluginSettings
    from plugmq_federation.link import Link

log = structlog.get_logger("plugmq.federation")

#: Offset of the property flags in a content-header payload (what a remote publish takes).
_PROPERTIES_AT = 12


def pull_queue_name(local_id: str, route_id: str) -> str:
    """The queue a pull route declares on its source broker (named after both ends)."""
    return f"federation.{local_id}.{route_id}"


def push_queue_name(route_id: str) -> str:
    """The local queue a push route collects its messages in."""
    return f"federation.push.{route_id}"


async def run_pull(link: Link, connection: ClientConnection, local: InBrokerClient) -> None:
    """Forward from the remote queue into the local exchange until the connection fails."""
    route = link.route
    channel = await connection.open_channel()
    queue = route.queue or pull_queue_name(link.local_id, route.id)
    if route.kind == "exchange":
        await channel.queue_declare(queue, durable=route.durable)
        await channel.queue_bind(queue, route.exchange, route.key)
    else:
        await channel.queue_declare(queue, passive=True)
    await _pull(link, channel, queue, local)


class Signal:
    """Wakes a task when a hook reports a change (hooks are synchronous, tasks wait)."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def fire(self) -> None:
        """Something changed (called from a hook)."""
        self._event.set()

    async def until(self, predicate: Callable[[], bool]) -> None:
        """Return once ``predicate()`` is true, checking it after every change."""
        while True:
            self._event = trio.Event()
            if predicate():
                return
            await self._event.wait()


class Pending:
    """Remote messages taken but not yet settled on the remote (acked or requeued)."""

    def __init__(self) -> None:
        self.count = 0
        #: The delivery tag of the first message taken (tags then grow by one).
        self.first_tag = 0
        self._zero = trio.Event()

    def taken(self, tag: int) -> None:
        """One more message will be settled."""
        if not self.first_tag:
            self.first_tag = tag
        self.count += 1

    def settled(self) -> None:
        """One was settled."""
        self.count -= 1
        if not self.count:
            self._zero.set()

    async def drained(self) -> None:
        """Return once every taken message is settled."""
        while self.count:
            self._zero = trio.Event()
            await self._zero.wait()


async def run_dynamic(link: Link, connection: ClientConnection, local: InBrokerClient) -> None:
    """A pull bridge whose remote bindings follow the local exchange's bindings."""
    route = link.route
    channel = await connection.open_channel()
    queue = pull_queue_name(link.local_id, route.id)
    settings = link.broker.settings(NAMESPACE) if route.group else None
    if link.remote_bindings is None:
        if settings is not None:
            # A network route: the queue holds messages for this group (they waited while it
            # was down or failing over); what an earlier master bound is in the settings.
            link.remote_bindings = load_bindings(settings, route.id)
        else:
            # First session of this link (a new route, or this broker restarted): the bindings
            # a previous life made are unknown, so start from an empty queue of our own.
            await channel.queue_delete(queue)
            link.remote_bindings = set()
    await channel.queue_declare(queue, durable=route.durable)
    target = None
    if route.group:
        target = await _declare_local_only(link, connection, queue)
    registry = registry_of(link.broker)
    signal = Signal()
    registry.listen(route.vhost, route.exchange, signal.fire)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_pull, link, channel, queue, local)
            synced: set[Demand] = set()

            def stale() -> bool:
                return registry.demand(route.vhost, route.exchange) != synced

            while True:
                synced = registry.demand(route.vhost, route.exchange)
                await _sync_bindings(link, channel, queue, synced, settings, target)
                await signal.until(stale)
    finally:
        registry.unlisten(route.vhost, route.exchange, signal.fire)


async def run_demand(link: Link, connection: ClientConnection, local: InBrokerClient) -> None:
    """Move SRC's queue into the local queue of the same name while it has consumers here."""
    route = link.route
    channel = await connection.open_channel()
    if route.group:
        await _declare_network_queue(connection, channel, route.queue)
    else:
        await channel.queue_declare(route.queue, passive=True)
    _ensure_local_queue(local, route.queue, route.durable)
    counts = consumers_of(link.broker)
    signal = Signal()
    counts.listen(route.vhost, route.queue, signal.fire)

    async def no_demand() -> None:
        await signal.until(lambda: not counts.count(route.vhost, route.queue))

    try:
        link.up()
        while True:
            link.state = "idle"  # up, but nobody here wants the queue's messages
            await signal.until(lambda: counts.count(route.vhost, route.queue) > 0)
            await _pull(link, channel, route.queue, local, until=no_demand)
    finally:
        counts.unlisten(route.vhost, route.queue, signal.fire)


async def _declare_network_queue(
    connection: ClientConnection, channel: ClientChannel, queue: str
) -> None:
    """A ``--network-queue`` exists in every group: declare it durable where it is missing
    (a passive declare's 404 closes its channel, so it gets one of its own)."""
    try:
        async with connection.channel() as probe:
            await probe.queue_declare(queue, passive=True)
    except ChannelClosed:
        await channel.queue_declare(queue, durable=True)


def _ensure_local_queue(local: InBrokerClient, queue: str, durable: bool) -> None:
    try:
        local.declare_queue(queue, passive=True)
    except NotFound:
        local.declare_queue(queue, durable=durable)


async def _sync_bindings(
    link: Link,
    channel: ClientChannel,
    queue: str,
    demand: set[Demand],
    settings: PluginSettings | None = None,
    target: str | None = None,
) -> None:
    """Bind and unbind the remote queue (or its local-only exchange ``target``) so its
    bindings are what ``demand`` asks for (network routes keep what they bound in
    ``settings``: written ahead of each bind)."""
    route = link.route
    wanted = remote_bindings(demand, link.local_id, link.remote_id, route.max_hops)
    made = link.remote_bindings
    assert made is not None
    if settings is not None and wanted - made:
        await save_bindings(settings, route.id, made | wanted, wait=True)
    for key, path in sorted(made - wanted):
        if target is None:
            await channel.queue_unbind(queue, route.exchange, key, {BOUND_FROM: path})
        else:
            await channel.exchange_unbind(target, route.exchange, key, {BOUND_FROM: path})
        made.discard((key, path))
    for key, path in sorted(wanted - made):
        if target is None:
            await channel.queue_bind(queue, route.exchange, key, {BOUND_FROM: path})
        else:
            await channel.exchange_bind(target, route.exchange, key, {BOUND_FROM: path})
        made.add((key, path))
    if settings is not None:
        await save_bindings(settings, route.id, made, wait=False)


async def _declare_local_only(link: Link, connection: ClientConnection, queue: str) -> str | None:
    """Declare the network route's local-only exchange on the source and bind the queue to
    it (:mod:`.egress`); None when the source does not know the type (no federation plugin)."""
    name = local_only_name(link.route.id)
    try:
        async with connection.channel() as probe:
            await probe.exchange_declare(name, LOCAL_ONLY, durable=True)
            await probe.queue_bind(queue, name, "")
    except ChannelClosed as error:
        log.warning(
            "federation_network_without_local_only",
            route=link.route.id,
            reason=f"{error.reply_code} {error.reply_text}",
        )
        return None
    return name


async def _pull(
    link: Link,
    channel: ClientChannel,
    queue: str,
    local: InBrokerClient,
    until: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Consume ``queue`` on the remote and publish each message here (acked when stored).

    Runs until the connection fails, or until ``until()`` returns: then the remote consumer
    is cancelled (what it buffered is requeued there) and every message taken is settled
    before this returns, so none stays unacknowledged on a channel that lives on.
    """
    route = link.route
    link.remote_queue = queue
    pending = Pending()
    send, receive = trio.open_memory_channel[tuple[int, bool]](route.ack + 1)
    with send, receive:  # closed on the way out: late on_durable calls then do nothing
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_settle_remote, channel, receive, pending)
            async with channel.consume(
                queue, prefetch=route.ack, consumer_tag=LINK_TAG + route.id
            ) as consumer:
                if until is not None:
                    nursery.start_soon(_cancel_after, until, consumer)
                link.up()
                await _forward_pulled(link, consumer, local, _settler(send), pending)
            await pending.drained()
            nursery.cancel_scope.cancel()


async def _cancel_after(until: Callable[[], Awaitable[None]], consumer: Consumer) -> None:
    await until()
    await consumer.cancel()  # the iteration ends once the buffer is drained


def _settler(send: trio.MemorySendChannel[tuple[int, bool]]) -> Callable[[tuple[int, bool]], None]:
    """``on_durable`` may run after the session ended (the journal outlives it): then the
    remote ack cannot be sent, the remote requeues the message, and the window drops the
    copy when it comes again."""

    def settle(item: tuple[int, bool]) -> None:
        try:
            send.send_nowait(item)
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            return

    return settle


async def _forward_pulled(
    link: Link,
    consumer: Consumer,
    local: InBrokerClient,
    settled: Callable[[tuple[int, bool]], None],
    pending: Pending,
) -> None:
    """The pull loop: each remote message is checked (loop, hops, duplicate) and published
    here; ``settled`` hands its remote settlement to the acking task.

    Messages already received are taken as one burst, published together, and their keys
    journaled as one record (:func:`_publish_burst`).
    """
    route = link.route
    sender, receiver = link.remote_id_bytes, link.local_id_bytes
    window, in_doubt = link.window, link.in_doubt
    burst: list[tuple[Any, Forward]] = []
    try:
        async for message in consumer:
            pending.taken(message.delivery_tag)
            result = hop(
                message.header_payload,
                message.body,
                sender,
                receiver,
                route.max_hops,
                window,
                in_doubt,
                message.redelivered,
            )
            if result.__class__ is not Forward:
                link.dropped(result)  # type: ignore[arg-type]
                settled((message.delivery_tag, True))
            else:
                burst.append((message, result))  # type: ignore[arg-type]
            if (consumer.buffered and len(burst) < route.ack) or not burst:
                continue  # more is here already: one journal record for the whole burst
            if local.blocked:
                await local.wait_unblocked()
            _publish_burst(link, local, burst, settled)
    finally:
        for _, forward in burst:  # admitted, never published: their resends must get in
            window.forget(forward.key, forward.route)  # type: ignore[arg-type]


def _publish_burst(
    link: Link,
    local: InBrokerClient,
    burst: list[tuple[Any, Forward]],
    settled: Callable[[tuple[int, bool]], None],
) -> None:
    """Publish a burst here, then journal the keys of its persistent messages as one record
    right behind them (:mod:`.durable_window`), in the same store batch in the normal case.
    Takes the published messages off ``burst``; what is left was never published.

    Behind, not ahead: across a batch boundary a store (or a new master, which has a prefix of
    the journal) could then hold a message without its key (its resend would be a copy), never
    a key without its message (its resend would be dropped: a loss).
    """
    route, journal = link.route, link.journal
    done = 0
    try:
        for message, forward in burst:
            _publish_local(link, local, message, forward, settled)
            done += 1
    finally:
        if journal is not None and done:  # transient messages do not outlive this broker
            journal.write(
                [(route.id, f.key, f.route, f.counted) for _, f in burst[:done] if f.persistent]  # type: ignore[misc]
            )
        del burst[:done]


def _publish_local(
    link: Link, local: InBrokerClient, message: object, forward: Forward, settled: object
) -> None:
    """Publish one pulled message here; settle it on the remote once the copy is stored."""
    tag = message.delivery_tag  # type: ignore[attr-defined]
    route = link.route
    # A demand route moves a queue into its namesake here, whatever key it was sent with.
    key = route.queue if route.kind == "demand" else message.routing_key  # type: ignore[attr-defined]
    local.publish(  # if it raises, _forward_pulled forgets the key (it is still in the burst)
        route.exchange,
        key,
        message.body,  # type: ignore[attr-defined]
        header=forward.header,
        on_durable=partial(_stored, link, tag, forward, settled),
        # The source resends it (our previous life, or a previous master of this group, died
        # before its ack) and the window does not know it: it may have reached a consumer.
        redelivered=message.redelivered,  # type: ignore[attr-defined]
    )


def _stored(
    link: Link, tag: int, forward: Forward, settled: Callable[[tuple[int, bool]], None], ok: bool
) -> None:
    if ok:
        link.forwarded += 1
        link.in_doubt.stored(forward.key)  # type: ignore[arg-type]
    else:
        link.window.forget(forward.key, forward.route)  # type: ignore[arg-type]  # refused
        link.refused += 1
    settled((tag, ok))


async def _settle_remote(
    channel: ClientChannel,
    receive: trio.MemoryReceiveChannel[tuple[int, bool]],
    pending: Pending,
) -> None:
    """Ack (or requeue) remote deliveries once their local copies settled.

    A task of its own because ``on_durable`` is a synchronous callback and a remote ack is
    a write that may wait for the socket. Acks go out as one ``multiple`` ack up to the
    highest tag below which everything is settled (one frame for a whole batch, where one
    per message cost a third of the link's throughput); a requeue goes out at once.
    """
    settled: set[int] = set()
    floor = -1  # every tag up to here is settled (set from the first tag seen)
    async for tag, ok in receive:
        if floor < 0:
            floor = pending.first_tag - 1
        if not ok:
            await channel.nack(tag, requeue=True)
        settled.add(tag)
        pending.settled()
        while True:  # take what else is ready: one ack for the batch
            try:
                tag, ok = receive.receive_nowait()
            except trio.WouldBlock:
                break
            if not ok:
                await channel.nack(tag, requeue=True)
            settled.add(tag)
            pending.settled()
        top = floor
        while top + 1 in settled:
            top += 1
            settled.discard(top)
        if top > floor:
            floor = top
            await channel.ack(top, multiple=True)


async def run_push(link: Link, connection: ClientConnection, local: InBrokerClient) -> None:
    """Forward from the local queue to the remote exchange until the connection fails."""
    route = link.route
    targets = await _declare_ingress(link, connection)
    channel = await connection.open_channel()
    await channel.exchange_declare(route.exchange, passive=True)
    await channel.confirm_select()
    send, receive = trio.open_memory_channel[Delivery](route.ack)
    local.consume(
        push_queue_name(route.id), send.send_nowait, prefetch=route.ack, tag=LINK_TAG + route.id
    )
    link.up()
    async for first in receive:
        batch = [first]
        while len(batch) < route.ack:
            try:
                batch.append(receive.receive_nowait())
            except trio.WouldBlock:
                break
        await _push_batch(link, channel, batch, targets)


async def _declare_ingress(link: Link, connection: ClientConnection) -> tuple[str, str]:
    """Declare the route's ingress exchanges on the destination, bound to the route's
    exchange; the exchanges to publish new messages and resends to.

    A destination without the federation plugin (RabbitMQ, say) refuses the type: then
    the link publishes into the exchange itself and that broker cannot drop copies.
    """
    route = link.route
    names = (ingress_name(route.id), ingress_name(route.id, resent=True))
    try:
        async with connection.channel() as channel:
            await channel.exchange_declare(route.exchange, passive=True)
            for name, resent in zip(names, (False, True), strict=True):
                arguments = {ROUTE_ARGUMENT: route.id, RESENT_ARGUMENT: resent}
                await channel.exchange_declare(
                    name, TYPE_NAME, durable=route.durable, arguments=arguments
                )
                await channel.exchange_bind(route.exchange, name)
    except ChannelClosed as error:
        if error.reply_code == 404:  # the route's exchange is missing: the link reports it
            raise
        log.warning(
            "federation_push_without_ingress",
            route=route.id,
            reason=f"{error.reply_code} {error.reply_text}",
        )
        link.ingress = False
        return route.exchange, route.exchange
    link.ingress = True
    return names


async def _push_batch(
    link: Link, channel: ClientChannel, batch: list[Delivery], targets: tuple[str, str]
) -> None:
    """Publish ``batch`` to the remote broker, wait for its confirms, settle each locally.

    Resends (``redelivered``) go to the resend ingress, which checks the route's in-doubt set;
    a message DEST refused (``x-overflow: reject-publish``) is not a copy there, yet DEST's
    window took its key: its resend goes to the route's exchange itself, past the window.
    """
    route = link.route
    sender, receiver = link.local_id_bytes, link.remote_id_bytes
    sent: list[tuple[int, Delivery]] = []
    for delivery in batch:
        result = hop(delivery.header, delivery.body, sender, receiver, route.max_hops, None)
        if result.__class__ is not Forward:
            link.dropped(result)  # type: ignore[arg-type]
            delivery.ack()
            continue
        target = targets[delivery.redelivered]
        if delivery.redelivered and link.refused_copies and link.resending_refused(delivery):
            target = route.exchange
        seq = await channel.publish(
            target,
            delivery.routing_key,
            delivery.body,
            result.header[_PROPERTIES_AT:],  # type: ignore[union-attr]
        )
        sent.append((seq, delivery))  # type: ignore[arg-type]
    nacked: set[int] = set()
    try:
        await channel.wait_for_confirms()
    except PublishNacked as error:
        nacked = set(error.sequence_numbers)
    for seq, delivery in sent:
        if seq in nacked:
            link.refused += 1
            link.refused_copy(delivery.header, delivery.body)
            delivery.nack(requeue=True)
        else:
            link.forwarded += 1
            delivery.ack()


__all__ = [
    "Verdict",
    "ingress_name",
    "pull_queue_name",
    "push_queue_name",
    "run_demand",
    "run_dynamic",
    "run_pull",
    "run_push",
]
