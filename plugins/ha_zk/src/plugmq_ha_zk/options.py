"""The flags of ``--ha zookeeper`` and their checked, parsed form (:class:`ZKSettings`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from plugmq.config import Config, ConfigError, OptionRegistry

GROUP = "HA: ZooKeeper + replicated store"
MODE = "zookeeper"


@dataclass(frozen=True)
class ZKSettings:
    """Everything ``ha_zk`` needs from the flags, checked."""

    zk_address: str
    zk_path: str
    replicas: int
    replication_address: tuple[str, int]
    peers: tuple[tuple[str, int], ...]
    advertise_url: str | None
    session_timeout: float
    ack_timeout: float
    data_dir: Path

    @property
    def quorum(self) -> int:
        """How many members must be up: ``replicas // 2 + 1`` (ActiveMQ's rule)."""
        return self.replicas // 2 + 1


def add_options(options: OptionRegistry) -> None:
    """Register the flags (shown in ``plugmq broker --help``)."""
    add = options.add
    add(
        "--zk-address",
        default="127.0.0.1:2181",
        help="ZooKeeper servers: host:port,...",
        group=GROUP,
    )
    add(
        "--zk-path",
        default="/plugmq/default",
        help="The group's ZooKeeper path, /plugmq/<group> (one path per group).",
        group=GROUP,
    )
    add(
        "--replicas",
        type=int,
        default=3,
        help="Brokers in the group; (replicas/2)+1 must be up to elect a master and confirm.",
        group=GROUP,
    )
    add(
        "--replication-address",
        default=None,
        help="host:port this broker's Berkeley DB replication listens on.",
        group=GROUP,
    )
    add(
        "--replication-peer",
        multiple=True,
        default=[],
        help="host:port of another broker's replication address (repeat per peer).",
        group=GROUP,
    )
    add(
        "--zk-session-timeout",
        type=float,
        default=4.0,
        help="ZooKeeper session timeout in seconds: a dead master is replaced after this.",
        group=GROUP,
    )
    add(
        "--replication-ack-timeout",
        type=float,
        default=2.0,
        help="Seconds a commit waits for the quorum's acknowledgements before it is nacked.",
        group=GROUP,
    )


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """``host:port`` → ``(host, port)`` or a :class:`ConfigError` naming the flag."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag} must be host:port, not {text!r}")
    return host, int(port)


def settings(config: Config) -> ZKSettings:
    """Check the flags of ``--ha zookeeper`` and return them parsed (``ConfigError`` if bad)."""
    path = config.get("zk_path") or ""
    if not path.startswith("/") or path.endswith("/") or "//" in path:
        raise ConfigError(
            f"--zk-path must be an absolute ZooKeeper path like /plugmq/group1, not {path!r}"
        )
    replicas = int(config.get("replicas", 3))
    if replicas < 1:
        raise ConfigError(f"--replicas must be at least 1, not {replicas}")
    address = config.get("replication_address")
    if not address:
        raise ConfigError(
            "--ha zookeeper needs --replication-address host:port (Berkeley DB "
            "replication between the brokers of the group)"
        )
    local = parse_address(address, "--replication-address")
    peers = tuple(
        parse_address(p, "--replication-peer") for p in config.get("replication_peer") or []
    )
    if local in peers:
        raise ConfigError(f"--replication-peer {address} is this broker's own address")
    if len(peers) > replicas - 1:
        raise ConfigError(
            f"{len(peers)} --replication-peer given but --replicas {replicas} "
            f"means at most {replicas - 1} peers"
        )
    servers = config.get("zk_address") or ""
    for server in servers.split(","):
        parse_address(server, "--zk-address")
    timeout = float(config.get("zk_session_timeout", 4.0))
    if timeout < 1:
        raise ConfigError(f"--zk-session-timeout must be at least 1 second, not {timeout}")
    return ZKSettings(
        zk_address=servers,
        zk_path=path,
        replicas=replicas,
        replication_address=local,
        peers=peers,
        advertise_url=config.get("ha_advertise_url"),
        session_timeout=timeout,
        ack_timeout=float(config.get("replication_ack_timeout", 2.0)),
        data_dir=Path(config.get("data_dir") or "./plugmq-data"),
    )
