"""Direct reply-to (RabbitMQ's ``amq.rabbitmq.reply-to``): replies without a reply queue.

A requester consumes (no-ack) from the pseudo-queue :data:`PSEUDO_QUEUE` and publishes
requests with ``reply_to`` set to that name; the broker rewrites the property to
``amq.rabbitmq.reply-to.<token>``, a name for that channel's reply consumer. A reply published
to the default exchange with that routing key goes straight to the consumer: no queue, no
buffering, at most once (https://www.rabbitmq.com/docs/direct-reply-to).

The routing happens in :meth:`plugmq.broker.vhost.VHost.route` for the default exchange, so
every publisher inside the broker reaches the consumer, not just client channels: the
:class:`ReplyConsumer` is what ``route`` returns for such a key, and it takes the message in
:meth:`VHost.enqueue` the way a queue does. A normal routing key pays nothing: the reply
prefix is only looked at when no queue of that name exists.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from plugmq.amqp.methods import shortstr

if TYPE_CHECKING:
    from plugmq.broker.channel import Channel
    from plugmq.broker.message import Message

#: The pseudo-queue a requester consumes from and names in ``reply_to``.
PSEUDO_QUEUE = "amq.rabbitmq.reply-to"
#: The prefix of the names the broker substitutes for it (routing keys of replies).
PREFIX = PSEUDO_QUEUE + "."
#: :data:`PSEUDO_QUEUE` as the bytes of a ``reply_to`` property value.
PSEUDO_QUEUE_BYTES = PSEUDO_QUEUE.encode()


class ReplyConsumer:
    """The direct reply-to consumer of one channel, and the destination of its replies.

    To :meth:`VHost.enqueue` it looks like a transient queue that never refuses a message;
    ``enqueue`` hands the reply to the channel at once.
    """

    __slots__ = ("channel", "dropped", "name", "tag", "tag_bytes")

    #: Read by VHost.enqueue, as on a Queue: replies are never stored or refused.
    durable = False
    rejects_publish = False
    kind = "queue"

    def __init__(self, channel: Channel, tag: str) -> None:
        self.channel = channel
        self.tag = tag
        self.tag_bytes = shortstr(tag)
        #: The routing key of replies: unguessable, so only a requester's peer can reply.
        self.name = PREFIX + secrets.token_urlsafe(18)
        #: Replies dropped because the requester's connection was not reading.
        self.dropped = 0

    def __repr__(self) -> str:
        return f"<ReplyConsumer {self.tag!r} of {self.channel!r}>"

    def enqueue(self, message: Message, stored: bool) -> None:
        """Deliver ``message`` now (the queue protocol's enqueue; ``stored`` is always False)."""
        self.channel.deliver_reply(self, message)


def is_reply_name(name: str) -> bool:
    """True for the pseudo-queue and for the names of reply consumers."""
    return name == PSEUDO_QUEUE or name.startswith(PREFIX)
