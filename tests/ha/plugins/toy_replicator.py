"""A toy replicator for the contract tests: a durability gate released or failed on request.

Loaded with ``--load-module tests/ha/plugins/toy_replicator.py``. It registers a
:class:`plugmq.api.DurabilityGate` that holds every written record until the management command
is released by SIGUSR1 (replicas acknowledged) or failed by SIGUSR2 (they never will: the
publishes are nacked); it logs ``toy_gate_written`` for every batch it holds and
``toy_gate_released`` / ``toy_gate_failed``. Signals, not management requests, drive it because
a held gate holds every reply that waits for durability (a real replicator releases on its
own). This is how ha_zk holds confirms until a quorum has the records. Imports only the public
contract.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

import structlog
import trio

from plugmq.api import BrokerAPI, Service, hookimpl, records

log = structlog.get_logger("toy_replicator")
STASH_KEY = "toy_replicator"


class ToyGate:
    """Remembers how far the store wrote; releases or fails on command."""

    name = "toy"

    def __init__(self, broker: BrokerAPI) -> None:
        self.broker = broker
        self.written_upto = 0
        self.messages_held = 0

    def written(self, upto_seq: int, batch: Sequence[records.Record]) -> None:
        """Note the batch; hold it."""
        self.written_upto = upto_seq
        self.messages_held += sum(isinstance(r, records.MessageEnqueued) for r in batch)
        log.info("toy_gate_written", upto=upto_seq, held=self.messages_held)

    def release(self) -> int:
        """Everything written so far is "replicated"."""
        self.broker.journal.release(self, self.written_upto)
        self.messages_held = 0
        return self.written_upto

    def fail(self) -> int:
        """Everything written so far will never be "replicated"."""
        self.broker.journal.fail(self, self.written_upto, "toy replicas unreachable")
        self.messages_held = 0
        return self.written_upto


@hookimpl
def plugmq_services(broker: BrokerAPI) -> list[Service]:
    """Install the gate (once: the broker keeps it for later masterships); obey signals."""
    gate = broker.stash.get(STASH_KEY)
    if gate is None:
        gate = broker.stash[STASH_KEY] = ToyGate(broker)
        broker.add_durability_gate(gate)

    async def obey_signals(task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    log.info("toy_gate_released", upto=gate.release())
                else:
                    log.info("toy_gate_failed", upto=gate.fail())

    return [obey_signals]
