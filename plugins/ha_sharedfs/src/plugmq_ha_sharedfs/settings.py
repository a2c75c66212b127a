"""The plugin's flags, checked once."""

from __future__ import annotations

from dataclasses import dataclass

from plugmq.api import Config, ConfigError

#: Shorter leases make a GC pause or a slow fsync look like a dead master.
MIN_LEASE = 0.5


@dataclass(frozen=True)
class Settings:
    """``--ha-lease``, ``--ha-advertise-url``, ``--ha-group``."""

    lease: float
    advertise_url: str | None
    group: str


def settings_from(config: Config) -> Settings:
    """The settings, or :class:`ConfigError` naming the bad flag."""
    lease = config.get("ha_lease", 10.0)
    if lease is None or lease < MIN_LEASE:
        raise ConfigError(f"--ha-lease must be at least {MIN_LEASE} seconds, not {lease}")
    url = config.get("ha_advertise_url")
    if url is not None and not url.startswith(("amqp://", "amqps://", "rdma://")):
        raise ConfigError(
            f"--ha-advertise-url must be a broker URL (amqp://host:port/), not {url!r}"
        )
    group = config.get("ha_group") or ""
    if not group or "/" in group:
        raise ConfigError(f"--ha-group must be a non-empty name without '/', not {group!r}")
    return Settings(lease, url, group)
