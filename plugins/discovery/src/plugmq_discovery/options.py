"""The ``--discovery*`` flags and their checked form (:class:`DiscoverySettings`)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from plugmq.api import Config, ConfigError, OptionRegistry

GROUP = "Discovery"
MODES = ("zookeeper", "multicast")
DEFAULT_ZK = "127.0.0.1:2181"
DEFAULT_ZK_PATH = "/plugmq/network"
DEFAULT_MULTICAST = "239.255.77.77:5677"


@dataclass(frozen=True)
class DiscoverySettings:
    """Everything discovery needs from the flags, checked."""

    mode: str
    zk_address: str
    zk_path: str
    multicast_group: str
    multicast_port: int
    interface: str
    interval: float

    @property
    def expiry(self) -> float:
        """Seconds without an announcement after which a group is removed (3 intervals)."""
        return 3 * self.interval


def add_options(options: OptionRegistry) -> None:
    """Register the flags (shown in ``plugmq broker --help``)."""
    add = options.add
    add(
        "--discovery",
        default=None,
        help="How masters find each other: zookeeper or multicast (default: off).",
        group=GROUP,
    )
    add(
        "--discovery-zk-address",
        default=None,
        help="ZooKeeper servers host:port,... (default: --zk-address when ha_zk is loaded, "
        f"else {DEFAULT_ZK}).",
        group=GROUP,
    )
    add(
        "--discovery-zk-path",
        default=DEFAULT_ZK_PATH,
        help="The ZooKeeper path every master registers its group under.",
        group=GROUP,
    )
    add(
        "--discovery-multicast",
        default=DEFAULT_MULTICAST,
        help="Multicast GROUP:PORT the announcements go to.",
        group=GROUP,
    )
    add(
        "--discovery-interface",
        default="127.0.0.1",
        help="The local interface address multicast is sent and received on.",
        group=GROUP,
    )
    add(
        "--discovery-interval",
        type=float,
        default=1.0,
        help="Seconds between two announcements; a group silent for 3 is removed.",
        group=GROUP,
    )


def settings(config: Config) -> DiscoverySettings | None:
    """The checked flags, None when discovery is off; :class:`ConfigError` for a bad value."""
    mode = config.get("discovery")
    if not mode:
        return None
    if mode not in MODES:
        raise ConfigError(f"--discovery must be one of {', '.join(MODES)}, not {mode!r}")
    interval = float(config.get("discovery_interval", 1.0))
    if not 0.05 <= interval <= 3600:
        raise ConfigError(f"--discovery-interval must be 0.05 to 3600 seconds, not {interval}")
    group, port = _multicast(config.get("discovery_multicast") or DEFAULT_MULTICAST)
    zk_address = config.get("discovery_zk_address") or config.get("zk_address") or DEFAULT_ZK
    for server in zk_address.split(","):
        _address(server, "--discovery-zk-address")
    path = config.get("discovery_zk_path") or DEFAULT_ZK_PATH
    if not path.startswith("/") or path.endswith("/") or "//" in path:
        raise ConfigError(
            f"--discovery-zk-path must be an absolute path like /plugmq/network, not {path!r}"
        )
    return DiscoverySettings(
        mode=mode,
        zk_address=zk_address,
        zk_path=path,
        multicast_group=group,
        multicast_port=port,
        interface=_interface(config.get("discovery_interface") or "127.0.0.1"),
        interval=interval,
    )


def _address(text: str, flag: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag} must be host:port, not {text!r}")
    return host, int(port)


def _multicast(text: str) -> tuple[str, int]:
    host, port = _address(text, "--discovery-multicast")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        message = f"--discovery-multicast needs an IPv4 group address, not {host!r}"
        raise ConfigError(message) from None
    if not address.is_multicast:
        raise ConfigError(
            f"--discovery-multicast {host} is not a multicast address (224.0.0.0/4; "
            "239.255.0.0/16 is for a site's own use)"
        )
    return host, port


def _interface(text: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        message = f"--discovery-interface must be a local IPv4 address, not {text!r}"
        raise ConfigError(message) from None
