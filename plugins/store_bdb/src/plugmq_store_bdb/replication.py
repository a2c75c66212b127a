"""Berkeley DB replication (its Replication Manager) for a store in an HA group.

The store keeps working as usual; this module adds what an HA plugin (``ha_zk``) drives:

* :class:`ReplicationSettings`: this site's replication address and its peers'.
* :class:`Replicator`: configures the environment before it is opened (``DB_INIT_REP``,
  repmgr sites, ack policy ``QUORUM``, **elections off**: the HA plugin, not Berkeley DB,
  decides who is master), starts it as a client (a replica receiving the master's log, catching
  up by log or by a full copy, Berkeley DB's "internal init") or as the master, and watches
  Berkeley DB's events from its own threads.

Durability: a master's commit waits for acknowledgements from a quorum of the group's electable
sites (``DB_REPMGR_ACKS_QUORUM``). When they do not arrive within the ack timeout the commit
still succeeds locally and Berkeley DB fires ``DB_EVENT_REP_PERM_FAILED`` in the committing
thread; :meth:`Replicator.take_perm_failure` reports that, and the store turns it into
:class:`plugmq.store.NotReplicated` so the journal nacks the batch instead of confirming it.

Position: Berkeley DB keeps log sequence numbers identical on every site of a group, so the end
of a site's log (``log_stat``'s file and offset) says how much of the master's log it holds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from berkeleydb import db

log = structlog.get_logger("plugmq.store_bdb.replication")

#: Environment flags a replicated store adds to the usual ones.
REP_FLAGS = db.DB_INIT_REP
CONNECTION_RETRY_MICROSECONDS = 500_000
_BROKEN = (db.DB_EVENT_REP_CONNECT_BROKEN, db.DB_EVENT_REP_MASTER_FAILURE)
_EVENT_NAMES = {
    getattr(db, name): name.removeprefix("DB_EVENT_")
    for name in dir(db)
    if name.startswith("DB_EVENT_")
}


@dataclass(frozen=True)
class ReplicationSettings:
    """Where this site listens for its peers (repmgr's own TCP) and where they listen."""

    local: tuple[str, int]
    peers: tuple[tuple[str, int], ...] = ()
    #: How long a commit waits for the quorum's acknowledgements before PERM_FAILED.
    ack_timeout: float = 2.0
    #: repmgr's message threads.
    threads: int = 3
    #: Called (from a Berkeley DB thread) with an event name for the HA plugin's log/status.
    on_event: Callable[[str, Any], None] | None = field(default=None, compare=False)


class Replicator:
    """The replication side of one :class:`~plugmq_store_bdb.store.BDBStore`'s environment."""

    def __init__(self, settings: ReplicationSettings) -> None:
        self.settings = settings
        #: The other sites to contact (an HA plugin may add the ones it discovered before open).
        self.peers: tuple[tuple[str, int], ...] = settings.peers
        self.role = "none"  # "client" or "master" once started
        self._local = threading.local()
        self._lock = threading.Lock()
        #: Set when a client has caught up with its master (STARTUPDONE).
        self.caught_up = threading.Event()
        self.perm_failures = 0
        self.last_event = ""
        #: Set when Berkeley DB demoted this master to client because another master talked to
        #: it (DUPMASTER: a paused old master resuming). The HA plugin decides who is master:
        #: it calls :meth:`start_master` again if it still holds the mastership.
        self.demoted = threading.Event()
        #: Called (from a Berkeley DB thread, must not block) when a replication connection
        #: breaks: an HA plugin checks at once whether the master is gone (fast failover).
        self.on_connection_broken: Callable[[], None] | None = None

    # --- before open ---------------------------------------------------------------------------

    def configure(self, env: db.DBEnv) -> None:
        """Configure repmgr on an environment that is not open yet."""
        host, port = self.settings.local
        site = env.repmgr_site(host, port)
        site.set_config(db.DB_LOCAL_SITE, True)
        site.close()
        for peer_host, peer_port in self.peers:
            peer = env.repmgr_site(peer_host, peer_port)
            peer.set_config(db.DB_BOOTSTRAP_HELPER, True)
            peer.close()
        env.rep_set_config(db.DB_REPMGR_CONF_ELECTIONS, False)
        # A client's call that would wait for its sync to finish raises DB_REP_LOCKOUT at
        # once instead: a replica whose master died mid-sync must not block its HA plugin's
        # thread until that master comes back (it never may). A master waits (start_master).
        env.rep_set_config(db.DB_REP_CONF_NOWAIT, True)
        # Batch log records into fewer messages: ~6x more commits per second with 3 sites.
        env.rep_set_config(db.DB_REP_CONF_BULK, True)
        env.repmgr_set_ack_policy(db.DB_REPMGR_ACKS_QUORUM)
        env.rep_set_timeout(db.DB_REP_ACK_TIMEOUT, int(self.settings.ack_timeout * 1_000_000))
        # repmgr retries a lost connection after this (30 s by default): a site back from a
        # restart rejoins within a second, and closing the environment (which waits for
        # repmgr's threads, one of them sleeping until the next retry) takes a second, not 30.
        env.rep_set_timeout(db.DB_REP_CONNECTION_RETRY, CONNECTION_RETRY_MICROSECONDS)
        # A master's checkpoint otherwise sleeps 30 s (DB_REP_CHECKPOINT_DELAY) before its log
        # record, in the calling thread: the journal writer's periodic checkpoint and the
        # store's close would stall that long. Clients then checkpoint on their own schedule.
        env.rep_set_timeout(db.DB_REP_CHECKPOINT_DELAY, 0)
        env.set_event_notify(self._event)

    def add_peers(self, env: db.DBEnv, peers: tuple[tuple[str, int], ...]) -> None:
        """Make sites learnt after the environment opened known to repmgr (as helpers).

        A broker that registered first in a new group knew no peer when it opened; without a
        helper it can never join a master as a client (``DB_REP_UNAVAIL``). Berkeley DB accepts
        new sites on an open environment before ``repmgr_start``.
        """
        local = self.settings.local
        for host, port in peers:
            if (host, port) in self.peers or (host, port) == local:
                continue
            site = env.repmgr_site(host, port)
            site.set_config(db.DB_BOOTSTRAP_HELPER, True)
            site.close()
            self.peers = (*self.peers, (host, port))

    # --- roles ---------------------------------------------------------------------------------

    def start_client(self, env: db.DBEnv, give_up_at: float) -> None:
        """Join the group as a client (blocking; retried until a master lets us join).

        Raises ``db.DBRepUnavailError`` if no master accepted us by ``give_up_at``
        (``time.monotonic()``); the caller retries or reports.
        """
        self.caught_up.clear()
        env.rep_set_config(db.DB_REP_CONF_NOWAIT, True)
        while True:
            try:
                env.repmgr_start(self.settings.threads, db.DB_REP_CLIENT)
            except db.DBRepUnavailError:
                if time.monotonic() >= give_up_at:
                    raise
                time.sleep(0.2)
                continue
            self.role = "client"
            return

    def start_master(self, env: db.DBEnv) -> None:
        """Become the group's master (the HA plugin won the election)."""
        # With elections off, repmgr_start may be called again to change the role.
        self.demoted.clear()
        # A master's own lockouts (while it serves a joining replica's initial sync, say) are
        # short: wait them out rather than fail recovery and writes with DB_REP_LOCKOUT.
        env.rep_set_config(db.DB_REP_CONF_NOWAIT, False)
        env.repmgr_start(self.settings.threads, db.DB_REP_MASTER)
        self.role = "master"

    @staticmethod
    def is_master(env: db.DBEnv) -> bool:
        """Is this site Berkeley DB's replication master right now (asks the environment)?"""
        try:
            return int(env.rep_stat().get("status", 0)) == db.DB_REP_MASTER
        except db.DBError:
            return False

    # --- during commits ------------------------------------------------------------------------

    def arm(self) -> None:
        """Before a commit, in the committing thread: forget earlier PERM_FAILED events."""
        self._local.failed = False

    def take_perm_failure(self) -> bool:
        """After a commit, in the same thread: did its acknowledgements fail to arrive?"""
        failed = getattr(self._local, "failed", False)
        self._local.failed = False
        return failed

    def _event(self, env: db.DBEnv, event: int, info: Any) -> None:
        """Berkeley DB's event callback (its own threads, or the committing one)."""
        name = _EVENT_NAMES.get(event, str(event))
        if event == db.DB_EVENT_REP_PERM_FAILED:
            self._local.failed = True
            with self._lock:
                self.perm_failures += 1
            return  # fires per transaction below quorum: not worth a log line each
        if event == db.DB_EVENT_REP_STARTUPDONE:
            self.caught_up.set()
        elif event == db.DB_EVENT_REP_DUPMASTER:
            self.demoted.set()
        elif event in _BROKEN and self.on_connection_broken is not None:
            self.on_connection_broken()
        self.last_event = name
        if self.settings.on_event is not None:
            self.settings.on_event(name, info)

    # --- status --------------------------------------------------------------------------------

    @staticmethod
    def position(env: db.DBEnv) -> tuple[int, int] | None:
        """The end of this site's log: (file, offset), identical LSNs on every site; None
        while a sync locks the log out (the position is then not known, not "low")."""
        try:
            stat = env.log_stat()
        except db.DBRepLockoutError:
            return None
        return (int(stat["cur_file"]), int(stat["cur_offset"]))

    @staticmethod
    def sites(env: db.DBEnv) -> list[dict[str, Any]]:
        """The group's other sites as repmgr knows them (host, port, connected)."""
        found = []
        for entry in env.repmgr_site_list().values():
            host, port = entry[0], int(entry[1])
            status = entry[2] if len(entry) > 2 else None
            found.append(
                {"address": f"{host}:{port}", "connected": status == db.DB_REPMGR_CONNECTED}
            )
        return found
