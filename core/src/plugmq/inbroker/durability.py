"""Telling an in-broker publisher when its message is durable (the ``on_durable`` callback).

This is the channel's publisher-confirm mechanism (broker/channel.py ``_track_confirm``,
``_on_durable``, ``message_settled``) without the AMQP frames: a publish waits for the journal
record of its enqueue, or for every copy of it to be consumed before the store wrote it (the
vhost then calls ``message.confirm_channel.message_settled``), whichever comes first.

A record a durability gate failed (not replicated, see :mod:`plugmq.journal`) is reported
with ``ok=False``, as a channel nacks it.

Callbacks are independent of each other (there is no ``multiple=true`` to keep in order), so a
message settled early is reported at once and a durable one as soon as the journal says so.
One journal callback is registered at a time, for the oldest waiting publish, as the channel
does: registering one per publish would grow the journal's heap with every message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from plugmq.broker.message import Message
    from plugmq.journal import Journal

log = structlog.get_logger("plugmq.inbroker")

DurableCallback = Callable[[bool], None]


def call_safely(callback: DurableCallback, ok: bool) -> None:
    """Run a plugin's callback; a bug in it is logged, not raised into the engine.

    The callback runs inside the journal writer or another client's ack; an exception there
    would stop the writer (the broker) or close an unrelated connection.
    """
    try:
        callback(ok)
    except Exception:
        log.exception("inbroker_callback_failed", callback=repr(callback))


class _Waiting:
    """One publish waiting to be durable; stands in the message's ``confirm_channel`` slot."""

    __slots__ = ("callback", "message", "notifier", "seq")

    def __init__(
        self, notifier: DurableNotifier, seq: int, message: Message, callback: DurableCallback
    ) -> None:
        self.notifier = notifier
        self.seq = seq
        self.message = message
        self.callback: DurableCallback | None = callback

    def message_settled(self, message: Message) -> None:
        """Every copy was consumed before the store wrote it (called by the vhost)."""
        self.notifier.finish(self, True)


class DurableNotifier:
    """Calls each publish's ``on_durable`` exactly once, when it is durable."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._waiting: deque[_Waiting] = deque()
        self._registered = False

    def track(self, seq: int, message: Message, callback: DurableCallback) -> None:
        """Call ``callback(True)`` once journal record ``seq`` is durable (or the message was
        consumed everywhere before it was written); ``callback(False)`` at once for a refused
        publish (``seq`` < 0, see VHost.enqueue)."""
        if seq < 0:
            call_safely(callback, False)
            return
        journal = self._journal
        if seq <= journal.durable_seq or not message.unwritten_copies:
            # Durable already, or every stored copy was consumed (and its record cancelled)
            # during the publish itself: a consumer acked it from its on_delivery.
            call_safely(callback, not self._failed(seq))
            return
        waiting = _Waiting(self, seq, message, callback)
        message.confirm_channel = waiting
        self._waiting.append(waiting)
        if not self._registered:
            self._registered = True
            journal.when_durable(seq, self._on_durable)

    def finish(self, waiting: _Waiting, ok: bool) -> None:
        """Run the callback of ``waiting`` unless it already ran."""
        callback = waiting.callback
        if callback is None:
            return
        waiting.callback = None
        waiting.message.confirm_channel = None
        call_safely(callback, ok)

    def _failed(self, seq: int) -> bool:
        """True when a durability gate failed record ``seq`` (written, never replicated)."""
        journal = self._journal
        return bool(journal.failures) and journal.is_failed(seq)

    def _on_durable(self) -> None:
        """The journal reached the oldest waiting publish: report it and every later durable one,
        then wait for the next."""
        self._registered = False
        durable = self._journal.durable_seq
        waiting = self._waiting
        while waiting and waiting[0].seq <= durable:
            oldest = waiting.popleft()
            self.finish(oldest, not self._failed(oldest.seq))
        while waiting and waiting[0].callback is None:  # settled early, already reported
            waiting.popleft()
        if waiting:
            self._registered = True
            self._journal.when_durable(waiting[0].seq, self._on_durable)
