"""Hook implementations of the TCP transport plugin."""

from __future__ import annotations

from plugmq.config import Config, ConfigError, OptionRegistry
from plugmq.hookspecs import hookimpl
from plugmq.transport import Dialer, ListenerFactory
from plugmq_transport_tcp.tcp import TCPDialer, TCPListenerFactory

GROUP = "TCP transport"


@hookimpl
def plugmq_add_options(options: OptionRegistry) -> None:
    """--port, --interface, --tcp-backlog."""
    options.add(
        "--port",
        type=int,
        default=5672,
        group=GROUP,
        help="TCP port for AMQP clients (0 picks a free port; -1 disables TCP).",
    )
    options.add(
        "--interface",
        type=str,
        default="",
        group=GROUP,
        help=(
            "Address to listen on (default '': every IPv4 and IPv6 address, as RabbitMQ; "
            "0.0.0.0 = IPv4 only, :: = IPv6 only)."
        ),
    )
    options.add(
        "--tcp-backlog",
        type=int,
        default=1024,
        group=GROUP,
        help="Listen backlog of the TCP socket.",
    )


@hookimpl
def plugmq_configure(config: Config) -> None:
    """Check the port range."""
    if not -1 <= config.port <= 65535:
        raise ConfigError(f"--port {config.port} is not a TCP port (0-65535, -1 = off)")


@hookimpl
def plugmq_listeners(config: Config) -> list[ListenerFactory]:
    """One TCP listener factory unless --port -1."""
    if config.port < 0:
        return []
    return [TCPListenerFactory(config.interface, config.port, config.tcp_backlog)]


@hookimpl
def plugmq_dialer(scheme: str) -> Dialer | None:
    """Dial ``amqp://`` URLs over TCP."""
    return TCPDialer() if scheme == "amqp" else None
