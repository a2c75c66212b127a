"""The management service: serves requests published to the reserved queue of every vhost.

The service is a plugin of the in-broker client (:mod:`plugmq.inbroker`), like any other: in
each virtual host it opens a client with the broker's internal identity, declares the queue
:data:`~plugmq.management.protocol.QUEUE` exclusive to that client (clients can publish to it
but neither consume from it nor delete it) and consumes it with a prefetch of
:data:`PREFETCH`. Deliveries go to one task through a memory channel, so requests run one at a
time outside the publisher's read pass, and a flood of requests leaves messages in the queue
instead of growing memory. Responses are published with the same client.

Who sent a request is the message's ``user_id`` property: the broker refuses any publish whose
``user_id`` differs from the connection's authenticated user (406, as RabbitMQ), so the
property can be trusted here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog
import trio

from plugmq.amqp.errors import AMQPError, PreconditionFailed, ResourceLocked
from plugmq.inbroker import ClientClosed, Delivery, InBrokerClient, open_internal_client
from plugmq.management import protocol
from plugmq.management.commands import Command, CommandContext, execute

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker
    from plugmq.broker.vhost import VHost
    from plugmq.management.statistics import Statistics

log = structlog.get_logger("plugmq.management")

STASH_KEY = "plugmq.management"
#: Requests taken from each vhost's queue but not yet served; beyond it they wait in the queue.
PREFETCH = 64
CONSUMER_TAG = "plugmq.management"

Request = tuple["VHost", InBrokerClient, Delivery]


class ManagementService:
    """Serves management requests published to the reserved queue of each vhost."""

    def __init__(
        self, broker: Broker, commands: Mapping[str, Command], statistics: Statistics
    ) -> None:
        self.broker = broker
        self.commands = commands
        self.statistics = statistics
        # Unbounded in type only: each vhost's consumer holds at most PREFETCH unacknowledged
        # requests, so this holds at most PREFETCH per vhost and send_nowait never fails.
        self._send, self._receive = trio.open_memory_channel[Request](math.inf)
        #: The service's client in each vhost (by name): it owns the reserved queue there.
        self.clients: dict[str, InBrokerClient] = {}

    @staticmethod
    def of(broker: Broker) -> ManagementService | None:
        """The running service of ``broker``, if any."""
        return broker.stash.get(STASH_KEY)

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Attach to every vhost, then serve requests one at a time until cancelled."""
        self.broker.stash[STASH_KEY] = self
        for vhost in list(self.broker.vhosts.values()):
            self.attach(vhost)
        task_status.started()
        async for vhost, client, delivery in self._receive:
            # Acked when taken, as the no-ack consumer it replaces: the prefetch bounds the
            # requests waiting here, and a request being served is not listed as unacked.
            if not client.closed:
                delivery.ack()
            await self._serve(vhost, client, delivery)

    def attach(self, vhost: VHost) -> None:
        """Open the service's client in ``vhost``, declare the reserved queue and consume it."""
        stale = self.clients.pop(vhost.name, None)
        if stale is not None:  # a vhost of the same name was deleted before
            stale.close()
        client = self.clients[vhost.name] = open_internal_client(self.broker, vhost.name)
        try:
            client.declare_queue(protocol.QUEUE, exclusive=True)
        except (PreconditionFailed, ResourceLocked) as error:
            log.error("management_queue_taken", vhost=vhost.name, queue=protocol.QUEUE)
            log.debug("management_queue_taken_because", error=str(error))
            return
        client.consume(
            protocol.QUEUE,
            lambda delivery: self._send.send_nowait((vhost, client, delivery)),
            prefetch=PREFETCH,
            exclusive=True,
            tag=CONSUMER_TAG,
        )

    # -- serving -----------------------------------------------------------------------------------

    async def _serve(self, vhost: VHost, client: InBrokerClient, delivery: Delivery) -> None:
        try:
            properties = delivery.properties
        except AMQPError as error:
            log.warning("management_request_malformed", vhost=vhost.name, error=str(error))
            return
        context = None
        if properties.user_id:
            context = CommandContext(
                self.broker, vhost, properties.user_id, self.statistics, self.clients
            )
        appended_before = self.broker.journal.last_seq
        try:
            body = await execute(self.commands, context, delivery.body)
        except Exception as error:
            # A bug in one command must not stop management: log it and answer the requester.
            log.exception("management_command_crashed", vhost=vhost.name)
            body = protocol.encode_error(f"internal error: {type(error).__name__}: {error}")
        # A response means the change is durable (as a confirm does): kill -9 after it loses
        # nothing. Read-only requests appended nothing and do not wait.
        if self.broker.journal.last_seq > appended_before:
            await client.flush()
        if not properties.reply_to:
            log.warning("management_request_without_reply_to", vhost=vhost.name)
            return
        self._reply(client, properties.reply_to, properties.correlation_id, body)

    @staticmethod
    def _reply(
        client: InBrokerClient, reply_to: str, correlation_id: str | None, body: bytes
    ) -> None:
        """Publish the response to ``reply_to`` through the vhost's default exchange."""
        properties = {"content_type": protocol.CONTENT_TYPE, "correlation_id": correlation_id}
        try:
            routed = client.publish("", reply_to, body, properties=properties)
        except ClientClosed:
            return  # the vhost was deleted while the request ran: nobody is left to answer
        if not routed:
            log.info("management_reply_unroutable", vhost=client.vhost, reply_to=reply_to)
