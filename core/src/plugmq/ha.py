"""The HA contract: roles, and the strategy that moves a broker between them.

A broker is always in one :class:`Role`. It starts as :attr:`Role.STANDBY` with its store
closed; the HA strategy (``plugmq_ha_strategy``) runs for the broker's whole life and owns every
transition through the broker's control methods:

* ``await broker.become(Role.REPLICA)`` / ``become(Role.STANDBY)``: a non-serving role. Services
  started with ``broker.start_service`` run until the next role change (a replica receiver, a
  lock watcher). A replicated strategy opens its store in replica mode itself.
* ``await broker.promote(epoch)``: become the master. The broker opens the store (if the
  strategy has not), rebuilds every vhost, queue and message from it (recovery, with progress
  logged), starts the journal writer, timers and plugins' services, opens the listeners and sets
  ``broker.active``. Calling it while master does nothing.
* ``await broker.fence(reason)``: mastership is lost. At once, before any checkpoint, the
  journal stops (nothing more is written, no confirm is sent for anything pending) and
  ``broker.active`` is cleared; then listeners, services, timers and connections stop and the
  store is closed. A later ``promote`` starts everything afresh (never twice).

A strategy calls ``task_status.started()`` once it has put the broker in its first role.
Mastership has an **epoch**, increasing with every promotion in the group (a lease counter, a
ZooKeeper sequence number): ``broker.epoch`` names it in logs, ``plugmq stat ha`` and, for
stores that check it, in writes.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import trio

if TYPE_CHECKING:
    from plugmq.broker.broker import Broker


class Role(enum.Enum):
    """What a broker is doing in its HA group."""

    #: Not serving; its store closed (waiting for a lock or an election).
    STANDBY = "standby"
    #: Not serving clients; its store receives the master's records (replicated HA).
    REPLICA = "replica"
    #: Serving clients; the only role that writes.
    MASTER = "master"
    #: Was master and lost it; stopped everything that writes. Waits to be demoted or promoted.
    FENCED = "fenced"


@runtime_checkable
class HAStrategy(Protocol):
    """Decides, for the life of the broker, which role it has."""

    #: Name for logs (``"standalone"``, ``"sharedfs"``, ``"zookeeper"``).
    name: str

    async def run(self, broker: Broker, task_status: trio.TaskStatus[None]) -> None:
        """Run until cancelled; move the broker between roles (see the module docstring).

        Call ``task_status.started()`` once the broker has its first role. An exception
        stops the broker (a strategy that cannot tell who is master must not guess).
        """
        ...

    def describe(self) -> dict[str, Any]:
        """What ``plugmq stat ha`` shows beyond role and epoch (holder, lease, replicas)."""
        ...


class StandaloneHA:
    """No high availability: the broker is master as soon as it starts, epoch 1."""

    name = "standalone"

    async def run(self, broker: Broker, task_status: trio.TaskStatus[None]) -> None:
        """Promote at once, then wait until the broker stops."""
        await broker.promote(epoch=1)
        task_status.started()
        await trio.sleep_forever()

    def describe(self) -> dict[str, Any]:
        """Nothing to add: one broker, always master."""
        return {}
