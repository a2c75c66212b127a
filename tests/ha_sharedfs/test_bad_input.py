"""Bad shared directories and lease files: a clear error, no corruption, never two writers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.sharedfs import SharedFSGroup, log_time


def run_broker(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run a broker that is expected to refuse to start; return its exit and output."""
    command = [sys.executable, "-m", "plugmq", "broker", "--interface", "127.0.0.1"]
    command += ["--port", "0", "--data-dir", str(data_dir), "--ha", "sharedfs", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def test_a_lease_of_another_plugmq_version_stops_the_broker(tmp_path: Path) -> None:
    (tmp_path / "ha").mkdir()
    lease = {"format": "plugmq-ha-sharedfs/99", "epoch": 7}
    (tmp_path / "ha" / "lease.json").write_text(json.dumps(lease))
    result = run_broker(tmp_path)
    assert result.returncode != 0
    assert "a broker of another plugmq version uses this directory" in result.stderr
    assert json.loads((tmp_path / "ha" / "lease.json").read_text()) == lease, "lease touched"
    assert not (tmp_path / "bdb").exists(), "the store was opened"


def test_a_data_directory_that_is_a_file_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a directory")
    result = run_broker(data)
    assert result.returncode != 0
    assert "is not a directory" in result.stderr


def test_sharedfs_needs_the_durable_store(tmp_path: Path) -> None:
    result = run_broker(tmp_path, "--store", "memory")
    assert result.returncode == 2
    assert "--ha sharedfs needs the durable store" in result.stderr


def test_a_bad_lease_time_is_refused(tmp_path: Path) -> None:
    result = run_broker(tmp_path, "--ha-lease", "0.1")
    assert result.returncode == 2
    assert "--ha-lease must be at least" in result.stderr


@pytest.mark.timeout(60)
def test_a_broker_of_another_group_is_refused(tmp_path: Path) -> None:
    group = SharedFSGroup(tmp_path, size=1)
    master = group.start()
    try:
        result = run_broker(group.data_dir, "--ha-group", "payments")
        assert result.returncode == 2
        assert "is the data directory of HA group 'test-group'" in result.stderr
        assert "this broker is in group 'payments'" in result.stderr
        assert master.alive
        lease = json.loads((group.data_dir / "ha" / "lease.json").read_text())
        assert lease["holder"]["pid"] == master.process.pid and lease["epoch"] == 1
    finally:
        group.stop()


@pytest.mark.timeout(90)
def test_a_lease_file_edited_by_hand_fences_the_master_and_never_makes_two(
    tmp_path: Path,
) -> None:
    group = SharedFSGroup(tmp_path, size=2, lease=2.0)
    master, standby = group.start(), group.brokers[1]
    try:
        standby.wait_event("ha_standby_waiting")
        (group.data_dir / "ha" / "lease.json").write_text("owned by ops, do not touch\n")
        fenced = master.wait_event("broker_fenced", timeout=10)
        assert "changed by someone else" in fenced["reason"]
        unreadable = standby.wait_event("ha_lease_unreadable")
        assert "is not JSON" in unreadable["problem"]
        new, active = group.wait_master(after_epoch=1)
        assert active["epoch"] == 2, "the epoch must survive a garbled lease"
        assert log_time(active) > log_time(fenced), "two masters at once"
        lease = json.loads((group.data_dir / "ha" / "lease.json").read_text())
        assert lease["epoch"] == 2 and lease["holder"]["pid"] == new.process.pid
    finally:
        group.stop()


def test_nfs_over_loopback() -> None:
    filesystems = Path("/proc/filesystems").read_text().split()
    missing = [
        what
        for what, present in (
            ("the kernel's nfsd filesystem", "nfsd" in filesystems),
            ("the kernel's nfs4 client", "nfs4" in filesystems or "nfs" in filesystems),
            ("exportfs (nfs-kernel-server)", shutil.which("exportfs") is not None),
            ("mount.nfs4 (nfs-common)", shutil.which("mount.nfs4") is not None),
        )
        if not present
    ]
    if missing:
        pytest.skip(f"no NFS over loopback on this machine: missing {', '.join(missing)}")
    pytest.skip(
        "NFS is available, but exporting and mounting it needs root mounts that a "
        "test must not leave behind on a shared machine; run the group by hand"
    )
