"""The invariant ledger of fault tests (design.md "Fault testing").

Publishers and consumers of a test (any client library, any thread) record what happened to
each message id; :meth:`Ledger.check` then asserts the guarantees a broker group gives across
kills and takeovers:

* every **confirmed** publish is delivered at least once (a confirm is the broker's promise);
* nothing **acked** comes back: each publish puts one copy of an id in the queue, and a
  publish in flight across a fault may have put one more (the broker stored it, the confirm
  was lost, the client library published it again by itself, as kombu's ``retry`` does); each
  *settled* ack takes one copy away for good. More settled acks of an id than copies of it
  mean an acked copy came back.
  An ack travels to the broker without an answer in AMQP 0-9-1, and the broker writes the
  removal with its next journal batch, so an ack sent just before a kill -9 may be lost and the
  message redelivered (at-least-once, the client dedups), and a client library may take an ack
  on a connection whose broker just died without a word. So an ack is *unsettled* when it was
  sent during a fault window (from :data:`ACK_SETTLE_SECONDS` before :meth:`Ledger.fault` to
  as long after :meth:`Ledger.recovered`), and settled otherwise; redeliveries of unsettled
  acks are counted, not failed;
* no duplicate delivery, where the test promises dedup (``check(duplicates_allowed=False)``).

The ledger is thread-safe; ids are strings (the AMQP ``message_id`` the publisher set).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

#: How long a sent ack may take to reach the broker's disk: the journal gathers for 10 ms and
#: then writes one batch; a busy 2-core CI machine is allowed two hundred times that.
ACK_SETTLE_SECONDS = 2.0


@dataclass
class LedgerReport:
    """What :meth:`Ledger.check` found (also useful to print in a passing test)."""

    published: int
    confirmed: int
    delivered: int
    #: Deliveries beyond the first of each id (republished, or redelivered after a lost ack).
    redelivered: int
    lost: list[str] = field(default_factory=list)
    acked_came_back: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


class Ledger:
    """Confirmed publishes, deliveries and acks of one test, checked against each other."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.publishes: Counter[str] = Counter()
        self._in_flight: dict[str, tuple[float, float]] = {}
        self.confirmed: set[str] = set()
        self.deliveries: Counter[str] = Counter()
        self._acks: dict[str, list[float]] = {}
        self._faults: list[tuple[float, float]] = []

    def publish(self, message_id: str) -> None:
        """``message_id`` was sent (perhaps again, after a failover)."""
        with self._lock:
            self.publishes[message_id] += 1
            self._in_flight.setdefault(message_id, (time.monotonic(), float("inf")))

    def confirm(self, message_id: str) -> None:
        """The broker confirmed ``message_id`` (basic.ack in confirm mode)."""
        with self._lock:
            self.confirmed.add(message_id)
            sent, _ = self._in_flight.get(message_id, (0.0, 0.0))
            self._in_flight[message_id] = (sent, time.monotonic())

    def deliver(self, message_id: str) -> None:
        """A consumer received ``message_id``."""
        with self._lock:
            self.deliveries[message_id] += 1

    def ack(self, message_id: str, at: float | None = None) -> None:
        """A consumer sent basic.ack for ``message_id`` (now, or at ``time.monotonic()``
        value ``at`` taken in another process: the clock is system-wide)."""
        with self._lock:
            self._acks.setdefault(message_id, []).append(time.monotonic() if at is None else at)

    def fault(self) -> None:
        """A fault (kill -9, fence) begins now: acks sent shortly before may be lost."""
        with self._lock:
            self._faults.append((time.monotonic(), float("inf")))

    def recovered(self) -> None:
        """The fault that began last is over: a master serves again."""
        with self._lock:
            start, _ = self._faults[-1]
            self._faults[-1] = (start, time.monotonic())

    @property
    def confirmed_count(self) -> int:
        """How many distinct ids are confirmed."""
        with self._lock:
            return len(self.confirmed)

    def delivered_all_confirmed(self) -> bool:
        """True once every confirmed id was delivered (a test's drain condition)."""
        with self._lock:
            return self.confirmed <= self.deliveries.keys()

    def _settled(self, acked_at: float) -> bool:
        return not any(
            start - ACK_SETTLE_SECONDS <= acked_at <= end + ACK_SETTLE_SECONDS
            for start, end in self._faults
        )

    def _copies(self, message_id: str) -> int:
        """How many copies of ``message_id`` the queue may have held (see the docstring)."""
        sent, confirmed = self._in_flight.get(message_id, (0.0, 0.0))
        straddled = sum(1 for start, end in self._faults if sent <= end and confirmed >= start)
        return self.publishes[message_id] + straddled

    def report(self) -> LedgerReport:
        """Compare what was confirmed, delivered and acked."""
        with self._lock:
            settled = {
                mid: sum(1 for at in times if self._settled(at))
                for mid, times in self._acks.items()
            }
            return LedgerReport(
                published=len(self.publishes),
                confirmed=len(self.confirmed),
                delivered=len(self.deliveries),
                redelivered=sum(n - 1 for n in self.deliveries.values()),
                lost=sorted(self.confirmed - self.deliveries.keys()),
                acked_came_back=sorted(
                    mid for mid, count in settled.items() if count > self._copies(mid)
                ),
                duplicates=sorted(mid for mid, n in self.deliveries.items() if n > 1),
            )

    def check(self, *, duplicates_allowed: bool = True) -> LedgerReport:
        """Assert the invariants (module docstring); return the report."""
        report = self.report()
        assert not report.lost, f"{len(report.lost)} confirmed never delivered: {report.lost[:10]}"
        assert not report.acked_came_back, f"settled acks came back: {report.acked_came_back[:10]}"
        if not duplicates_allowed:
            assert not report.duplicates, f"duplicates: {report.duplicates[:10]}"
        return report
