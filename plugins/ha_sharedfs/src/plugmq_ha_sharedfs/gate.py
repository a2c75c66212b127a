"""The lease gate: the journal writes and confirms only while this broker's lease is valid.

Registered as a :class:`plugmq.api.DurabilityGate`. Before every batch the journal's writer
thread asks :meth:`LeaseGate.may_write`: a master whose lease is not valid for at least
``margin`` more seconds (by the monotonic clock) refuses, so a master paused past its lease
writes nothing into a store a standby has since recovered and opened. After the batch,
:meth:`LeaseGate.written` releases it for confirmation only if the lease is still valid;
otherwise the publishes are nacked (they may sit in the store: at-least-once, never lost).
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from plugmq.api import BrokerAPI, records
from plugmq_ha_sharedfs.election import Election

log = structlog.get_logger("plugmq.ha_sharedfs")


class LeaseGate:
    """Holds writes and confirms to the lease's validity."""

    name = "sharedfs-lease"

    def __init__(self, broker: BrokerAPI, election: Election, margin: float) -> None:
        self.broker = broker
        self.election = election
        self.margin = margin
        self.refused = 0

    def may_write(self) -> str | None:
        """Called on the journal's writer thread just before a batch reaches the store."""
        if self.election.valid(self.margin):
            return None
        self.refused += 1
        return "the sharedfs lease is not valid: this broker may have lost mastership"

    def written(self, upto_seq: int, batch: Sequence[records.Record]) -> None:
        """Release the batch while the lease holds; fail it (nack) otherwise."""
        if self.election.valid():
            self.broker.journal.release(self, upto_seq)
        else:
            log.warning("ha_confirm_refused", upto=upto_seq, reason="lease not valid")
            self.broker.journal.fail(self, upto_seq, "sharedfs lease expired")
