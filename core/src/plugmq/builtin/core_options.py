"""Built-in plugin: the core's own flags (listening, limits, data directory, logging)."""

from __future__ import annotations

from pathlib import Path

from plugmq.config import Config, ConfigError, OptionRegistry
from plugmq.hookspecs import hookimpl

GROUP = "Broker"


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """Flags every broker has, whatever plugins are loaded."""
    add = options.add
    add(
        "--data-dir",
        type=Path,
        default=Path("plugmq-data"),
        group=GROUP,
        help="Directory for durable state (the store plugin keeps its files under it).",
    )
    add(
        "--frame-max",
        type=int,
        default=131072,
        group=GROUP,
        help="Largest frame the broker accepts and offers in connection.tune (bytes).",
    )
    add(
        "--channel-max",
        type=int,
        default=2047,
        group=GROUP,
        help="Most channels per connection offered in connection.tune.",
    )
    add(
        "--heartbeat",
        type=int,
        default=60,
        group=GROUP,
        help="Heartbeat interval offered to clients (seconds, 0 = off).",
    )
    add(
        "--max-connections",
        type=int,
        default=10000,
        group=GROUP,
        help="Connections accepted at once; more are refused.",
    )
    add(
        "--max-message-size",
        type=int,
        default=128 << 20,
        group=GROUP,
        help="Largest message body accepted (bytes), as RabbitMQ's max_message_size.",
    )
    add(
        "--memory-high-watermark",
        type=float,
        default=0.4,
        group=GROUP,
        help="Block publishers above this much held message data: a fraction of RAM "
        "(<= 1, as RabbitMQ's vm_memory_high_watermark) or bytes (> 1); 0 disables.",
    )
    add(
        "--queue-max-memory",
        type=int,
        default=64 << 20,
        group=GROUP,
        help="Bytes of ready messages a durable queue keeps in memory; beyond it persistent "
        "messages stay only in the store and are paged in as consumers catch up (0 = never).",
    )
    add(
        "--ha",
        type=str,
        default="standalone",
        group="High availability",
        help="HA mode: standalone (no HA), or a mode an HA plugin provides "
        "(sharedfs: ha_sharedfs; pg: store_pg; zookeeper: ha_zk).",
    )
    # Flags every HA mode shares (ha_sharedfs, --ha pg, ha_zk), so that loading several HA
    # plugins never registers them twice.
    add(
        "--ha-lease",
        type=float,
        default=10.0,
        group="High availability",
        help="Lease seconds (lease-based modes: sharedfs, pg). A master that cannot renew "
        "within it fences itself; a standby replaces a master whose lease went unrenewed.",
    )
    add(
        "--ha-advertise-url",
        type=str,
        default=None,
        group="High availability",
        help="This broker's client URL, named in standbys' redirects and in cluster_urls "
        "(default: the first listener as amqp://host:port/).",
    )
    add(
        "--ha-group",
        type=str,
        default="plugmq",
        group="High availability",
        help="The HA group's name; a broker refuses shared state of another group.",
    )
    add(
        "--cluster-name",
        type=str,
        default="plugmq",
        group=GROUP,
        help="Name announced to clients in the server properties.",
    )
    add(
        "--log-level",
        type=str,
        default="info",
        group="Logging",
        help="debug, info, warning or error.",
    )
    add(
        "--log-json",
        type=bool,
        default=False,
        group="Logging",
        help="Log one JSON object per line instead of human-readable lines.",
    )


@hookimpl
def plugmq_configure(config: Config) -> None:
    """Check the core's limits."""
    if not 4096 <= config.frame_max <= 1 << 24:
        raise ConfigError(f"--frame-max {config.frame_max} must be between 4096 and 16777216")
    if not 1 <= config.channel_max <= 65535:
        raise ConfigError(f"--channel-max {config.channel_max} must be between 1 and 65535")
    if config.heartbeat < 0:
        raise ConfigError("--heartbeat must be 0 (off) or positive")
    if config.memory_high_watermark < 0:
        raise ConfigError("--memory-high-watermark must be 0 (off), a fraction or bytes")
    if config.log_level.lower() not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"--log-level {config.log_level!r}: use debug, info, warning or error")
