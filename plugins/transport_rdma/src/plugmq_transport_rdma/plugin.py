"""Hook implementations of the RDMA transport plugin (logic lives in the modules beside it)."""

from __future__ import annotations

import structlog

from plugmq.config import Config, ConfigError, OptionRegistry
from plugmq.hookspecs import hookimpl
from plugmq.transport import Dialer, ListenerFactory
from plugmq_transport_rdma import device
from plugmq_transport_rdma.dialer import RdmaDialer
from plugmq_transport_rdma.listener import RdmaListenerFactory
from plugmq_transport_rdma.settings import (
    DEFAULT_BUFFER_SIZE,
    DEFAULT_BUFFERS,
    DEFAULT_PORT,
    RingSettings,
)

GROUP = "RDMA transport"
SCHEME = "amqp+rdma"
log = structlog.get_logger("plugmq.transport_rdma")


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """--rdma-port, --rdma-interface, --rdma-buffers, --rdma-buffer-size, --rdma-backlog."""
    options.add(
        "--rdma-port",
        type=int,
        default=DEFAULT_PORT,
        group=GROUP,
        help="RDMA CM port for AMQP over RDMA (0 picks a free one; -1 disables RDMA).",
    )
    options.add(
        "--rdma-interface",
        type=str,
        default="",
        group=GROUP,
        help="IPv4 address of an RDMA-capable interface ('' = the first active RDMA port's).",
    )
    options.add(
        "--rdma-buffers",
        type=int,
        default=DEFAULT_BUFFERS,
        group=GROUP,
        help="Receive (and send) buffers per connection; the peer's credit window.",
    )
    options.add(
        "--rdma-buffer-size",
        type=int,
        default=DEFAULT_BUFFER_SIZE,
        group=GROUP,
        help="Bytes per RDMA buffer. Pinned per connection: buffers x size x 2.",
    )
    options.add(
        "--rdma-backlog",
        type=int,
        default=128,
        group=GROUP,
        help="Backlog of pending RDMA connection requests.",
    )


@hookimpl
def plugmq_configure(config: Config) -> None:
    """Check port range and ring shape."""
    if not -1 <= config.rdma_port <= 65535:
        raise ConfigError(f"--rdma-port {config.rdma_port} is not a port (0-65535, -1 = off)")
    problem = _ring(config).problem()
    if problem is not None:
        raise ConfigError(problem)


@hookimpl
def plugmq_listeners(config: Config) -> list[ListenerFactory]:
    """One RDMA listener factory, unless disabled or RDMA is unavailable here (logged)."""
    if config.rdma_port < 0:
        return []
    availability = device.probe()
    if not availability.available:
        log.warning("rdma_unavailable", reason=availability.reason, listener="not opened")
        return []
    return [
        RdmaListenerFactory(
            config.rdma_interface, config.rdma_port, _ring(config), config.rdma_backlog
        )
    ]


@hookimpl
def plugmq_dialer(scheme: str) -> Dialer | None:
    """Dial ``amqp+rdma://`` URLs."""
    return RdmaDialer() if scheme == SCHEME else None


def _ring(config: Config) -> RingSettings:
    return RingSettings(config.rdma_buffers, config.rdma_buffer_size)
