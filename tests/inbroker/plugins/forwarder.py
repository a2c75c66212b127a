"""A test plugin: an in-broker forwarder from queue ``src`` of vhost ``/a`` to ``dst`` of ``/b``.

It is what a federation push route does inside one broker: consume with a prefetch and manual
acks, publish a persistent copy (with a header naming where it came from), and acknowledge the
source only once the copy is durable (``on_durable(True)``). A crash between the two leaves
the source message unacknowledged, so it is forwarded again after recovery: at least once,
never lost. Imports only the public contract (plugmq.inbroker, plugmq.hookspecs).

The vhosts are created at run time (``plugmq vhost add``); the forwarder waits for both.
"""

from __future__ import annotations

from typing import Any

import structlog
import trio

from plugmq.hookspecs import hookimpl
from plugmq.inbroker import Delivery, InBrokerClient, NoSuchVHost, open_internal_client

log = structlog.get_logger("test.forwarder")

SOURCE = ("/a", "src")
TARGET = ("/b", "dst")
PREFETCH = 64
STASH_KEY = "test.forwarder"
HEADER = "x-forwarded-from"


class Forwarder:
    """The forwarding service of one broker."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker
        self.vhost_added = trio.Event()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start at once (the broker must not wait for vhosts), then forward forever."""
        task_status.started()
        source, target = await self._open_clients()
        target.declare_queue(TARGET[1], durable=True)
        source.declare_queue(SOURCE[1], durable=True)
        await target.flush()
        send, receive = trio.open_memory_channel[Delivery](PREFETCH)
        source.consume(SOURCE[1], send.send_nowait, prefetch=PREFETCH)
        log.info("forwarder_started")
        async for delivery in receive:
            await target.wait_unblocked()
            self._forward(target, delivery)

    async def _open_clients(self) -> tuple[InBrokerClient, InBrokerClient]:
        while True:
            try:
                return (
                    open_internal_client(self.broker, SOURCE[0]),
                    open_internal_client(self.broker, TARGET[0]),
                )
            except NoSuchVHost:
                self.vhost_added = trio.Event()
                await self.vhost_added.wait()

    @staticmethod
    def _forward(target: InBrokerClient, delivery: Delivery) -> None:
        properties = delivery.properties
        properties.headers = {**(properties.headers or {}), HEADER: SOURCE[0]}
        properties.delivery_mode = 2

        def settle(ok: bool) -> None:
            if ok:
                delivery.ack()
            else:
                delivery.nack(requeue=True)

        target.publish("", TARGET[1], delivery.body, properties=properties, on_durable=settle)


@hookimpl
def plugmq_services(broker: Any) -> list:
    """The forwarder."""
    forwarder = broker.stash[STASH_KEY] = Forwarder(broker)
    return [forwarder.run]


@hookimpl
def plugmq_vhost_added(broker: Any, vhost: Any) -> None:
    """Wake the forwarder waiting for its vhosts."""
    forwarder = broker.stash.get(STASH_KEY)
    if forwarder is not None:
        forwarder.vhost_added.set()
