"""The HA files inside the shared data directory, and the checks made before using it.

``<data-dir>/ha/``:

==================  ==========================================================================
``master.lock``     POSIX record lock held by the master for its whole mastership
``takeover.lock``   POSIX record lock held for the instant a standby decides and writes a lease
``lease.json``      the lease (:mod:`plugmq_ha_sharedfs.lease`)
``epoch``           the highest epoch ever granted (survives a lease file edited by hand)
``members/``        one file per broker of the group naming its client URL (``cluster_urls``)
==================  ==========================================================================
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from plugmq.api import ConfigError
from plugmq_ha_sharedfs import filesystems
from plugmq_ha_sharedfs.lease import sync_directory


class DirectoryError(ConfigError):
    """The shared directory cannot be used: the message says why and what to do."""


class SharedDirectory:
    """Paths and small files of the HA group in ``<data-dir>/ha``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ha = data_dir / "ha"
        self.lease = self.ha / "lease.json"
        self.master_lock = self.ha / "master.lock"
        self.takeover_lock = self.ha / "takeover.lock"
        self.epoch_file = self.ha / "epoch"
        self.members = self.ha / "members"

    def prepare(self) -> filesystems.Verdict:
        """Create ``ha/`` and check access and the filesystem; :class:`DirectoryError` if
        the directory is unusable or its locks cannot exclude other hosts."""
        if self.data_dir.exists() and not self.data_dir.is_dir():
            raise DirectoryError(f"shared data directory {self.data_dir} is not a directory")
        try:
            self.members.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DirectoryError(
                f"cannot create {self.members}: {error.strerror}. Is the shared data directory "
                "mounted and writable by this user?"
            ) from error
        if not os.access(self.ha, os.R_OK | os.W_OK | os.X_OK):
            raise DirectoryError(
                f"{self.ha} is not readable and writable by uid {os.geteuid()}: fix its "
                "permissions (every broker of the group needs read and write access)"
            )
        verdict = filesystems.judge(filesystems.mount_of(self.ha))
        if verdict.unsafe:
            raise DirectoryError(
                f"the shared data directory {self.data_dir} is on a filesystem whose locks do "
                f"not exclude other hosts ({verdict.reason}): two brokers could both be master. "
                "Mount it with working POSIX locks (NFSv4, or NFSv3 with lockd)."
            )
        return verdict

    # -- the epoch counter ----------------------------------------------------------------------

    def read_epoch(self) -> int:
        """The highest epoch granted so far (0 for a new group or an unreadable file)."""
        try:
            return int(self.epoch_file.read_text().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def write_epoch(self, epoch: int) -> None:
        """Record ``epoch`` as granted (atomically, before the lease naming it)."""
        temporary = self.ha / f".epoch.{os.getpid()}.tmp"
        temporary.write_text(f"{epoch}\n")
        fd = os.open(temporary, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, self.epoch_file)
        sync_directory(self.ha)

    # -- members --------------------------------------------------------------------------------

    def register_member(self, url: str, host: str, pid: int) -> None:
        """Name this broker's client URL (one file per URL: a restart replaces its own)."""
        name = hashlib.sha1(url.encode()).hexdigest()[:16]
        document = {"url": url, "host": host, "pid": pid, "registered_at": time.time()}
        (self.members / f"{name}.json").write_text(json.dumps(document))

    def member_urls(self) -> list[str]:
        """Every registered member's URL, sorted (unreadable files are skipped)."""
        urls = set()
        for path in self.members.glob("*.json"):
            try:
                url = json.loads(path.read_text()).get("url")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(url, str):
                urls.add(url)
        return sorted(urls)
