"""Queue length limits: ``x-max-length``, ``x-max-length-bytes`` and ``x-overflow``.

RabbitMQ's rules (https://www.rabbitmq.com/maxlength.html): only ready messages count (not
unacknowledged ones); with ``drop-head`` (the default) the oldest ready messages are dropped,
or dead-lettered with reason ``maxlen``, once a publish takes the queue over a limit; with
``reject-publish`` a publish that would go over is refused — the publisher gets basic.nack in
confirm mode — and ``reject-publish-dlx`` also dead-letters the refused message. The check for
refusal happens before delivery is attempted (``rabbit_amqqueue_process:will_overflow``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from plugmq.broker.message import Message
    from plugmq.broker.queue import Queue


def would_overflow(queue: Queue, message: Message) -> bool:
    """True when one more ``message`` would take ``queue`` over one of its limits."""
    args = queue.args
    if args.max_length is not None and queue.message_count + 1 > args.max_length:
        return True
    max_bytes = args.max_length_bytes
    return max_bytes is not None and queue.ready_bytes + message.body_size > max_bytes


def over_limit(queue: Queue) -> bool:
    """True while ``queue`` holds more ready messages or bytes than it may."""
    args = queue.args
    if args.max_length is not None and queue.message_count > args.max_length:
        return True
    max_bytes = args.max_length_bytes
    return max_bytes is not None and queue.ready_bytes > max_bytes


def refuse(queue: Queue, message: Message) -> None:
    """A publish over the limit is refused; ``reject-publish-dlx`` dead-letters it."""
    if queue.args.overflow == "reject-publish-dlx":
        queue.dead_letter(message, "maxlen")


def drop_head(queue: Queue) -> None:
    """Drop (or dead-letter, reason ``maxlen``) head entries until the queue is within limits.

    Paged-out messages count towards the limits but only entries in memory can be dropped;
    the tail is paged back in before the queue can go over again.
    """
    while queue.messages and over_limit(queue):
        queue.discard(queue.take_head(), "maxlen")
