"""The HA contract: a strategy decides when this broker may serve clients.

The broker calls :meth:`HAStrategy.run` in its nursery at start-up. The strategy calls
``task_status.started()`` once it has decided the broker's initial role, then calls
``broker.activate()`` when the broker becomes the active master (it may wait for an election or
a lock first) and ``broker.fence(reason)`` the instant it loses mastership: fencing stops
service at once, so two masters never accept writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import trio

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker


@runtime_checkable
class HAStrategy(Protocol):
    """Decides, for the life of the broker, whether it is the active master."""

    #: Name for logs (``"standalone"``, ``"sharedfs"``, ``"zookeeper"``).
    name: str

    async def run(self, broker: Broker, task_status: trio.TaskStatus[None]) -> None:
        """Run until cancelled; call ``broker.activate()`` when this broker may serve."""
        ...


class StandaloneHA:
    """No high availability: the broker is active as soon as it starts."""

    name = "standalone"

    async def run(self, broker: Broker, task_status: trio.TaskStatus[None]) -> None:
        """Activate at once, then wait until the broker stops."""
        task_status.started()
        await broker.activate()
        await trio.sleep_forever()
