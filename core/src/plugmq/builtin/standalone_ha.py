"""Built-in plugin: no HA, the broker is active at once (used when no HA plugin answers)."""

from __future__ import annotations

from plugmq.config import Config
from plugmq.ha import HAStrategy, StandaloneHA
from plugmq.hookspecs import hookimpl


@hookimpl(trylast=True)
def plugmq_ha_strategy(config: Config) -> HAStrategy | None:
    """Master at once, for ``--ha standalone`` (the default)."""
    return StandaloneHA() if config.get("ha", "standalone") == "standalone" else None
