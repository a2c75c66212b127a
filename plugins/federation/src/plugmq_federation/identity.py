"""The broker's federation id: stable across restarts, unique in a federation.

``--broker-id`` names it; without the flag a uuid is generated once and kept in the plugin's
settings (:mod:`.persistence`). Ids travel in every forwarded message's path, so they must not
contain the path's separators (a comma, a semicolon).
"""

from __future__ import annotations

import re

from plugmq.config import ConfigError

_VALID = re.compile(r"[A-Za-z0-9._:@-]{1,64}")


def check_broker_id(value: str) -> str:
    """``value`` when it is a usable id, else :class:`ConfigError`."""
    if not _VALID.fullmatch(value):
        raise ConfigError(
            f"--broker-id {value!r}: use 1 to 64 letters, digits or . _ : @ - (no commas)"
        )
    return value
