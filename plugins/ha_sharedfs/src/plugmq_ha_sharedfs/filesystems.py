"""Which filesystem the shared data directory is on, and whether its locks can be trusted.

The lock is only as good as the filesystem's POSIX locks. Local filesystems (ext4, xfs,
btrfs, tmpfs) are safe for brokers on the same host; NFSv4 is safe across hosts (locks are
part of the protocol, with a server lease); NFSv3 needs the NLM lock manager (``lockd``);
an NFS mount with ``nolock`` or ``local_lock=posix|all`` and a CIFS mount with ``nobrl``
keep locks on the client, so two hosts would both "hold" the lock: refused. FUSE filesystems
(sshfs, s3fs...) rarely forward locks: refused unless the operator insists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOCAL = {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "zfs", "f2fs", "overlay", "jfs"}
NETWORK_LOCKING = {"nfs", "nfs4", "ceph", "gfs2", "ocfs2", "glusterfs", "lustre", "gpfs"}


@dataclass(frozen=True)
class Mount:
    """The mount a path lives on."""

    point: str
    fstype: str
    options: frozenset[str]


@dataclass(frozen=True)
class Verdict:
    """Whether the HA lock works on a mount: ``unsafe`` stops the broker with ``reason``."""

    mount: Mount | None
    unsafe: bool
    shared: bool
    reason: str


def mount_of(path: Path, mounts_file: Path = Path("/proc/self/mounts")) -> Mount | None:
    """The mount ``path`` is on (longest matching mount point), None if unknown."""
    try:
        lines = mounts_file.read_text().splitlines()
    except OSError:
        return None
    target = os.path.realpath(path)
    best: Mount | None = None
    for line in lines:
        fields = line.split()
        if len(fields) < 4:
            continue
        point = fields[1].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (best is None or len(point) >= len(best.point)):
            best = Mount(point, fields[2], frozenset(fields[3].split(",")))
    return best


def judge(mount: Mount | None) -> Verdict:
    """Decide whether POSIX locks on ``mount`` exclude brokers on every host that mounts it."""
    if mount is None:
        return Verdict(None, False, False, "filesystem unknown (no /proc/self/mounts)")
    kind, options = mount.fstype, mount.options
    if kind.startswith("nfs"):
        return _judge_nfs(mount)
    if kind in ("cifs", "smb3"):
        if "nobrl" in options:
            return Verdict(mount, True, True, "CIFS mounted with nobrl keeps locks local")
        return Verdict(mount, False, True, "CIFS with byte-range locks sent to the server")
    if kind.startswith("fuse"):
        return Verdict(mount, True, True, f"{kind} does not forward POSIX locks reliably")
    if kind in NETWORK_LOCKING:
        return Verdict(mount, False, True, f"{kind} has cluster-wide POSIX locks")
    return Verdict(mount, False, False, f"{kind} is local: only brokers on this host share it")


def _judge_nfs(mount: Mount) -> Verdict:
    options = mount.options
    if "nolock" in options or "local_lock=posix" in options or "local_lock=all" in options:
        return Verdict(mount, True, True, "NFS mounted nolock/local_lock keeps locks local")
    versions = {o.split("=", 1)[1] for o in options if o.startswith(("vers=", "nfsvers="))}
    if mount.fstype == "nfs4" or any(v.startswith("4") for v in versions):
        return Verdict(mount, False, True, "NFSv4: locks and their lease live on the server")
    return Verdict(mount, False, True, "NFSv3: safe only while lockd/statd run on every host")
