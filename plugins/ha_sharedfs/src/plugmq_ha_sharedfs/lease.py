"""The lease file: who is master, since when, in which epoch, and whether it still renews.

``<data-dir>/ha/lease.json`` is one small JSON document, replaced atomically (write a
temporary file, fsync, rename, fsync the directory) so a reader sees either the old or the new
lease, never a torn one. Wall-clock times in it are for people (``plugmq ha status``, the
standby's log); no decision is taken on them, so a clock jump on any host changes nothing:
a standby judges a lease stale by seeing its content unchanged for the lease time on its own
monotonic clock, and the master judges its own lease by its monotonic clock (see
:mod:`plugmq_ha_sharedfs.strategy`).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

#: The format this plugin writes and reads; a lease of another format is refused.
FORMAT = "plugmq-ha-sharedfs/1"


class LeaseError(Exception):
    """The lease file exists but is not a lease this plugin can trust (garbage, edited)."""


class ForeignLease(LeaseError):
    """The lease was written by another plugmq version (another format): never touch it."""


@dataclass(frozen=True)
class Holder:
    """A broker process of the group: where it runs and the URL clients reach it at."""

    host: str
    pid: int
    url: str
    #: Random per process: two processes never share it, even with a recycled pid.
    nonce: str

    @classmethod
    def this_process(cls, url: str) -> Holder:
        """The identity of the running broker."""
        return cls(socket.gethostname(), os.getpid(), url, uuid.uuid4().hex)

    def describe(self) -> str:
        """``pid 123 on host (amqp://...)`` for logs."""
        return f"pid {self.pid} on {self.host} ({self.url})"


@dataclass(frozen=True)
class Lease:
    """One version of the lease file."""

    group: str
    epoch: int
    holder: Holder
    #: When this holder became master (wall clock, for people).
    since: float
    #: When it last renewed (wall clock, for people).
    renewed_at: float
    #: Increases with every renewal: a standby sees a live master by this changing.
    renewals: int
    lease_seconds: float
    #: The holder also holds ``master.lock`` (False after taking over a paused master's lease).
    locked: bool
    #: The holder gave mastership up cleanly: a standby may take over at once.
    released: bool = False
    version: str = ""

    def renewed(self, *, locked: bool | None = None) -> Lease:
        """The next renewal of this lease."""
        return replace(
            self,
            renewed_at=time.time(),
            renewals=self.renewals + 1,
            locked=self.locked if locked is None else locked,
        )

    def describe(self) -> str:
        """``epoch 3, pid 123 on host (url), since 12:00:01`` for logs."""
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.since))
        return f"epoch {self.epoch}, {self.holder.describe()}, master since {since}"

    def to_json(self) -> dict[str, Any]:
        """The document written to the file."""
        return {"format": FORMAT, **asdict(self)}


def parse(raw: bytes, path: Path) -> Lease:
    """The lease in ``raw`` or a :class:`LeaseError` saying what is wrong with it."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LeaseError(f"lease file {path} is not JSON ({error}); edited by hand?") from None
    if not isinstance(document, dict):
        raise LeaseError(f"lease file {path} is not a JSON object; edited by hand?")
    found = document.pop("format", None)
    if found != FORMAT and isinstance(found, str) and found.startswith("plugmq-ha-sharedfs/"):
        raise ForeignLease(
            f"lease file {path} has format {found!r}, this plugin reads {FORMAT!r}: "
            "a broker of another plugmq version uses this directory"
        )
    if found != FORMAT:
        raise LeaseError(f"lease file {path} is not a plugmq lease (format {found!r})")
    try:
        holder = Holder(**document.pop("holder"))
        lease = Lease(holder=holder, **document)
        _check_types(lease)
    except (KeyError, TypeError, ValueError) as error:
        raise LeaseError(f"lease file {path} is malformed ({error}); edited by hand?") from None
    return lease


def _check_types(lease: Lease) -> None:
    if not isinstance(lease.epoch, int) or lease.epoch < 1:
        raise ValueError(f"epoch {lease.epoch!r} is not a positive integer")
    if not isinstance(lease.renewals, int) or not isinstance(lease.group, str):
        raise ValueError("renewals or group has the wrong type")
    if not isinstance(lease.lease_seconds, int | float) or lease.lease_seconds <= 0:
        raise ValueError(f"lease_seconds {lease.lease_seconds!r} is not a positive number")


def read_raw(path: Path) -> bytes | None:
    """The file's bytes, or None when there is no lease file yet."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def write(path: Path, lease: Lease) -> bytes:
    """Replace the lease file atomically and durably (blocking: run it in a thread); return
    the bytes written (the master compares the file with them at every renewal)."""
    data = json.dumps(lease.to_json(), indent=1).encode()
    temporary = path.with_name(f".{path.name}.{lease.holder.nonce}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    sync_directory(path.parent)
    return data


def sync_directory(directory: Path) -> None:
    """fsync a directory so a rename in it is durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
