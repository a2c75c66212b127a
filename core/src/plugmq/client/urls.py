"""Parsing broker URLs such as ``amqp://user:pass@host:5672/vhost``.

The scheme picks the transport (``amqp`` is TCP; ``amqp+rdma`` and others are resolved through
the dialers given to :func:`plugmq.client.connect`). The path is the virtual host, percent
encoded (``%2F`` is ``/``); an empty path or a bare ``/`` means the default vhost ``/``, as pika
does (the RabbitMQ URI spec reads a bare ``/`` as the empty vhost, which nobody wants).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

DEFAULT_PORT = 5672


@dataclass(frozen=True, slots=True)
class BrokerURL:
    """One parsed broker address."""

    scheme: str
    host: str
    port: int
    username: str
    password: str
    vhost: str

    def __str__(self) -> str:
        """The URL with the password masked, for logs and error messages."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        vhost = quote(self.vhost, safe="")
        return f"{self.scheme}://{quote(self.username, safe='')}:***@{host}:{self.port}/{vhost}"


def parse_url(url: str) -> BrokerURL:
    """Parse ``url``; raise :class:`ValueError` for anything we would otherwise guess at.

    User and password default to ``guest``; the port to 5672. Query strings are refused rather
    than silently ignored (connection options are keyword arguments of ``connect``).
    """
    parts = urlsplit(url)
    if not parts.scheme.startswith("amqp"):
        raise ValueError(f"not an AMQP URL (scheme must start with 'amqp'): {url!r}")
    if parts.query or parts.fragment:
        raise ValueError(f"query strings and fragments are not supported in broker URLs: {url!r}")
    if not parts.hostname:
        raise ValueError(f"broker URL has no host: {url!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as error:
        raise ValueError(f"bad port in broker URL {url!r}: {error}") from error
    return BrokerURL(
        scheme=parts.scheme.lower(),
        host=parts.hostname,
        port=port,
        username=unquote(parts.username) if parts.username is not None else "guest",
        password=unquote(parts.password) if parts.password is not None else "guest",
        vhost=_vhost(parts.path),
    )


def _vhost(path: str) -> str:
    if path in ("", "/"):
        return "/"
    return unquote(path[1:])
