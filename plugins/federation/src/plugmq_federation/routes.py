"""Routes: what a broker was asked to forward, as the broker that runs the link sees it.

``qpid-route route add DEST SRC EXCHANGE KEY`` names two brokers; the route is kept by the
one that runs its link (DEST for a pull route, SRC for a push route, ``--src-local``), so a
route here names only the *remote* broker (a URL list: failover) and the local vhost.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from hashlib import blake2b
from typing import Any, Literal

from plugmq.client import parse_url

Kind = Literal["exchange", "queue", "dynamic", "demand"]

DEFAULT_ACK = 100
DEFAULT_MAX_HOPS = 8


class RouteError(ValueError):
    """A route description that cannot work; the message says why."""


@dataclass(frozen=True)
class Route:
    """One route kept by the broker that runs its link.

    ``push`` routes consume here and publish to ``remote``; pull routes consume on
    ``remote`` and publish here. ``exchange`` is the exchange on both ends; ``key`` the
    binding key of an exchange route; ``queue`` the source queue of a queue route.
    """

    kind: Kind
    remote: tuple[str, ...]
    exchange: str
    key: str = ""
    queue: str = ""
    push: bool = False
    vhost: str = "/"
    durable: bool = False
    ack: int = DEFAULT_ACK
    max_hops: int = DEFAULT_MAX_HOPS
    #: The URL the route was added through, for ``route map`` (password masked).
    local: str = ""
    #: The HA group the remote is (``--network dynamic`` routes): the route is that group's,
    #: whatever URLs the group has now, so its id (and its queue) outlive URL changes.
    group: str = ""
    id: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        """Check the fields and compute the id (same route, same id, on every broker)."""
        if not self.remote:
            raise RouteError("a route needs the remote broker's URL")
        for url in self.remote:
            try:
                parse_url(url)
            except ValueError as error:
                raise RouteError(str(error)) from error
        if self.kind not in ("exchange", "queue", "dynamic", "demand"):
            raise RouteError(f"unknown route kind {self.kind!r}")
        if self.kind in ("queue", "demand") and not self.queue:
            raise RouteError(f"a {self.kind} route needs the source queue")
        if self.kind != "exchange" and self.push:
            raise RouteError(f"a {self.kind} route is a pull route (DEST runs it)")
        if not 1 <= self.ack <= 0xFFFF:
            raise RouteError(f"--ack must be between 1 and 65535, not {self.ack}")
        if self.max_hops < 1:
            raise RouteError(f"--max-hops must be at least 1, not {self.max_hops}")
        object.__setattr__(self, "id", _identity(self))

    @property
    def direction(self) -> str:
        """``push`` or ``pull``."""
        return "push" if self.push else "pull"

    @property
    def remote_display(self) -> str:
        """The remote URLs with passwords masked."""
        return ",".join(str(parse_url(url)) for url in self.remote)

    def to_record(self) -> dict[str, Any]:
        """The route as JSON-ready data (what the store keeps; passwords included)."""
        record = asdict(self)
        record.pop("id")
        record["remote"] = list(self.remote)
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Route:
        """The inverse of :meth:`to_record`; :class:`RouteError` for a bad record."""
        try:
            data = dict(record)
            data["remote"] = tuple(data["remote"])
            return cls(**data)
        except (KeyError, TypeError) as error:
            raise RouteError(f"bad route record {record!r}: {error}") from error

    def describe(self) -> dict[str, Any]:
        """The route for listings (passwords masked)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "direction": self.direction,
            "remote": self.remote_display,
            "exchange": self.exchange,
            "key": self.key,
            "queue": self.queue,
            "vhost": self.vhost,
            "durable": self.durable,
            "ack": self.ack,
            "max_hops": self.max_hops,
            "local": self.local,
            "group": self.group,
        }


def _identity(route: Route) -> str:
    """A short id from what makes two routes the same (credentials and options aside)."""
    remotes = [f"group:{route.group}"] if route.group else sorted(_where(u) for u in route.remote)
    parts = [route.kind, route.direction, route.vhost, *remotes, route.exchange]
    parts.append(route.queue if route.kind in ("queue", "demand") else route.key)
    return blake2b("\0".join(parts).encode(), digest_size=6).hexdigest()


def _where(url: str) -> str:
    parsed = parse_url(url)
    return f"{parsed.scheme}://{parsed.host}:{parsed.port}/{parsed.vhost}"


def parse_static(text: str) -> Route:
    """A route from a ``--federation-route`` flag: ``pull|push URL[,URL] EXCHANGE KEY``
    (exchange route) or ``queue URL[,URL] EXCHANGE QUEUE`` (pull queue route)."""
    words = text.split()
    if len(words) != 4 or words[0] not in ("pull", "push", "queue"):
        raise RouteError(
            f"bad --federation-route {text!r}: expected 'pull|push URL[,URL] EXCHANGE KEY' "
            "or 'queue URL[,URL] EXCHANGE QUEUE'"
        )
    mode, urls, exchange, last = words
    remote = tuple(url for url in urls.split(",") if url)
    if mode == "queue":
        return Route("queue", remote, exchange, queue=last)
    return Route("exchange", remote, exchange, key=last, push=mode == "push")
