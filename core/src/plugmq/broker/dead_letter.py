"""Dead-lettering (``x-dead-letter-exchange``): republishing messages that died in a queue.

A message rejected without requeue, expired, or dropped over a length limit is published again
through the queue's dead-letter exchange as a *new* message (new id; journaled when it is
persistent and lands on a durable queue), with the headers RabbitMQ 3.10 writes
(``rabbit_dead_letter:make_msg/5``, https://www.rabbitmq.com/dlx.html):

* ``x-death``: an array of tables, newest first, one per (queue, reason), each with ``count``,
  ``reason``, ``queue``, ``time``, ``exchange``, ``routing-keys`` and ``original-expiration``
  when the message had one. A repeated (queue, reason) increments ``count`` and moves its
  table to the front, its keys then sorted;
* ``x-first-death-reason`` / ``-queue`` / ``-exchange``, set on the first death only;
* ``expiration`` removed; ``CC`` removed when ``x-dead-letter-routing-key`` replaces the keys.

The routing key is ``x-dead-letter-routing-key`` when set, else the message's own. A missing
dead-letter exchange drops the message. Cycles (a message coming back to a queue it died in,
with no rejection on the way) are dropped as RabbitMQ does, except for reason ``rejected``.
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING, Any

import structlog

from plugmq.amqp.fieldtable import decode_value, encode_value, headers_of, rewrite_header
from plugmq.amqp.methods import shortstr
from plugmq.broker.message import Message

if TYPE_CHECKING:
    from plugmq.broker.queue import Queue

log = structlog.get_logger("plugmq.dead_letter")

Fields = list[tuple[str, bytes]]


def republish(queue: Queue, message: Message, reason: str) -> None:
    """Dead-letter ``message``, which died in ``queue`` for ``reason``."""
    args = queue.args
    vhost = queue.vhost
    exchange_name = args.dead_letter_exchange
    assert exchange_name is not None
    dead, deaths = make_message(
        message, reason, queue.name, exchange_name, args.dead_letter_routing_key,
        vhost.broker.next_message_id(),
    )  # fmt: skip
    targets = vhost.route_dead_letter(exchange_name, dead)
    if targets is None:
        log.debug("dead_letter_exchange_missing", queue=queue.name, exchange=exchange_name)
        return
    if reason != "rejected":
        targets = [target for target in targets if not _is_cycle(target.name, deaths)]
    if targets:
        vhost.enqueue(targets, dead)


def make_message(
    message: Message,
    reason: str,
    queue: str,
    exchange: str,
    routing_key: str | None,
    message_id: int,
) -> tuple[Message, list[dict[str, Any]]]:
    """The dead-lettered copy of ``message`` and its ``x-death`` list (newest first)."""
    fields = headers_of(message.header)
    deaths = _record_death(fields, message, reason, queue)
    if routing_key is not None:
        fields = [(name, value) for name, value in fields if name != "CC"]
    else:
        routing_key = message.routing_key
    fields.sort(key=_name)
    header = rewrite_header(message.header, fields, drop_expiration=True)
    dead = Message(
        message_id,
        exchange,
        routing_key,
        shortstr(exchange) + shortstr(routing_key),
        header,
        message.body,
        2 if message.persistent else 1,
        message.priority,
        None,
    )
    return dead, deaths


def _name(field: tuple[str, bytes]) -> str:
    return field[0]


def _record_death(fields: Fields, message: Message, reason: str, queue: str) -> list[dict]:
    """Add this death to ``fields`` (in place); return the resulting x-death list."""
    info = _death_info(fields, message, reason, queue)
    index = {name: position for position, (name, _) in enumerate(fields)}
    if "x-death" not in index:
        for name, value in (
            ("x-first-death-reason", reason),
            ("x-first-death-queue", queue),
            ("x-first-death-exchange", message.exchange),
        ):
            _set(fields, index, name, encode_value(value))
        deaths = [{"count": 1, **info}]
    else:
        old = decode_value(fields[index["x-death"]][1])
        deaths = _update_deaths(old if isinstance(old, list) else [], info)
    _set(fields, index, "x-death", encode_value(deaths))
    return deaths


def _death_info(fields: Fields, message: Message, reason: str, queue: str) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    info: dict[str, Any] = {
        "reason": reason,
        "queue": queue,
        "time": now,
        "exchange": message.exchange,
        "routing-keys": [message.routing_key, *_cc_keys(fields)],
    }
    if message.expiration is not None:
        info["original-expiration"] = message.expiration
    return info


def _cc_keys(fields: Fields) -> list[str]:
    """Routing keys of the ``CC`` header (RabbitMQ's sender-selected distribution)."""
    for name, value in fields:
        if name == "CC":
            keys = decode_value(value)
            return [key for key in keys if isinstance(key, str)] if isinstance(keys, list) else []
    return []


def _update_deaths(old: list[Any], info: dict[str, Any]) -> list[dict[str, Any]]:
    """Increment the table of the same (queue, reason) and move it first, or prepend one."""
    queue, reason = info["queue"], info["reason"]
    tables = [table for table in old if isinstance(table, dict)]
    for position, table in enumerate(tables):
        if table.get("queue") == queue and table.get("reason") == reason:
            count = table.get("count")
            updated = dict(table, count=count + 1 if isinstance(count, int) else 1)
            rest = tables[:position] + tables[position + 1 :]
            return [dict(sorted(updated.items())), *rest]
    return [{"count": 1, **info}, *tables]


def _set(fields: Fields, index: dict[str, int], name: str, value: bytes) -> None:
    if name in index:
        fields[index[name]] = (name, value)
    else:
        index[name] = len(fields)
        fields.append((name, value))


def _is_cycle(queue: str, deaths: list[dict[str, Any]]) -> bool:
    """True when ``queue`` is in the death history with no rejection since (an automatic loop)."""
    for position, death in enumerate(deaths):
        if death.get("queue") == queue:
            return all(d.get("reason") != "rejected" for d in deaths[: position + 1])
    return False
