"""The broker's federation id: stable across restarts, unique in a federation.

``--broker-id`` names it; without the flag a uuid is generated once and kept in
``<data-dir>/federation/broker-id``. Ids travel in every forwarded message's path, so they
must not contain the path's separator (a comma).
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from plugmq.config import ConfigError

_VALID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")


def check_broker_id(value: str) -> str:
    """``value`` when it is a usable id, else :class:`ConfigError`."""
    if not _VALID.fullmatch(value):
        raise ConfigError(
            f"--broker-id {value!r}: use 1 to 64 letters, digits or . _ : @ - (no commas)"
        )
    return value


def broker_id(configured: str | None, directory: Path) -> str:
    """The configured id, else the one stored in ``directory`` (created the first time)."""
    if configured:
        return check_broker_id(configured)
    stored = directory / "broker-id"
    if stored.exists():
        return check_broker_id(stored.read_text().strip())
    directory.mkdir(parents=True, exist_ok=True)
    value = str(uuid.uuid4())
    temporary = stored.with_suffix(".tmp")
    temporary.write_text(value + "\n")
    temporary.replace(stored)
    return value
