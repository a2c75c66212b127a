"""Rates for ``plugmq stat``: counters sampled once a second, never touched per message.

Queues count what they were given and what they delivered (``Queue.published``,
``Queue.delivered``) and connections count bytes; those counters exist for the engine anyway.
This service reads them every :data:`INTERVAL` seconds and keeps the per-second difference,
so the cost is O(queues + connections) per second whatever the message rate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker

INTERVAL = 1.0

Counters = tuple[int, int]
Rates = tuple[float, float]
_ZERO: Rates = (0.0, 0.0)


class Statistics:
    """Per-second rates of queues (publish, deliver) and connections (bytes in, out)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._counters: dict[object, Counters] = {}
        self._rates: dict[object, Rates] = {}
        self._sampled_at = 0.0

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sample forever (a service in the broker's nursery)."""
        self._sampled_at = trio.current_time()
        self.sample(self._sampled_at)
        task_status.started()
        while True:
            await trio.sleep(INTERVAL)
            self.sample(trio.current_time())

    def sample(self, now: float) -> None:
        """Read every counter once; objects that went away are forgotten here."""
        elapsed = max(now - self._sampled_at, 1e-9)
        self._sampled_at = now
        counters = dict(self._current())
        self._rates = {
            obj: _rates(self._counters.get(obj, value), value, elapsed)
            for obj, value in counters.items()
        }
        self._counters = counters

    def _current(self):
        for vhost in self.broker.vhosts.values():
            for queue in vhost.queues.values():
                yield queue, (queue.published, queue.delivered)
        for connection in self.broker.connections:
            yield connection, (connection.bytes_received, connection.bytes_sent)

    def rates(self, obj: object) -> Rates:
        """The last per-second rates of a queue or connection (zero before two samples)."""
        return self._rates.get(obj, _ZERO)


def _rates(before: Counters, after: Counters, elapsed: float) -> Rates:
    return (
        round((after[0] - before[0]) / elapsed, 1),
        round((after[1] - before[1]) / elapsed, 1),
    )
