"""The epoch of this broker's log, kept beside the store (``<data_dir>/ha_zk.epoch``).

It is the first part of the election position (see :mod:`plugmq_ha_zk.election`): written when
the broker becomes master of epoch E (before it writes anything), and when, as a replica of the
master of epoch E, it has caught up with that master's log. Written atomically (rename) and
fsynced: a broker that reports a later epoch than its log holds could win wrongly.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE = "ha_zk.epoch"


def load(data_dir: Path) -> int:
    """The saved log epoch (0 for a new broker)."""
    try:
        return int((data_dir / FILE).read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def save(data_dir: Path, epoch: int) -> None:
    """Save ``epoch`` durably."""
    temporary = data_dir / (FILE + ".tmp")
    with open(temporary, "w") as handle:
        handle.write(f"{epoch}\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, data_dir / FILE)
