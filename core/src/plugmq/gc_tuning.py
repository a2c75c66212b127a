"""Garbage-collector settings for a broker process.

A broker allocates a few objects per message (the message, one queue entry per queue, frames)
and frees almost all of them by reference counting: they form no cycles. CPython's default
thresholds (700, 10, 10) still run a young collection every 700 net allocations, and every
100 of those a full collection that walks every live object, which with a few hundred thousand
messages held is a pause of tens of milliseconds. py-spy of the *topic* benchmark showed 14%
of the broker's CPU in the collector; with the thresholds below it is under 1%.

Cycles still get collected (trio's cancelled scopes and exceptions make a few), just less often.
Objects alive once the broker is serving (recovered queues, plugins, the loaded modules) are
moved out of the collector's sight with :func:`gc.freeze`.
"""

from __future__ import annotations

import gc

#: Young collection every 50,000 net allocations; older generations 20x and 100x rarer.
THRESHOLDS = (50_000, 20, 100)


def tune_for_broker() -> None:
    """Raise the collection thresholds (process-wide: called by the ``broker`` command)."""
    gc.set_threshold(*THRESHOLDS)


def freeze_startup_objects() -> None:
    """Exclude every object alive now from future collections (after recovery, at start).

    No collection first: after recovering a large store it would walk millions of objects
    while clients wait; the little start-up garbage that gets frozen with them is negligible.
    """
    gc.freeze()
