"""The file-level decisions of the election: take the lease, renew it, give it back.

Blocking file operations only (the strategy runs them in worker threads); no trio, no broker.

**Who may take the lease** (a standby, under ``takeover.lock`` so two standbys never both do):

* there is no lease, or it is marked released, or it names this very process;
* this standby got ``master.lock`` and the lease says its holder held that lock: a POSIX lock
  is dropped only when its holder process ends (or, on NFS, when the server expires a client
  that stopped renewing, which the holder notices and fences at its own lease time first);
* the lease content has not changed for a whole lease time as seen by this standby's
  monotonic clock: the holder stopped renewing (paused, hung, partitioned). This is how a
  standby replaces a SIGSTOPped master that still holds ``master.lock``; the new master then
  holds the lease without the lock (``locked: false``) until the old holder lets go of it.

**Why the old master cannot confirm after that**: it counts its lease valid until *the start
of its last successful renewal* plus the lease time. A standby starts counting no earlier than
when it first saw that renewal, so the old master's validity always ends before a standby can
break the lease, on any clock rate both share.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from plugmq.api import ConfigError
from plugmq_ha_sharedfs import lease as lease_file
from plugmq_ha_sharedfs.directory import SharedDirectory
from plugmq_ha_sharedfs.filelock import RecordLock
from plugmq_ha_sharedfs.lease import ForeignLease, Holder, Lease, LeaseError


class ForeignGroup(ConfigError):
    """The directory belongs to another group or plugmq version: stop, touch nothing."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one look at the lease by a standby."""

    #: The epoch this broker is now master of, or None to keep waiting.
    epoch: int | None
    #: The lease as read (None: absent or unreadable).
    current: Lease | None
    #: Why (for the log): "free", "released", "holder dead", "expired", or why not.
    reason: str
    #: The lease file's problem, when it is not a valid lease.
    problem: str | None = None


@dataclass(frozen=True)
class Renewal:
    """The outcome of one renewal by the master: ``lost`` says why mastership is gone."""

    lost: str | None = None
    error: str | None = None


