"""The master's ZooKeeper lease: confirm only while the session is proven alive.

A master's confirms need a quorum's acknowledgements (Berkeley DB) and its mastership (the
``master`` node of its epoch). What neither covers alone is a master that was *paused*
(SIGSTOP, a VM freeze, a long stall) past its session timeout: a new master was elected
meanwhile, and when the old one resumes, a commit it started before the pause may complete
(a replica that has not yet heard of the new master acknowledges it) before its ZooKeeper
thread notices the lost session and the broker fences. That replica may already have
reported its position for the new election, so the record may be missing on the new master:
a confirm then would be a lost confirmed message.

:class:`SessionLease` closes that window. ZooKeeper expires a session ``timeout`` seconds
after it last heard from the client, so a request *sent* at ``t`` that got an answer proves
the session lives until ``t + timeout`` at least (by ZooKeeper's clock; :data:`FRACTION`
leaves a margin for clock rates). The master refreshes the proof several times a second
(``_publish_master`` writes its node every 0.2 s); :class:`LeaseGate` (a journal durability
gate, run on the trio thread just before confirms go out, once per batch) nacks every batch
written when the proof is older than the lease. A master paused past its session timeout
therefore never confirms after it resumes; a busy master whose proof lapses nacks (never
loses) until the next refresh.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import structlog

from plugmq.api import BrokerAPI
from plugmq.store.records import Record

log = structlog.get_logger("plugmq.ha_zk")

#: Share of the session timeout a proof stays valid for.
FRACTION = 0.75


class SessionLease:
    """When the session was last proven alive (``time.monotonic()`` of a request sent)."""

    def __init__(self, session_timeout: float) -> None:
        self.length = session_timeout * FRACTION
        self.proven_at = -float("inf")

    def proven(self, sent_at: float) -> None:
        """A ZooKeeper request sent at ``sent_at`` succeeded."""
        self.proven_at = max(self.proven_at, sent_at)

    def forget(self) -> None:
        """Mastership ended: nothing is proven for the next one."""
        self.proven_at = -float("inf")

    def valid(self) -> bool:
        """Is the session certainly alive now?"""
        return time.monotonic() < self.proven_at + self.length


class LeaseGate:
    """Releases each written batch for confirmation while the lease holds; nacks otherwise."""

    name = "zookeeper-lease"

    def __init__(self, broker: BrokerAPI, lease: SessionLease) -> None:
        self.broker = broker
        self.lease = lease
        self.refused = 0

    def written(self, upto_seq: int, records: Sequence[Record]) -> None:
        """Called on the trio thread after each batch, just before its confirms go out."""
        if self.lease.valid():
            self.broker.journal.release(self, upto_seq)
            return
        self.refused += 1
        log.warning("ha_zk.confirm_refused", upto=upto_seq, reason="ZooKeeper lease lapsed")
        self.broker.journal.fail(self, upto_seq, "the master's ZooKeeper lease lapsed")
