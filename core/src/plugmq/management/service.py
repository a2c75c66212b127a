"""The management service: an in-broker consumer of the reserved queue of every vhost.

Each virtual host gets a queue named :data:`~plugmq.management.protocol.QUEUE`, exclusive to
this service (clients can publish to it but neither consume from it nor delete it), with one
consumer whose delivery sink is the service itself (the same ``can_deliver``/``deliver``
protocol a channel implements). Deliveries are handed to one task through a bounded memory
channel, so requests run one at a time outside the publisher's read pass, and a flood of
requests leaves messages in the queue instead of growing memory.

Who sent a request is the message's ``user_id`` property: the broker refuses any publish whose
``user_id`` differs from the connection's authenticated user (406, as RabbitMQ), so the
property can be trusted here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import structlog
import trio
from pamqp import commands as pamqp_commands

from plugmq.amqp.content import decode_properties, encode_header
from plugmq.amqp.errors import AMQPError
from plugmq.amqp.methods import shortstr
from plugmq.broker.message import Message
from plugmq.broker.queue import Consumer, Entry
from plugmq.management import protocol
from plugmq.management.commands import Command, CommandContext, execute

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker
    from plugmq.broker.queue import Queue
    from plugmq.broker.vhost import VHost
    from plugmq.management.statistics import Statistics

log = structlog.get_logger("plugmq.management")

STASH_KEY = "plugmq.management"
#: Requests taken from the queues but not yet served; beyond it they wait in their queue.
BACKLOG = 64
CONSUMER_TAG = "plugmq.management"


class ManagementService:
    """Serves management requests published to the reserved queue of each vhost."""

    def __init__(
        self, broker: Broker, commands: Mapping[str, Command], statistics: Statistics
    ) -> None:
        self.broker = broker
        self.commands = commands
        self.statistics = statistics
        self._send, self._receive = trio.open_memory_channel[tuple["VHost", Message]](BACKLOG)
        self._stalled: set[Queue] = set()

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
        async for vhost, message in self._receive:
            await self._serve(vhost, message)
            self._resume_stalled()

    def attach(self, vhost: VHost) -> None:
        """Declare the reserved queue in ``vhost`` and consume it."""
        if protocol.QUEUE in vhost.queues:
            log.error("management_queue_taken", vhost=vhost.name, queue=protocol.QUEUE)
            return
        queue = vhost.declare_queue(protocol.QUEUE, owner=self, exclusive=True)
        consumer = Consumer(self, queue, CONSUMER_TAG, no_ack=True, exclusive=True, prefetch=0)
        queue.add_consumer(consumer)

    # -- the delivery sink protocol (called by the queue, synchronously) ---------------------------

    def can_deliver(self, consumer: Consumer) -> bool:
        """Take requests while the backlog has room; else remember the queue to resume it."""
        if self._send.statistics().current_buffer_used < BACKLOG:
            return True
        self._stalled.add(consumer.queue)
        return False

    def deliver(self, consumer: Consumer, entry: Entry) -> None:
        """Hand a request to the serving task (no-ack: the entry is settled at once)."""
        consumer.queue.settle(entry)
        self._send.send_nowait((consumer.queue.vhost, entry.message))

    def cancel_by_broker(self, consumer: Consumer) -> None:
        """The queue is deleted (its vhost went away)."""
        consumer.queue.remove_consumer(consumer)

    def _resume_stalled(self) -> None:
        stalled, self._stalled = self._stalled, set()
        for queue in stalled:
            if not queue.deleted:
                queue.dispatch()

    # -- serving -----------------------------------------------------------------------------------

    async def _serve(self, vhost: VHost, message: Message) -> None:
        try:
            properties = decode_properties(message.header)
        except AMQPError as error:
            log.warning("management_request_malformed", vhost=vhost.name, error=str(error))
            return
        context = None
        if properties.user_id:
            context = CommandContext(
                self.broker, vhost, properties.user_id, self.statistics, owner=self
            )
        appended_before = self.broker.journal.last_seq
        try:
            body = await execute(self.commands, context, message.body)
        except Exception as error:
            # A bug in one command must not stop management: log it and answer the requester.
            log.exception("management_command_crashed", vhost=vhost.name)
            body = protocol.encode_error(f"internal error: {type(error).__name__}: {error}")
        # A response means the change is durable (as a confirm does): kill -9 after it loses
        # nothing. Read-only requests appended nothing and do not wait.
        if self.broker.journal.last_seq > appended_before:
            await self.broker.journal.flush()
        if not properties.reply_to:
            log.warning("management_request_without_reply_to", vhost=vhost.name)
            return
        if self.broker.vhosts.get(vhost.name) is vhost:
            self._reply(vhost, properties.reply_to, properties.correlation_id, body)

    def _reply(self, vhost: VHost, reply_to: str, correlation_id: str | None, body: bytes) -> None:
        """Publish the response to ``reply_to`` through the vhost's default exchange."""
        properties = pamqp_commands.Basic.Properties(
            content_type=protocol.CONTENT_TYPE, correlation_id=correlation_id
        )
        message = Message(
            self.broker.next_message_id(),
            "",
            reply_to,
            shortstr("") + shortstr(reply_to),
            encode_header(len(body), properties),
            body,
        )
        queues = vhost.route("", message)
        if not queues:
            log.info("management_reply_unroutable", vhost=vhost.name, reply_to=reply_to)
            return
        vhost.enqueue(queues, message)
