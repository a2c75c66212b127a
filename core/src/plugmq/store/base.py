"""The :class:`Store` protocol every store plugin implements.

A store is synchronous: the journal calls it from one worker thread at a time (never from the
trio loop), so a store may block on disk I/O. It must make a batch durable before
:meth:`Store.apply` returns; the broker sends publisher confirms only after that.

What a store keeps (the contract tests in ``tests/store/test_store_contract.py`` check each):

* every field of every record, ``ConfigSet`` values of any namespace (the core's and
  plugins') included, and ``MessageEnqueued.enqueued_at`` exactly (message TTLs count from
  it after a restart);
* **redelivered is never a false negative.** A store knows whether it was last closed
  cleanly. After a clean :meth:`Store.close`, recovered messages carry exactly the delivery
  marks :meth:`Store.mark_delivered` recorded. After an unclean stop (kill -9, power loss,
  a failed write) marks may be missing, so every message stored at that stop is recovered,
  and paged in by :meth:`Store.read_queue`, with ``redelivered=True``, as RabbitMQ does
  after a crash; this holds across later clean restarts until those messages are gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

from plugmq.store.records import MessageEnqueued, Record


class StoreError(Exception):
    """The store cannot be used: corrupt, foreign or locked data directory, disk failure.

    The message is shown to the user as it is, so it says what is wrong and what to do.
    """


class NotReplicated(Exception):  # an outcome the broker handles, not a crash
    """Raised by :meth:`Store.apply` when the batch is durable locally but not replicated.

    A replicating store (Berkeley DB's replication manager with quorum acks) raises it when the
    acknowledgements did not arrive: the broker keeps running and nacks those publishes instead
    of confirming them (the records stay in the local store; a later replica sync may carry
    them). The message says why, for the log.
    """


@runtime_checkable
class Store(Protocol):
    """Persists journal records and rebuilds broker state from them."""

    #: Short name for logs and ``plugmq plugins`` (``"memory"``, ``"bdb"``).
    name: str
    #: False for stores that keep nothing across restarts: the journal then confirms at once.
    durable: bool

    def open(self) -> None:
        """Open or create the store. Raises :class:`StoreError` with a clear message."""

    def recover(self, progress: Callable[[int, int], None]) -> Iterator[Record]:
        """Yield records that rebuild the stored state, in an order that can be applied.

        Order: ``ConfigSet``, ``ExchangeDeclared``, ``QueueDeclared``, ``BindingAdded``, then
        for each queue its ``MessageEnqueued`` records in enqueue order (oldest first). A message
        that had been delivered before the stop is yielded with ``redelivered=True``, and so is
        every message after an unclean stop (see the module docstring).
        ``progress(done, total)`` is called from time to time during long recoveries.
        """

    def apply(self, records: Sequence[Record]) -> None:
        """Make ``records`` durable, in order, atomically as one batch (group commit).

        Raise :class:`NotReplicated` when the batch is on the local disk but the store's own
        replication could not confirm it; any other exception stops the broker.
        """

    def mark_delivered(self, vhost: str, queue: str, message_ids: Sequence[int]) -> None:
        """Remember that these messages were delivered (so recovery sets redelivered).

        Need not be synchronous to disk: the marks must be complete after a clean
        :meth:`close` only. A store that loses marks otherwise (or keeps none) must count its
        next start as after an unclean stop.
        """

    def read_queue(
        self, vhost: str, queue: str, after_message_id: int, limit: int
    ) -> list[MessageEnqueued]:
        """Up to ``limit`` stored messages of a queue with ids above ``after_message_id``.

        Oldest first. The broker pages a long queue's tail in with this; it calls it only after
        every record appended before is durable, from the same single worker thread.
        """

    def close(self) -> None:
        """Flush and close; a clean close (see the module docstring). Safe to call twice.

        Also called when the broker is fenced (mastership lost); the broker may then call
        :meth:`open` again when it is promoted later, and recover from scratch.
        """
