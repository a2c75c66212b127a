"""The ``--ha zookeeper`` strategy: join the group, elect, follow or lead, fence on session loss.

Life of a broker (each step logged as ``ha_zk.*``):

1. Connect to ZooKeeper (unreachable: the broker stops with a clear error), check the group node
   and register as one of its ``--replicas`` sites; refuse a foreign data directory.
2. Become a **replica**: the store opens for Berkeley DB replication; the listeners open and
   redirect clients to the master (``plugmq_connection_check``).
3. No master: report the update position and wait for a quorum to report
   (``Not enough cluster members connected to elect a master`` until then); the most up-to-date
   member takes mastership with a new epoch (:mod:`plugmq_ha_zk.election`).
4. **Follow** another master: join its replication group (Berkeley DB catches the store up by log
   or by a full copy, progress logged) until the master node changes. When Berkeley DB reports
   the replication connection to the master broken, the replica probes the master's replication
   address; "connection refused" proves the master can never write again, and the replica ends
   its mastership in ZooKeeper at once instead of waiting for its session to expire
   (:mod:`plugmq_ha_zk.liveness` has the safety argument). Anything else waits for ZooKeeper.
5. **Lead**: Berkeley DB master first, wait until the group's sites have joined, then
   ``broker.promote(epoch)`` (recovery with progress) and a service that blocks publishers while
   fewer than a quorum are connected. Confirms are held to a lease on the ZooKeeper session
   (:mod:`plugmq_ha_zk.lease`: a master paused past its session timeout never confirms after
   it resumes). Losing the ZooKeeper connection or session, or the master node, fences at once;
   the broker then rejoins as a replica (its store catches up and drops what no quorum
   acknowledged). A mastership lost before the broker served (during Berkeley DB's role change or
   recovery) is dropped the same way, the store restarted as a replica's.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
import trio
from kazoo.exceptions import KazooException, NoNodeError

from plugmq.api import BrokerAPI, Role
from plugmq.config import ConfigError
from plugmq.store import StoreError
from plugmq_ha_zk import election, group, liveness, position
from plugmq_ha_zk.election import NOT_ENOUGH, Master
from plugmq_ha_zk.lease import LeaseGate, SessionLease
from plugmq_ha_zk.options import ZKSettings
from plugmq_ha_zk.session import ZKSession
from plugmq_ha_zk.status import Status
from plugmq_store_bdb.store import MastershipLost

log = structlog.get_logger("plugmq.ha_zk")

#: How often a waiting member re-reads ZooKeeper when no watch fired (member data changes).
ELECTION_POLL = 0.2
#: How often a replica re-reads ZooKeeper when nothing woke it (a broken replication
#: connection and every ZooKeeper watch wake it at once).
FOLLOW_POLL = 0.5
#: How often a master re-reads its master node (it fences when the node is not its own).
MASTERSHIP_POLL = 0.25
#: How long one attempt to join the master's replication group may block a worker thread.
JOIN_ATTEMPT = 2.0
#: Block name for broker.block_publishers.
BLOCK_NAME = "ha_zk"


class ZKStrategy:
    """Master election through ZooKeeper; the store replicated by Berkeley DB."""

    name = "zookeeper"

    def __init__(self, settings: ZKSettings) -> None:
        self.settings = settings
        self.session = ZKSession(settings.zk_address, settings.session_timeout)
        self.status = Status(settings)
        #: Confirms only while the session is proven alive (see :mod:`.lease`).
        self.lease = SessionLease(settings.session_timeout)
        self.identity: group.Identity | None = None
        self._member_path: str | None = None
        self._said_not_enough = -1

    # --- the contract --------------------------------------------------------------------------

    async def run(self, broker: BrokerAPI, task_status: trio.TaskStatus[None]) -> None:
        """Join, then elect/follow/lead until cancelled (see the module docstring)."""
        store = replicated_store(broker)
        broker.stash["ha_zk"] = self
        # A broken replication connection wakes the follower at once (fast failover).
        store.replicator.on_connection_broken = self.session.watch
        broker.add_durability_gate(LeaseGate(broker, self.lease))
        await self.session.start(connect_timeout=max(10.0, self.settings.session_timeout))
        try:
            await self._join(store)
            await broker.become(Role.REPLICA)
            await broker.open_store()
            await broker.serve_clients()
            self.status.url = self.settings.advertise_url or advertised_url(broker)
            task_status.started()
            while True:
                try:
                    await self._cycle(broker, store)
                except (KazooException, NoNodeError) as error:
                    log.warning("ha_zk.zk_error", error=repr(error))
                    await self.session.changed(1.0)
        finally:
            await self.session.stop()

    def describe(self) -> dict[str, Any]:
        """zk path, quorum, master, replicas and their lag (same on every member)."""
        return self.status.describe()

    # --- joining -------------------------------------------------------------------------------

    async def _join(self, store: Any) -> None:
        client, root = self.session.client, self.settings.zk_path
        try:
            group_id = await self.session.call(
                group.ensure_group, client, root, self.settings.replicas
            )
            self.identity = group.load_identity(self.settings.data_dir, group_id, root)
            await self.session.call(
                group.register_site,
                client,
                root,
                self.identity,
                self.settings.replicas,
                {"replication": self._replication_text()},
            )
            peers = await self.session.call(group.site_addresses, client, root)
        except group.GroupError as error:
            raise ConfigError(str(error)) from None
        peers = [p for p in peers if p != self.settings.replication_address]
        store.replicator.peers = tuple(dict.fromkeys([*self.settings.peers, *peers]))
        log.info(
            "ha_zk.joined",
            zk_path=root,
            broker_id=self.identity.broker_id,
            replicas=self.settings.replicas,
            quorum=self.settings.quorum,
            peers=[f"{h}:{p}" for h, p in store.replicator.peers],
        )

    def _replication_text(self) -> str:
        host, port = self.settings.replication_address
        return f"{host}:{port}"

    # --- one turn of the loop ------------------------------------------------------------------

    async def _cycle(self, broker: BrokerAPI, store: Any) -> None:
        client, root = self.session.client, self.settings.zk_path
        if not self.session.connected:
            await self.session.changed(1.0)
            return
        master = await self.session.call(election.read_master, client, root, self.session.watch)
        self.status.master = master
        if master is None:
            epoch = await self._elect(store)
            if epoch is None:
                await self.session.changed(ELECTION_POLL)
                return
            await self._lead(broker, store, epoch)
        elif self.identity is not None and master.broker_id == self.identity.broker_id:
            # Our master node from before a lost connection: we do not serve; give it up.
            # Conditional on the epoch: a replica may have ended it and another broker taken
            # mastership since we read it; an unconditional delete removed that master's node
            # (and let a third election make two masters serve at once).
            ended = await self.session.call(election.end_mastership, client, root, master)
            log.warning("ha_zk.stale_master_node", epoch=master.epoch, deleted=ended)
        else:
            await self._follow(store, master)

    # --- electing ------------------------------------------------------------------------------

    async def _elect(self, store: Any) -> int | None:
        client, root = self.session.client, self.settings.zk_path
        round_, version = await self.session.call(election.current_round, client, root)
        mine = await self._report(store, round_)
        if mine is None:
            return None  # a sync holds the log: our position is unknown, so we do not report
        await self.session.call(
            client.get_children, group.paths(root)["members"], watch=self.session.watch
        )
        members = await self.session.call(election.read_members, client, root, self.session.watch)
        winner = election.choose(members, self.settings.replicas, round_)
        if winner is None:
            if self._said_not_enough != round_:
                self._said_not_enough = round_
                reported = len({m.broker_id for m in members if m.round == round_})
                log.warning(
                    "ha_zk.not_enough_members",
                    message=NOT_ENOUGH,
                    reported=reported,
                    quorum=self.settings.quorum,
                    replicas=self.settings.replicas,
                )
            return None
        assert self.identity is not None
        if winner.broker_id != self.identity.broker_id:
            return None
        sent_at = time.monotonic()
        epoch = await self.session.call(
            election.take_mastership, client, root, round_, version, self._payload(mine)
        )
        if epoch is not None:
            self.lease.proven(sent_at)
            log.info("ha_zk.elected", epoch=epoch, position=list(mine), round=round_)
        return epoch

    async def _report(self, store: Any, round_: int) -> election.Position | None:
        """Publish this member's position for ``round_`` (creating its node if needed);
        None (nothing reported) while the position is not known."""
        mine = await self._position(store)
        if mine is not None:
            await self._write_member({**self._payload(mine), "round": round_})
        return mine

    async def _position(self, store: Any) -> election.Position | None:
        """(log epoch, log file, offset), or None while a replica's sync locks the log out."""
        end = await trio.to_thread.run_sync(store.position)
        if end is None:
            return None
        return (position.load(self.settings.data_dir), end[0], end[1])

    async def _save_epoch(self, epoch: int) -> None:
        """Save the log epoch durably, in a worker thread: its fsync took seconds on a busy
        disk, and on the trio thread it froze every connection meanwhile."""
        await trio.to_thread.run_sync(position.save, self.settings.data_dir, epoch)

    def _payload(self, mine: election.Position) -> dict[str, Any]:
        assert self.identity is not None
        return {
            "id": self.identity.broker_id,
            "position": list(mine),
            "url": self.status.url,
            "replication": self._replication_text(),
        }

    async def _write_member(self, payload: dict[str, Any]) -> None:
        client, members = self.session.client, group.paths(self.settings.zk_path)["members"]
        data = election.encode(payload)
        if self._member_path is not None:
            try:
                await self.session.call(client.set, self._member_path, data)
                return
            except NoNodeError:
                self._member_path = None  # the session expired: register again
        self._member_path = await self.session.call(
            client.create, f"{members}/m-", data, ephemeral=True, sequence=True
        )

    # --- following -----------------------------------------------------------------------------

    async def _follow(self, store: Any, master: Master) -> None:
        log.info("ha_zk.following", master=master.broker_id, epoch=master.epoch, url=master.url)
        mine = await self._position(store)
        if mine is not None:
            await self._write_member({**self._payload(mine), "round": -1})
        replicator = store.replicator
        if replicator.role != "client":
            if not await self._join_replication(store, master):
                return
        else:
            replicator.caught_up.clear()
        caught_up = False
        last_progress = 0.0
        while True:
            await self.session.changed(FOLLOW_POLL)
            if await self._master_dead(store, master):
                return
            now = await self.session.call(
                election.read_master,
                self.session.client,
                self.settings.zk_path,
                self.session.watch,
            )
            if now != master and (now is None or now.epoch != master.epoch):
                log.info("ha_zk.master_changed", previous=master.broker_id, epoch=master.epoch)
                return
            master = now or master
            self.status.master = master
            mine = await self._position(store)
            if mine is None:
                continue  # the sync holds the log; the next turn reads it
            if not caught_up and replicator.caught_up.is_set():
                caught_up = True
                await self._save_epoch(master.epoch)
                log.info("ha_zk.caught_up", epoch=master.epoch, position=list(mine[1:]))
            elif not caught_up and time.monotonic() - last_progress >= 1.0:
                last_progress = time.monotonic()
                log.info(
                    "ha_zk.catching_up",
                    position=list(mine[1:]),
                    master_position=list(master.position[1:]) if master.position else None,
                )
            await self._write_member({**self._payload(mine), "round": -1})

    async def _master_dead(self, store: Any, master: Master) -> bool:
        """Fast failover (:mod:`.liveness`): our replication connection to the master is
        down and nothing listens on its address any more, so it can never write again: end
        its mastership in ZooKeeper now instead of waiting for its session to expire."""
        sites = await trio.to_thread.run_sync(store.replication_sites)
        if any(site["address"] == master.replication and site["connected"] for site in sites):
            return False
        host, _, port = master.replication.rpartition(":")
        if not await trio.to_thread.run_sync(liveness.master_gone, (host, int(port))):
            return False
        ended = await self.session.call(
            election.end_mastership, self.session.client, self.settings.zk_path, master
        )
        log.info(
            "ha_zk.master_gone",
            master=master.broker_id,
            epoch=master.epoch,
            replication=master.replication,
            ended_here=ended,
        )
        return True

    async def _join_replication(self, store: Any, master: Master) -> bool:
        """Start as a Berkeley DB client; False if the master changed before it let us in."""
        client, root = self.session.client, self.settings.zk_path
        # Sites that registered after us (the master among them) are our helpers to join.
        sites = await self.session.call(group.site_addresses, client, root)
        host, _, port = master.replication.rpartition(":")
        await trio.to_thread.run_sync(
            store.add_replication_peers, tuple(dict.fromkeys([(host, int(port)), *sites]))
        )
        while True:
            give_up_at = time.monotonic() + JOIN_ATTEMPT
            try:
                await trio.to_thread.run_sync(store.start_replica, give_up_at)
                log.info("ha_zk.replica_started", master=master.replication)
                return True
            except StoreError as error:
                log.info("ha_zk.waiting_for_master", master=master.replication, error=str(error))
            now = await self.session.call(election.read_master, client, root)
            if now is None or now.epoch != master.epoch:
                return False

    # --- leading -------------------------------------------------------------------------------

    async def _lead(self, broker: BrokerAPI, store: Any, epoch: int) -> None:
        await self._save_epoch(epoch)
        log.info("ha_zk.starting_master", epoch=epoch)
        lost = self.session.lost
        try:
            await trio.to_thread.run_sync(store.start_master)
        except StoreError as error:
            # Replication kept the store busy past the promotion's retries: give the
            # mastership back (the next election picks again), never exit on a busy store.
            log.warning("ha_zk.start_master_failed", epoch=epoch, error=str(error))
            await self._give_up_mastership(broker, store, "the store could not open as master")
            return
        log.info("ha_zk.replication_master", epoch=epoch)
        await self._wait_for_sites(store, lost)
        # Waiting for sites (and a slow role change) may outlast the lease proven when we won:
        # prove it again, and that we are still master, before serving.
        if not lost.is_set() and await self._prove_mastership(epoch):
            try:
                await broker.promote(epoch)
            except MastershipLost as error:
                # Our session went while recovery ran and a new master was elected: its
                # replication demoted our store. Give up; the broker never served.
                log.warning("ha_zk.promotion_lost", epoch=epoch, error=str(error))
                await self._give_up_mastership(broker, store, "demoted during promotion")
                return
            log.info("ha_zk.promoted", epoch=epoch, url=self.status.url)
            await broker.start_service(self._quorum_watch(broker, store, epoch))
            await self._hold_mastership(broker, epoch, lost)
        reason = "ZooKeeper session or connection lost" if lost.is_set() else "master node lost"
        await self._give_up_mastership(broker, store, reason)

    async def _give_up_mastership(self, broker: BrokerAPI, store: Any, reason: str) -> None:
        """Leave mastership, however far it got, and be a replica whose store can rejoin.

        A promoted broker fences (the journal stops before anything else; the store closes).
        One that lost its election before promotion serves nobody, so the broker does not
        fence: the store is Berkeley DB master all the same, and is restarted here, or it
        would fight the next master (DUPMASTER) and write through handles replication kills.
        """
        self.lease.forget()
        if broker.role is Role.MASTER:
            await broker.fence(reason, keep_listening=True)
        else:
            log.warning("ha_zk.mastership_dropped_before_promotion", reason=reason)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(store.restart_replication)
        self.status.master = None  # it was us: redirect to nobody until the next master is read
        broker.unblock_publishers(BLOCK_NAME)
        self._member_path = None
        await broker.become(Role.REPLICA)
        await broker.open_store()
        await broker.serve_clients()

    async def _wait_for_sites(self, store: Any, lost: trio.Event) -> None:
        """A fresh group's master counts itself as a quorum until the others joined: wait."""
        wanted = self.settings.replicas - 1
        said = False
        while not lost.is_set():
            sites = await trio.to_thread.run_sync(store.replication_sites)
            if len(sites) >= wanted:
                return
            if not said:
                said = True
                log.info("ha_zk.waiting_for_replicas", joined=len(sites), wanted=wanted)
            with trio.move_on_after(0.2):
                await lost.wait()

    async def _hold_mastership(self, broker: BrokerAPI, epoch: int, lost: trio.Event) -> None:
        """Return when the session is lost (at once) or our master node is gone."""
        while not lost.is_set():
            with trio.move_on_after(MASTERSHIP_POLL):
                await lost.wait()
            if lost.is_set() or not await self._prove_mastership(epoch):
                return

    async def _prove_mastership(self, epoch: int) -> bool:
        """Read the master node: still ours (``epoch``)? If so the lease is proven anew."""
        sent_at = time.monotonic()
        try:
            now = await self.session.call(
                election.read_master, self.session.client, self.settings.zk_path
            )
        except KazooException:
            return False
        if now is None or now.epoch != epoch:
            return False
        self.lease.proven(sent_at)
        return True

    def _quorum_watch(self, broker: BrokerAPI, store: Any, epoch: int) -> Any:
        """A master service: block publishers below quorum; publish position and lag."""
        strategy = self

        async def quorum_watch(task_status: trio.TaskStatus[None]) -> None:
            blocked = False
            task_status.started()
            try:
                # Runs until the role changes; a fence cancels it only after closing the
                # connections, so it checks the role itself: a fenced master must never
                # reclaim replication or touch the master node.
                while broker.role is Role.MASTER:
                    await strategy._reclaim_if_demoted(store, epoch)
                    sites = await trio.to_thread.run_sync(store.replication_sites)
                    connected = 1 + sum(1 for s in sites if s["connected"])
                    below = connected < strategy.settings.quorum
                    if below and not blocked:
                        reason = (
                            f"{NOT_ENOUGH}: {connected} of {strategy.settings.replicas} brokers "
                            f"connected, {strategy.settings.quorum} needed to confirm"
                        )
                        broker.block_publishers(BLOCK_NAME, reason)
                        log.warning("ha_zk.below_quorum", connected=connected, epoch=epoch)
                    elif blocked and not below:
                        broker.unblock_publishers(BLOCK_NAME)
                        log.info("ha_zk.quorum_back", connected=connected, epoch=epoch)
                    blocked = below
                    await strategy._publish_master(store, epoch, sites)
                    await trio.sleep(0.2)
            finally:
                broker.unblock_publishers(BLOCK_NAME)

        return quorum_watch

    async def _reclaim_if_demoted(self, store: Any, epoch: int) -> None:
        """Be Berkeley DB's master again if replication demoted our store while we hold the
        ZooKeeper mastership (a paused old master resumed and talked to us as master: DUPMASTER,
        or its NEWMASTER made us its client). Only while the lease proves we are master."""
        demoted = store.replicator.demoted.is_set()
        if not demoted and await trio.to_thread.run_sync(store.is_replication_master):
            return
        if not self.lease.valid():
            return  # not proven master right now: never take replication from anyone
        log.warning("ha_zk.reclaiming_replication_master", epoch=epoch)
        await trio.to_thread.run_sync(store.reclaim_master)

    async def _publish_master(self, store: Any, epoch: int, sites: list[dict[str, Any]]) -> None:
        """Keep the master node's position (replicas log their lag against it) and status."""
        mine = await self._position(store)
        if mine is None:
            return  # a role change holds the log for a moment
        payload = {**self._payload(mine), "epoch": epoch}
        self.status.master = Master(
            payload["id"], epoch, self.status.url, payload["replication"], mine
        )
        sent_at = time.monotonic()
        try:
            owned = await self.session.call(
                election.update_master, self.session.client, self.settings.zk_path, payload
            )
            if not owned:
                # Not our node any more: confirm nothing from now on; _hold_mastership fences.
                self.lease.forget()
                return
            self.lease.proven(sent_at)
            members = await self.session.call(
                election.read_members, self.session.client, self.settings.zk_path
            )
        except KazooException:
            return
        self.status.update_master(mine, sites, members)


#: Berkeley DB events not worth a log line: a retry to a dead site every half second.
_QUIET_EVENTS = frozenset({"REP_CONNECT_TRY_FAILED"})


def log_replication_event(name: str, info: Any) -> None:
    """Log Berkeley DB's replication events (a Berkeley DB thread calls this): role changes,
    connections made and broken, a finished sync; they tell a failover's story."""
    if name not in _QUIET_EVENTS:
        log.info("ha_zk.replication_event", bdb_event=name)


def replicated_store(broker: BrokerAPI) -> Any:
    """The broker's store, if it can be replicated (store_bdb in replication mode)."""
    store = broker.store
    if getattr(store, "replicator", None) is None:
        raise ConfigError(
            f"--ha zookeeper needs the Berkeley DB store (--store bdb), not {store.name!r}: "
            "its replication keeps the brokers' stores identical"
        )
    return store


def advertised_url(broker: BrokerAPI) -> str | None:
    """``amqp://host:port/`` of the broker's first TCP listener."""
    for address in broker.addresses:
        if address.startswith("tcp://"):
            return "amqp://" + address.removeprefix("tcp://") + "/"
    return None
