"""POSIX record locks (``fcntl.lockf``): the one kind of file lock NFSv4 makes cluster-wide.

``flock`` is local to a host on many NFS set-ups (Linux emulates it with POSIX locks only
since 2.6.12, and older servers, CIFS and some FUSE filesystems keep it local), so the HA lock
is a ``lockf`` write lock on the whole file. POSIX locks belong to the *process*: closing any
descriptor of the file in this process drops them, which is why nothing else in the plugin
ever opens a lock file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from plugmq.api import ConfigError

_BUSY = (errno.EACCES, errno.EAGAIN, errno.EWOULDBLOCK)


class LockError(ConfigError):
    """The lock file cannot be opened or locked for a reason other than another holder
    (the broker stops with this message: without working locks there is no safe master)."""


class RecordLock:
    """A non-blocking exclusive ``lockf`` lock on one file, held until :meth:`release`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; False when another process does."""
        if self._fd is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise LockError(f"cannot open the lock file {self.path}: {error.strerror}") from error
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno in _BUSY:
                return False
            raise LockError(
                f"cannot lock {self.path}: {error.strerror} (errno {error.errno}); the "
                "filesystem may not support POSIX locks (NFSv3 without lockd, mounted nolock?)"
            ) from error
        self._fd = fd
        return True

    def release(self) -> None:
        """Drop the lock (safe to call twice)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                fcntl.lockf(fd, fcntl.LOCK_UN)
            os.close(fd)
