"""A test plugin that blocks publishers for a reason of its own, on signals.

Loaded with ``--load-module tests/ha/plugins/toy_blocker.py``: SIGUSR1 calls
``broker.block_publishers("toy", "toy quorum lost: 1 of 3 replicas")`` (what an HA master below
its quorum does), SIGUSR2 unblocks. Imports only the public contract.
"""

from __future__ import annotations

import signal

import structlog
import trio

from plugmq.api import BrokerAPI, Service, hookimpl

log = structlog.get_logger("toy_blocker")
REASON = "toy quorum lost: 1 of 3 replicas"


@hookimpl
def plugmq_services(broker: BrokerAPI) -> list[Service]:
    """Block or unblock publishers on signals."""

    async def obey(task_status: trio.TaskStatus[None]) -> None:
        with trio.open_signal_receiver(signal.SIGUSR1, signal.SIGUSR2) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    broker.block_publishers("toy", REASON)
                    log.info("toy_blocked")
                else:
                    broker.unblock_publishers("toy")
                    log.info("toy_unblocked")

    return [obey]
