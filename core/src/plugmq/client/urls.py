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


# ------------------------------------------------------------------------------------------------
# Server-driven failover: the redirect convention and advertised group members
# ------------------------------------------------------------------------------------------------

#: What a broker that will not serve (a standby, a fenced master) puts in its connection.close
#: text, followed by the master's URL: ``"standby; the master is amqp://10.0.0.2:5672/"``. The
#: one definition of the convention: brokers build the text with :func:`master_redirect_text`,
#: clients read it with :func:`redirect_target`.
MASTER_REDIRECT_MARKER = "the master is "

#: The server property (connection.start) in which a master lists its group's member URLs.
CLUSTER_URLS_PROPERTY = "cluster_urls"


def master_redirect_text(state: str, master_url: str) -> str:
    """The close text of a broker in ``state`` (``"standby"``) sending clients to the master."""
    return f"{state}; {MASTER_REDIRECT_MARKER}{master_url}"


def redirect_target(text: str) -> str | None:
    """The master URL named by a close ``text`` (see :data:`MASTER_REDIRECT_MARKER`), or None.

    The URL runs from the marker to the next whitespace, less trailing ``.,;`` and quotes (a
    broker may quote the reason: ``"... with reason 'fenced; the master is amqp://h/'"``); a
    text without the marker, or one naming something that does not parse as an AMQP URL, is
    no redirect.
    """
    _, marker, rest = text.partition(MASTER_REDIRECT_MARKER)
    if not marker or not rest.split():
        return None
    candidate = rest.split()[0].rstrip(".,;'\"")
    try:
        parse_url(candidate)
    except ValueError:
        return None
    return candidate


def adopt_url(advertised: str | bytes, given: BrokerURL) -> BrokerURL | None:
    """The URL a client dials for a group member the broker advertised (or redirected to).

    The rule: scheme, host and port come from the advertised URL; user, password and vhost
    always from ``given``, the URL the client was connected (or connecting) with, because a
    broker must never hand out credentials and one application uses one vhost. Returns None
    for something that is not an AMQP URL (a broker's bad advertisement is not the client's
    problem).
    """
    text = advertised.decode() if isinstance(advertised, bytes) else advertised
    try:
        member = parse_url(text)
    except (ValueError, UnicodeDecodeError):
        return None
    return BrokerURL(
        member.scheme, member.host, member.port, given.username, given.password, given.vhost
    )


def same_broker(one: BrokerURL, other: BrokerURL) -> bool:
    """True when both URLs dial the same address (scheme, host and port; hosts ignore case)."""
    return _address(one) == _address(other)


def _address(url: BrokerURL) -> tuple[str, str, int]:
    return (url.scheme, url.host.lower(), url.port)
