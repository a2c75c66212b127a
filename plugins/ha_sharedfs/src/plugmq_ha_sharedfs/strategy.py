"""The sharedfs HA strategy: wait as a standby for the lease, serve as master while it holds.

A standby listens and answers every client with connection.close (320) naming the master's
URL; it never opens the store. It looks at the lease every ``poll`` seconds
(:meth:`Election.consider`) and logs who holds it when that changes. Once it takes the lease
it promotes (the broker opens the store and recovers, with progress logged) and serves.

A master renews every quarter lease. A watchdog fences the broker when the lease runs out
without a renewal (the renewal thread may hang on a dead NFS server), and a renewal that finds
another lease fences at once; either way within the lease time. Fencing releases
``master.lock`` and the broker becomes a standby again. A clean shutdown marks the lease
released so a standby takes over at once.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
import trio

from plugmq.api import BrokerAPI, Role
from plugmq_ha_sharedfs.directory import SharedDirectory
from plugmq_ha_sharedfs.election import Decision, Election
from plugmq_ha_sharedfs.gate import LeaseGate
from plugmq_ha_sharedfs.lease import Holder
from plugmq_ha_sharedfs.status import STASH_KEY

log = structlog.get_logger("plugmq.ha_sharedfs")

#: A standby logs the holder again after this long even if nothing changed.
REMIND_SECONDS = 30.0


class SharedFSHA:
    """Master/standby by a lock and a lease in the shared data directory."""

    name = "sharedfs"

    def __init__(
        self, directory: SharedDirectory, election: Election, advertise_url: str | None
    ) -> None:
        self.directory = directory
        self.election = election
        self.advertise_url = advertise_url
        #: The group's member URLs (``cluster_urls``), refreshed at every renewal.
        self.members: list[str] = []
        self.lease_seconds = election.lease_seconds
        self.poll = min(0.2, self.lease_seconds / 10)
        self.renew_every = self.lease_seconds / 4
        self.role = Role.STANDBY
        self._logged: tuple[Any, ...] = ()
        self._logged_at = 0.0

    async def run(self, broker: BrokerAPI, task_status: trio.TaskStatus[None]) -> None:
        """Standby until the lease is ours; master while it holds; again and again."""
        verdict = await trio.to_thread.run_sync(self.directory.prepare)
        log.info(
            "ha_sharedfs_directory",
            path=str(self.directory.data_dir),
            filesystem=verdict.mount.fstype if verdict.mount else None,
            shared=verdict.shared,
            note=verdict.reason,
        )
        broker.stash[STASH_KEY] = self
        broker.add_durability_gate(LeaseGate(broker, self.election, self.renew_every))
        await broker.become(Role.STANDBY)
        await broker.serve_clients()
        url = self.advertise_url or _url_of(broker.addresses)
        me = self.election.me = Holder.this_process(url)
        self.election.version = _version()
        await trio.to_thread.run_sync(self.directory.register_member, me.url, me.host, me.pid)
        task_status.started()
        try:
            while True:
                decision = await self._wait_for_lease()
                await self._serve_as_master(broker, decision)
        finally:
            with trio.CancelScope(shield=True):
                await self._let_go(broker, clean=True)

    # -- standby --------------------------------------------------------------------------------

    async def _wait_for_lease(self) -> Decision:
        while True:
            try:
                decision = await trio.to_thread.run_sync(self.election.consider)
            except OSError as error:
                # The shared filesystem hiccuped (NFS server restarting): look again later.
                log.warning("ha_directory_error", error=f"{error.strerror or error}")
                await trio.sleep(self.poll)
                continue
            if decision.epoch is not None:
                return decision
            self._log_waiting(decision)
            await trio.sleep(self.poll)

    def _log_waiting(self, decision: Decision) -> None:
        current = decision.current
        key = (decision.reason, current.epoch if current else None, decision.problem)
        now = time.monotonic()
        if key == self._logged and now - self._logged_at < REMIND_SECONDS:
            return
        self._logged, self._logged_at = key, now
        if decision.problem is not None:
            log.error(
                "ha_lease_unreadable",
                problem=decision.problem,
                action=f"waiting until it is unchanged for {self.lease_seconds}s",
            )
            return
        if current is None:
            return
        log.info(
            "ha_standby_waiting",
            message=f"data directory {self.directory.data_dir} is locked by another broker: "
            f"{current.describe()}; waiting as standby",
            holder_host=current.holder.host,
            holder_pid=current.holder.pid,
            holder_url=current.holder.url,
            since=current.since,
            epoch=current.epoch,
        )

    # -- master ---------------------------------------------------------------------------------

    async def _serve_as_master(self, broker: BrokerAPI, decision: Decision) -> None:
        mine = self.election.mine
        assert mine is not None and decision.epoch is not None
        log.info(
            "ha_taking_over",
            epoch=decision.epoch,
            reason=decision.reason,
            previous=decision.current.describe() if decision.current else None,
            locked=mine.locked,
        )
        self.role = Role.MASTER
        self.members = await trio.to_thread.run_sync(self.directory.member_urls)
        try:
            reason = await self._hold(broker, decision.epoch)
        except Exception:
            # A failed recovery must not leave the lease claimed: another broker may do better.
            # (Cancellation is a shutdown: run() hands over cleanly.)
            with trio.CancelScope(shield=True):
                await self._let_go(broker, clean=False)
            raise
        log.warning("ha_mastership_lost", epoch=decision.epoch, reason=reason)
        await self._let_go(broker, clean=False, reason=reason)
        await broker.become(Role.STANDBY)
        await broker.serve_clients()

    async def _hold(self, broker: BrokerAPI, epoch: int) -> str:
        """Promote and serve, renewing all along, until mastership is lost; return why.

        Renewal starts before the promotion: recovering a large store can take longer than
        the lease, and a standby must not see the lease go stale meanwhile. A loss during the
        promotion cancels it. The watchdog bounds a renewal that hangs (dead NFS server).
        """
        lost: list[str] = []
        async with trio.open_nursery() as nursery:

            async def renew() -> None:
                while True:
                    await trio.sleep(self.renew_every)
                    renewal = await trio.to_thread.run_sync(
                        self.election.renew, abandon_on_cancel=True
                    )
                    if renewal.error is not None:
                        log.warning("ha_renew_failed", error=renewal.error)
                    if renewal.lost is not None:
                        lost.append(renewal.lost)
                        nursery.cancel_scope.cancel()
                        return
                    self.members = await trio.to_thread.run_sync(self.directory.member_urls)

            async def watchdog() -> None:
                while self.election.valid():
                    await trio.sleep(max(0.0, self.election.valid_until - time.monotonic()))
                lost.append(f"the lease ran out: not renewed within {self.lease_seconds}s")
                nursery.cancel_scope.cancel()

            nursery.start_soon(renew)
            nursery.start_soon(watchdog)
            await broker.promote(epoch=epoch)
            await trio.sleep_forever()
        return lost[0]

    async def _let_go(self, broker: BrokerAPI, *, clean: bool, reason: str = "") -> None:
        """Fence (when master) and release the lock; on a clean stop mark the lease released."""
        if self.role is not Role.MASTER:
            self.election.master_lock.release()
            return
        self.role = Role.STANDBY
        self.election.valid_until = 0.0  # the gate refuses from this instant
        if not clean:
            await broker.fence(reason or "sharedfs mastership given up", keep_listening=True)
        try:
            await trio.to_thread.run_sync(lambda: self.election.give_up(mark_released=True))
        except OSError as error:
            # The lock is dropped anyway (give_up's finally); standbys take over by the lease.
            log.warning("ha_release_failed", error=f"{error.strerror or error}")
            return
        log.info("ha_lease_released", clean=clean, epoch=broker.epoch)

    def serving(self, broker: BrokerAPI) -> bool:
        """True when this broker may take clients: an active master (recovery done) whose
        lease is valid right now. The role is master from the start of the promotion, so a
        client let in during recovery would see queues half rebuilt."""
        return broker.role is Role.MASTER and broker.active.is_set() and self.election.valid()

    def redirect_text(self, broker: BrokerAPI) -> str:
        """The close text a refused client gets: where the master is."""
        current = self.election.last_seen
        where = f"broker is {broker.role.value} in HA group '{self.election.group}'"
        if current is None or current.holder.nonce == self.election.me.nonce:
            return f"{where}; no master known"
        return f"{where}; the master is {current.holder.url}"

    def describe(self) -> dict[str, Any]:
        """Role, epoch, holder and lease age for ``plugmq ha status``."""
        election = self.election
        current = election.mine or election.last_seen
        age = election.lease_age()
        return {
            "group": election.group,
            "lease_seconds": self.lease_seconds,
            "me": election.me.url,
            "holder": current.holder.describe() if current else None,
            "holder_url": current.holder.url if current else None,
            "lease_epoch": current.epoch if current else None,
            "lease_age": None if age is None else round(age, 3),
            "lease_valid_for": round(max(0.0, election.valid_until - time.monotonic()), 3),
            "holds_master_lock": election.master_lock.held,
            "members": self.directory.member_urls(),
        }


def _url_of(addresses: list[str]) -> str:
    """``amqp://host:port/`` of the first TCP listener (the default advertised URL)."""
    for address in addresses:
        if address.startswith("tcp://"):
            return "amqp://" + address.removeprefix("tcp://") + "/"
    return addresses[0] if addresses else "unknown"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("plugmq")
    except PackageNotFoundError:
        return "unknown"
