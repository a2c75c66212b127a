"""The election's file-level rules on a real directory, without brokers.

POSIX locks belong to a process, so "another broker holds master.lock" is a child process
holding it. Lease times are short (0.5 s): waiting them out is the behaviour under test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from plugmq_ha_sharedfs import filesystems
from plugmq_ha_sharedfs import lease as lease_file
from plugmq_ha_sharedfs.directory import SharedDirectory
from plugmq_ha_sharedfs.election import Election, ForeignGroup
from plugmq_ha_sharedfs.lease import Holder, Lease

LEASE = 0.5
HOLD_LOCK = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    print("locked", flush=True)
    sys.stdin.read()
    """
)


@pytest.fixture
def directory(tmp_path: Path) -> SharedDirectory:
    shared = SharedDirectory(tmp_path)
    shared.prepare()
    return shared


@pytest.fixture
def lock_held_elsewhere(directory: SharedDirectory) -> Iterator[subprocess.Popen]:
    """Another process holds master.lock (a paused master, say) until the test ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(directory.master_lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    yield holder
    holder.kill()
    holder.wait()


def election(directory: SharedDirectory, name: str, group: str = "g") -> Election:
    return Election(directory, group, LEASE, Holder("host", 1, f"amqp://{name}:5672/", name))


def foreign_lease(epoch: int = 1, *, locked: bool = True, **changes: object) -> Lease:
    other = Holder("elsewhere", 99, "amqp://other:5672/", "other-nonce")
    lease = Lease("g", epoch, other, time.time(), time.time(), 0, LEASE, locked)
    return replace(lease, **changes)


def consider_until_taken(candidate: Election, timeout: float = 5.0) -> tuple[int, float]:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        decision = candidate.consider()
        if decision.epoch is not None:
            return decision.epoch, time.monotonic() - start
        time.sleep(0.02)
    raise TimeoutError("never took the lease")


def test_first_broker_takes_epoch_one_and_a_second_waits(
    directory: SharedDirectory, lock_held_elsewhere: subprocess.Popen
) -> None:
    # Both elections live in this process, which shares POSIX locks: the lock is held by
    # another process so that neither decides by it.
    first, second = election(directory, "a"), election(directory, "b")
    assert first.consider().epoch == 1
    decision = second.consider()
    assert decision.epoch is None and decision.current.holder.url == "amqp://a:5672/"


def test_a_lease_renewed_with_a_wild_wall_clock_is_never_taken(
    directory: SharedDirectory, lock_held_elsewhere: subprocess.Popen
) -> None:
    """Clock jumps: only the lease changing matters, never its timestamps."""
    standby = election(directory, "b")
    lease = foreign_lease(since=4e9, renewed_at=4e9)  # the holder's clock is in 2096
    deadline = time.monotonic() + 3 * LEASE
    while time.monotonic() < deadline:
        lease = replace(lease.renewed(), renewed_at=0.0)  # ...and now in 1970
        lease_file.write(directory.lease, lease)
        assert standby.consider().epoch is None
        time.sleep(LEASE / 5)


def test_a_lease_frozen_for_the_lease_time_is_taken_without_the_lock(
    directory: SharedDirectory, lock_held_elsewhere: subprocess.Popen
) -> None:
    lease_file.write(directory.lease, foreign_lease(epoch=4, renewed_at=4e9))
    standby = election(directory, "b")
    epoch, waited = consider_until_taken(standby)
    assert epoch == 5 and waited >= LEASE
    taken = lease_file.parse(directory.lease.read_bytes(), directory.lease)
    assert taken.holder.nonce == "b" and taken.locked is False
    assert directory.read_epoch() == 5


def test_a_released_lease_is_taken_at_once(
    directory: SharedDirectory, lock_held_elsewhere: subprocess.Popen
) -> None:
    lease_file.write(directory.lease, foreign_lease(epoch=2, released=True))
    epoch, waited = consider_until_taken(election(directory, "b"))
    assert epoch == 3 and waited < LEASE


def test_a_locked_lease_whose_lock_is_free_is_taken_at_once(directory: SharedDirectory) -> None:
    """The holder's process ended (kill -9): the kernel dropped its lock."""
    lease_file.write(directory.lease, foreign_lease(epoch=2, locked=True))
    epoch, waited = consider_until_taken(election(directory, "b"))
    assert epoch == 3 and waited < LEASE


def test_the_master_loses_to_a_newer_epoch_and_to_garbage(directory: SharedDirectory) -> None:
    master = election(directory, "a")
    assert master.consider().epoch == 1
    assert master.renew().lost is None and master.valid()
    lease_file.write(directory.lease, foreign_lease(epoch=2))
    assert "a newer epoch took over" in master.renew().lost
    directory.lease.write_text("{ broken")
    assert "changed by someone else" in master.renew().lost


def test_a_master_paused_past_its_lease_does_not_renew(directory: SharedDirectory) -> None:
    master = election(directory, "a")
    assert master.consider().epoch == 1
    time.sleep(LEASE * 1.2)  # the pause
    assert not master.valid()
    assert "expired" in master.renew().lost


def test_a_clean_give_up_marks_the_lease_released(directory: SharedDirectory) -> None:
    master = election(directory, "a")
    master.consider()
    master.give_up(mark_released=True)
    released = lease_file.parse(directory.lease.read_bytes(), directory.lease)
    assert released.released and not master.valid() and not master.master_lock.held


def test_another_group_is_refused(directory: SharedDirectory) -> None:
    lease_file.write(directory.lease, foreign_lease(group="payments"))
    with pytest.raises(ForeignGroup, match="HA group 'payments'"):
        election(directory, "b").consider()


@pytest.mark.parametrize(
    ("fstype", "options", "unsafe", "shared"),
    [
        ("ext4", "rw,relatime", False, False),
        ("nfs4", "rw,vers=4.2,hard", False, True),
        ("nfs", "rw,vers=3,hard", False, True),
        ("nfs", "rw,vers=3,nolock", True, True),
        ("nfs4", "rw,vers=4.1,local_lock=posix", True, True),
        ("cifs", "rw,nobrl", True, True),
        ("cifs", "rw", False, True),
        ("fuse.sshfs", "rw", True, True),
    ],
)
def test_filesystems_whose_locks_exclude_other_hosts(
    tmp_path: Path, fstype: str, options: str, unsafe: bool, shared: bool
) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/sda1 / ext4 rw 0 0\nsrv:/x {tmp_path} {fstype} {options} 0 0\n")
    mount = filesystems.mount_of(tmp_path / "data", mounts)
    assert mount is not None and mount.fstype == fstype
    verdict = filesystems.judge(mount)
    assert (verdict.unsafe, verdict.shared) == (unsafe, shared), verdict.reason
