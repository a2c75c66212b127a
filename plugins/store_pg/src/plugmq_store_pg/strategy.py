"""``--ha pg``: master/slave on the lock row, ActiveMQ's JDBC master/slave with a lease locker.

A slave (standby) listens and answers every client with connection.close (320) naming the
master's URL; it never opens the store. Every ``poll`` seconds it tries the lock row
(:meth:`LockTable.try_take`) and logs who holds it when that changes. Once it takes the row it
sets the store's epoch and promotes (the broker opens the store and recovers, with progress
logged), then serves.

A master renews every quarter lease. A watchdog fences the broker when the lease runs out
without a renewal (the database unreachable, the renewal hung), and a renewal that finds
another epoch, or a store write refused for its epoch, fences at once. Fencing leaves the
broker a standby again. A clean shutdown marks the row released so a slave takes over at once.

Correctness does not rest on the timers: every store transaction checks the epoch in the
database (:mod:`.store`), so a deposed master can commit nothing after the takeover. The
timers make it stop serving, and the :class:`EpochGate` keeps it from confirming once its
lease is not surely valid.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg
import structlog
import trio

from plugmq.api import BrokerAPI, Role, StoreError, records
from plugmq_store_pg.lease import Holder, LockRow, LockTable
from plugmq_store_pg.link import EpochGuard
from plugmq_store_pg.session import LOST, first_line

log = structlog.get_logger("plugmq.store_pg.ha")

STASH_KEY = "ha_pg"
#: A slave logs the holder again after this long even if nothing changed.
REMIND_SECONDS = 30.0


class EpochGate:
    """Confirms a written batch only while the lease is surely ours; nacks it otherwise."""

    name = "pg-epoch"

    def __init__(self, broker: BrokerAPI, guard: EpochGuard) -> None:
        self.broker = broker
        self.guard = guard

    def written(self, upto_seq: int, batch: Sequence[records.Record]) -> None:
        """Release the batch while the lease holds; fail it (nack) otherwise."""
        if self.guard.valid():
            self.broker.journal.release(self, upto_seq)
        else:
            log.warning("ha_confirm_refused", upto=upto_seq, reason="lease not valid")
            self.broker.journal.fail(self, upto_seq, "pg lease expired")


class PgHA:
    """Master/slave by the lock row of the group's PostgreSQL schema."""

    name = "pg"

    def __init__(
        self,
        table_for: Any,
        guard: EpochGuard,
        lease_seconds: float,
        group: str,
        advertise_url: str | None,
    ) -> None:
        #: ``table_for(holder) -> LockTable`` (the holder's URL is known once listening).
        self._table_for = table_for
        self.table: LockTable | None = None
        self.guard = guard
        self.lease_seconds = lease_seconds
        self.group = group
        self.advertise_url = advertise_url
        self.poll = min(0.2, lease_seconds / 10)
        self.renew_every = lease_seconds / 4
        self.members: list[str] = []
        self.last_seen: LockRow | None = None
        self.role = Role.STANDBY
        self._logged: tuple[Any, ...] = ()
        self._logged_at = 0.0

    async def run(self, broker: BrokerAPI, task_status: trio.TaskStatus[None]) -> None:
        """Slave until the lock is ours; master while the lease holds; again and again."""
        self.table = self._table_for(Holder.this_process(self.advertise_url or ""))
        try:
            # A foreign group's schema, a newer layout, bad credentials: refuse before listening.
            await self._call("read")
        except psycopg.OperationalError:
            self.table.discard()  # unreachable for now: the standby loop retries and says so
        broker.stash[STASH_KEY] = self
        broker.add_durability_gate(EpochGate(broker, self.guard))
        await broker.become(Role.STANDBY)
        await broker.serve_clients()
        url = self.advertise_url or _url_of(broker.addresses)
        self.table.me = Holder.this_process(url)
        task_status.started()
        try:
            while True:
                epoch = await self._wait_for_lock()
                await self._serve_as_master(broker, epoch)
        finally:
            with trio.CancelScope(shield=True):
                await self._let_go(broker, clean=True)
                self.table.close()

    # -- slave ----------------------------------------------------------------------------------

    async def _call(self, method: str, *args: Any) -> Any:
        """A LockTable method in a worker thread, abandoned (and its session dropped) when
        cancelled: a call on a dead network must not hold the broker up."""
        table = self.table
        assert table is not None
        try:
            return await trio.to_thread.run_sync(
                lambda: getattr(table, method)(*args), abandon_on_cancel=True
            )
        except trio.Cancelled:
            table.discard()
            raise

    async def _wait_for_lock(self) -> int:
        backoff = self.poll
        polls = stale_seen = 0
        assert self.table is not None
        while True:
            try:
                if polls % 20 == 0:
                    await self._call("register")
                epoch, row = await self._call("try_take")
            except LOST as error:
                # Wrong credentials and foreign schemas raise StoreError: the broker stops.
                assert self.table is not None
                self.table.discard()
                self._log_once(
                    ("unreachable",),
                    "ha_database_unreachable",
                    error=first_line(error),
                    action=f"retrying in {backoff:.2f}s",
                )
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = self.poll
            polls += 1
            self.last_seen = row
            if self.table.stale_sessions_ended > stale_seen:
                stale_seen = self.table.stale_sessions_ended
                log.warning(
                    "ha_stale_sessions_ended",
                    total=stale_seen,
                    holder=row.holder,
                    epoch=row.epoch,
                    reason="its lease lapsed while it held the lock row",
                )
            if epoch is not None:
                log.info("ha_taking_over", epoch=epoch, reason=_why(row), previous=row.describe())
                return epoch
            self._log_waiting(row)
            await trio.sleep(self.poll)

    def _log_waiting(self, row: LockRow) -> None:
        self._log_once(
            ("waiting", row.epoch, row.holder),
            "ha_standby_waiting",
            message=f"PostgreSQL {self.table.db.where() if self.table else ''} is locked by "
            f"another broker: {row.describe()}; waiting as standby",
            holder=row.holder,
            holder_url=row.holder_url,
            since=row.since,
            epoch=row.epoch,
        )

    def _log_once(self, key: tuple[Any, ...], event: str, **fields: Any) -> None:
        now = time.monotonic()
        if key == self._logged and now - self._logged_at < REMIND_SECONDS:
            return
        self._logged, self._logged_at = key, now
        if key[0] == "unreachable":
            log.warning(event, **fields)
        else:
            log.info(event, **fields)

    # -- master ---------------------------------------------------------------------------------

    async def _serve_as_master(self, broker: BrokerAPI, epoch: int) -> None:
        self.role = Role.MASTER
        self.guard.deposed.clear()
        self.guard.epoch = epoch
        try:
            self.members = await self._call("members")
            reason = await self._hold(broker, epoch)
        except BaseException as error:
            if _is_cancellation(error):
                raise  # the broker is stopping: run()'s finally hands the lock over cleanly
            with trio.CancelScope(shield=True):
                await self._let_go(broker, clean=False, reason="promotion failed")
            raise
        log.warning("ha_mastership_lost", epoch=epoch, reason=reason)
        await self._let_go(broker, clean=False, reason=reason)
        await broker.become(Role.STANDBY)
        await broker.serve_clients()

    async def _hold(self, broker: BrokerAPI, epoch: int) -> str:
        """Promote and serve, renewing all along, until mastership is lost; return why.

        The lease counts from before the take's round trip (conservative), and renewal starts
        before the promotion: a recovery longer than the lease must not look like a dead master.
        """
        self.guard.valid_until = time.monotonic() + self.lease_seconds - self.renew_every
        lost: list[str] = []
        async with trio.open_nursery() as nursery:

            def lose(reason: str) -> None:
                lost.append(reason)
                nursery.cancel_scope.cancel()

            async def renew() -> None:
                while True:
                    await trio.sleep(self.renew_every)
                    sent = time.monotonic()
                    try:
                        ours = await self._call("renew", epoch)
                    except (psycopg.Error, StoreError) as error:
                        assert self.table is not None
                        self.table.discard()
                        log.warning("ha_renew_failed", error=first_line(error))
                        continue
                    if not ours:
                        lose(f"the lock row of epoch {epoch} was taken by another broker")
                        return
                    self.guard.valid_until = sent + self.lease_seconds
                    try:
                        members = await self._call("members")
                    except psycopg.Error as error:
                        log.warning("ha_members_failed", error=first_line(error))
                        continue
                    if members != self.members:
                        log.info("ha_members_changed", members=members)
                        self.members = members

            async def watchdog() -> None:
                while not self.guard.deposed:
                    if not self.guard.valid():
                        lose(f"the lease ran out: not renewed within {self.lease_seconds}s")
                        return
                    await trio.sleep(
                        max(0.0, min(self.poll, self.guard.valid_until - time.monotonic()))
                    )
                lose(f"a store write was refused: {self.guard.deposed[0]}")

            nursery.start_soon(renew)
            nursery.start_soon(watchdog)
            await broker.promote(epoch=epoch)
            await trio.sleep_forever()
        return lost[0]

    async def _let_go(self, broker: BrokerAPI, *, clean: bool, reason: str = "") -> None:
        """Fence (when master, not on a clean stop) and, when clean, release the row."""
        if self.role is not Role.MASTER:
            return
        self.role = Role.STANDBY
        epoch = self.guard.epoch
        if not clean:
            self.guard.valid_until = 0.0  # the gate refuses from this instant
            await broker.fence(reason or "pg mastership given up", keep_listening=True)
            return
        # A clean stop: mark the row released so a slave takes over at once. The broker's
        # shutdown flushes and closes the store around this; should a slave win the row
        # first, those last writes are refused by the epoch check (nacked, never confirmed)
        # and no clean marker is left: the next master flags the stored messages redelivered.
        try:
            released = await self._call("release", epoch)
        except (psycopg.Error, StoreError) as error:
            log.warning("ha_release_failed", error=first_line(error))
            return
        self.guard.valid_until = 0.0
        log.info("ha_lease_released", clean=clean, epoch=epoch, released=released)

    # -- what clients and operators see ---------------------------------------------------------

    def serving(self, broker: BrokerAPI) -> bool:
        """True when this broker may take clients: an active master (recovery done: a client
        let in earlier would find no users, queues or journal yet) with a valid lease."""
        return broker.role is Role.MASTER and broker.active.is_set() and self.guard.valid()

    def redirect_text(self, broker: BrokerAPI) -> str:
        """The close text a refused client gets: where the master is."""
        where = f"broker is {broker.role.value} in HA group '{self.group}'"
        row = self.last_seen
        me = self.table.me.name if self.table else None
        if row is None or row.lapsed() or row.holder == me or not row.holder_url:
            return f"{where}; no master known"
        return f"{where}; the master is {row.holder_url}"

    def describe(self) -> dict[str, Any]:
        """Epoch, holder and lease for ``plugmq stat ha``."""
        row, me = self.last_seen, self.table.me if self.table else None
        mine = self.role is Role.MASTER and me is not None
        return {
            "group": self.group,
            "database": self.table.db.where() if self.table else None,
            "lease_seconds": self.lease_seconds,
            "me": me.url if me else None,
            "holder": me.name if mine else (row.holder if row else None),
            "holder_url": me.url if mine else (row.holder_url if row else None),
            "lease_epoch": self.guard.epoch if mine else (row.epoch if row else None),
            "lease_valid_for": round(max(0.0, self.guard.valid_until - time.monotonic()), 3),
            "members": list(self.members),
        }


def _is_cancellation(error: BaseException) -> bool:
    """True for trio.Cancelled, alone or as every member of a nursery's exception group."""
    if isinstance(error, BaseExceptionGroup):
        _, rest = error.split(trio.Cancelled)
        return rest is None
    return isinstance(error, trio.Cancelled)


def _why(row: LockRow) -> str:
    if row.released:
        return "the lock was released"
    if row.age is None:
        return "the lock was never taken"
    return f"the lease was not renewed for {row.age:.1f}s (lease {row.lease_seconds}s)"


def _url_of(addresses: list[str]) -> str:
    """``amqp://host:port/`` of the first TCP listener (the default advertised URL)."""
    for address in addresses:
        if address.startswith("tcp://"):
            return "amqp://" + address.removeprefix("tcp://") + "/"
    return addresses[0] if addresses else "unknown"