class Election:
    """One broker's view of the lease, its two locks and its validity clock."""

    def __init__(
        self, directory: SharedDirectory, group: str, lease_seconds: float, me: Holder
    ) -> None:
        self.directory = directory
        self.group = group
        self.lease_seconds = lease_seconds
        self.me = me
        self.version = ""
        self.master_lock = RecordLock(directory.master_lock)
        self.takeover_lock = RecordLock(directory.takeover_lock)
        #: The lease we hold (None as standby) and the bytes we last wrote.
        self.mine: Lease | None = None
        self._written = b""
        #: Monotonic time until which our lease is surely ours (0: not master).
        self.valid_until = 0.0
        self._seen_raw: bytes | None = None
        self._seen_at = 0.0
        self._highest_epoch = 0
        #: The last lease seen that is not ours (for ``describe`` and the standby's log).
        self.last_seen: Lease | None = None

    @property
    def path(self) -> Path:
        """The lease file."""
        return self.directory.lease

    def valid(self, margin: float = 0.0) -> bool:
        """True while our lease is surely ours for at least ``margin`` more seconds."""
        return time.monotonic() + margin < self.valid_until

    def lease_age(self) -> float | None:
        """Seconds since the lease was last renewed (ours) or last changed (as seen here)."""
        if self.mine is not None:
            return time.monotonic() - (self.valid_until - self.lease_seconds)
        return None if self._seen_raw is None else time.monotonic() - self._seen_at

    # -- standby --------------------------------------------------------------------------------

    def consider(self) -> Decision:
        """Look at the lease once; take it when allowed (see the module docstring)."""
        got_lock = self.master_lock.try_acquire()
        if not self.takeover_lock.try_acquire():
            return Decision(None, self.last_seen, "another standby is deciding")
        try:
            decision = self._decide(got_lock)
        finally:
            self.takeover_lock.release()
        if decision.epoch is None and got_lock and decision.current is not None:
            # A live holder that broke in without the lock must be able to take it.
            self.master_lock.release()
        return decision

    def _decide(self, got_lock: bool) -> Decision:
        raw = lease_file.read_raw(self.path)
        now = time.monotonic()
        if raw != self._seen_raw:
            self._seen_raw, self._seen_at = raw, now
        if raw is None:
            return self._take(got_lock, None, "no lease yet")
        try:
            current = lease_file.parse(raw, self.path)
        except ForeignLease as error:
            raise ForeignGroup(str(error)) from None
        except LeaseError as error:
            if now - self._seen_at >= self.lease_seconds:
                return self._take(got_lock, None, "unreadable lease unchanged for a lease time")
            return Decision(None, None, "unreadable lease", problem=str(error))
        return self._judge(got_lock, current, now - self._seen_at)

    def _judge(self, got_lock: bool, current: Lease, unchanged: float) -> Decision:
        if current.group != self.group:
            raise ForeignGroup(
                f"{self.directory.data_dir} is the data directory of HA group "
                f"'{current.group}' ({current.describe()}); this broker is in group "
                f"'{self.group}': give it its own --data-dir or the same --ha-group"
            )
        self.last_seen = current
        self._highest_epoch = max(self._highest_epoch, current.epoch)
        if current.holder.nonce == self.me.nonce:
            return self._take(got_lock, current, "the lease is our own")
        if current.released:
            return self._take(got_lock, current, "the master released it")
        if got_lock and current.locked:
            return self._take(got_lock, current, "its holder let go of master.lock")
        if unchanged >= max(self.lease_seconds, current.lease_seconds):
            return self._take(got_lock, current, f"not renewed for {unchanged:.1f}s")
        return Decision(None, current, "held")

    def _take(self, got_lock: bool, current: Lease | None, reason: str) -> Decision:
        start = time.monotonic()
        epoch = max(self._highest_epoch, self.directory.read_epoch()) + 1
        self.directory.write_epoch(epoch)
        now = time.time()
        mine = Lease(
            self.group, epoch, self.me, now, now, 0, self.lease_seconds, got_lock,
            version=self.version,
        )  # fmt: skip
        self._written = lease_file.write(self.path, mine)
        self.mine, self._highest_epoch = mine, epoch
        self.valid_until = start + self.lease_seconds
        return Decision(epoch, current, reason)

    # -- master ---------------------------------------------------------------------------------

    def renew(self) -> Renewal:
        """Renew our lease, or say why it is lost (someone else's lease, a pause)."""
        assert self.mine is not None
        start = time.monotonic()
        try:
            raw = lease_file.read_raw(self.path)
        except OSError as error:
            return Renewal(error=f"cannot read {self.path}: {error.strerror}")
        if raw != self._written:
            return Renewal(lost=self._why_changed(raw))
        if not self.valid():
            return Renewal(lost="the lease expired before it could be renewed (paused?)")
        locked = self.mine.locked or self.master_lock.try_acquire()
        renewed = self.mine.renewed(locked=locked)
        try:
            written = lease_file.write(self.path, renewed)
        except OSError as error:
            return Renewal(error=f"cannot write {self.path}: {error.strerror}")
        if not self.valid():
            return Renewal(lost="paused while renewing: the lease expired meanwhile")
        self.mine, self._written = renewed, written
        self.valid_until = start + self.lease_seconds
        return Renewal()

    def _why_changed(self, raw: bytes | None) -> str:
        if raw is None:
            return f"the lease file {self.path} was removed"
        try:
            other = lease_file.parse(raw, self.path)
        except LeaseError as error:
            return f"the lease file was changed by someone else: {error}"
        self.last_seen = other
        if self.mine is not None and other.epoch > self.mine.epoch:
            return f"a newer epoch took over: {other.describe()}"
        return f"the lease file was changed by someone else: {other.describe()}"

    def give_up(self, *, mark_released: bool) -> None:
        """Stop being master: invalidate at once; mark the lease released if it is still
        ours (a clean hand-over: a standby takes over at once); drop ``master.lock``."""
        self.valid_until = 0.0
        try:
            if mark_released and self.mine is not None and self.takeover_lock.try_acquire():
                try:
                    if lease_file.read_raw(self.path) == self._written:
                        released = replace(self.mine, released=True)
                        self._written = lease_file.write(self.path, released)
                finally:
                    self.takeover_lock.release()
        finally:
            self.mine = None
            self.master_lock.release()
