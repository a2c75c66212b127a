"""The destination's duplicate window, made durable: it survives a kill -9 of an HA master.

The window (:mod:`.dedup`) lives in memory. A pull link acknowledges a message on its source
only once the local copy is durable; if this broker dies between the two, the source delivers
the message again (``redelivered``), and a new master of this HA group, with an empty window,
would take it a second time: a duplicate for consumers. So the keys a pull link admits are
journaled too, in the federation settings (``window/<slot>``, replicated to the group with the
messages), right behind the messages they name.

Why that works: a link publishes a burst of messages and journals their keys at once, with no
wait in between, so the journal's writer puts them in the same store batch (one transaction,
replicated whole) in the normal case: a store that has the messages has their keys. Only a
batch boundary can fall between them (a backlog over the journal's batch limit); then a store
may hold a message without its key, and its resend is a copy, as before; never a key without
its message, whose resend would be dropped and lost. Such a copy is published **marked
redelivered** (the source resends it redelivered, and a key the window does not know cannot be
proven new), so consumers get it as AMQP's "may have been delivered before", never as a fresh
message: the same contract as a consumer's own broker dying before its ack. A message consumed
before it was even written (the journal cancels such pairs) is acked at once; if this broker
dies before its key is written, the source most likely got the ack.

Cost: no record per message. A pull link takes the messages it has already received as a burst
(up to its ``--ack``) and :meth:`WindowJournal.write` journals their keys as *one* settings
record right after publishing them; a ring of :data:`SLOTS` records of at most :data:`PER_SLOT`
keys each keeps the last ``SLOTS * PER_SLOT`` keys, which covers what a link can have in doubt
(its ``--ack`` window).

At promotion :meth:`WindowJournal.restore` admits the recovered keys into the window and hands
each route's keys to its link's in-doubt set (resends of messages without a ``message_id`` are
recognised there).
"""

from __future__ import annotations

from collections import defaultdict

from plugmq.settings import PluginSettings
from plugmq_federation.dedup import DuplicateWindow

SLOT_PREFIX = "window/"
#: Records in the ring, and keys per record: the last SLOTS * PER_SLOT keys are kept.
SLOTS = 64
PER_SLOT = 512

#: One admitted key: (route id, key, path it came by, whether it counts identical messages).
Entry = tuple[str, bytes, bytes, bool]


class WindowJournal:
    """Journals the keys pull links admit, as a ring of settings records."""

    def __init__(self, settings: PluginSettings) -> None:
        self.settings = settings
        self._next = 0

    def write(self, entries: list[Entry]) -> None:
        """Journal ``entries`` (one settings record per :data:`PER_SLOT`); call it right
        after publishing the messages they name, with no wait in between."""
        for start in range(0, len(entries), PER_SLOT):  # nothing at all for no entries
            chunk = entries[start : start + PER_SLOT]
            self.settings.set(f"{SLOT_PREFIX}{self._next % SLOTS}", [self._next, chunk])
            self._next += 1

    # -- promotion -----------------------------------------------------------------------------

    def restore(self, window: DuplicateWindow) -> dict[str, list[bytes]]:
        """Admit the journaled keys into ``window`` (if it is empty: a new process) and return
        each route's keys for its link's in-doubt set."""
        slots = []
        for key, value in self.settings.items():
            if key.startswith(SLOT_PREFIX) and isinstance(value, list | tuple) and len(value) == 2:
                slots.append(value)
        slots.sort(key=lambda slot: slot[0])
        self._next = slots[-1][0] + 1 if slots else 0
        fill = len(window) == 0
        by_route: dict[str, list[bytes]] = defaultdict(list)
        for _, entries in slots:
            for route_id, key, path, counted in entries:
                if fill:
                    window.admit(key, path, counted)
                by_route[route_id].append(key)
        return by_route
