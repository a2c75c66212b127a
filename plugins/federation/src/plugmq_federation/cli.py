"""``plugmq route`` and ``plugmq link``: federation admin, like ``qpid-route``.

::

    plugmq route add DEST SRC amq.topic "sports.#" --src-local   # SRC pushes to DEST
    plugmq route add DEST SRC amq.topic "orders.#"               # DEST pulls from SRC
    plugmq route queue add DEST SRC amq.direct work               # SRC's queue drains to DEST
    plugmq route del DEST SRC amq.topic "sports.#" --src-local
    plugmq route list amqp://guest:guest@node2:5672/
    plugmq route map amqp://guest:guest@node2:5672/               # every broker reachable
    plugmq link list amqp://guest:guest@node2:5672/

DEST and SRC are broker URLs (comma-separated for failover). The request goes to the broker
that runs the route's link: DEST for pull routes, SRC for push routes.
"""

from __future__ import annotations

from collections import deque
from typing import Annotated, Any

import typer

from plugmq.cli.admin import Admin, JsonOption, TimeoutOption, VhostOption, fail
from plugmq.cli.output import emit, show_table
from plugmq.client import ChannelClosed, ConnectionClosed, ConnectionFailed, parse_url
from plugmq.management.client import DEFAULT_TIMEOUT, ManagementError

DEFAULT_URL = "amqp://guest:guest@localhost:5672/"

Dest = Annotated[str, typer.Argument(help="Destination broker URL (comma-separated: failover).")]
Src = Annotated[str, typer.Argument(help="Source broker URL (comma-separated: failover).")]
Exchange = Annotated[str, typer.Argument(help="Exchange (the same name on both brokers).")]
Key = Annotated[str, typer.Argument(help="Binding key of the route.")]
Broker = Annotated[str, typer.Argument(help="Broker URL.")]
SrcLocal = Annotated[
    bool,
    typer.Option("--src-local", help="Push route: SRC runs the link and pushes to DEST."),
]
Durable = Annotated[
    bool, typer.Option("--durable", help="The route (and its queue) survive restarts.")
]
Ack = Annotated[
    int,
    typer.Option("--ack", help="Acknowledged transfer: at most N messages in flight."),
]
MaxHops = Annotated[
    int, typer.Option("--max-hops", help="Drop messages that already made this many hops.")
]
Wait = Annotated[
    float,
    typer.Option("--wait", help="Seconds to wait for the link's first outcome (0: do not)."),
]

ROUTE_COLUMNS = [
    ("id", "id"),
    ("kind", "kind"),
    ("dir", "direction"),
    ("remote", "remote"),
    ("peer", "peer"),
    ("exchange", "exchange"),
    ("key", "key"),
    ("queue", "queue"),
    ("durable", "durable"),
    ("ack", "ack"),
    ("max-hops", "max_hops"),
]
LINK_COLUMNS = [
    ("route", "route"),
    ("dir", "direction"),
    ("remote", "remote"),
    ("peer", "peer"),
    ("exchange", "exchange"),
    ("key", "key"),
    ("state", "state"),
    ("forwarded", "forwarded"),
    ("backlog", "backlog"),
    ("rate", "rate"),
    ("loops", "loops"),
    ("dups", "duplicates"),
    ("last error", "last_error"),
]


def make_route_app(admin: Admin) -> typer.Typer:
    """The ``route`` command group."""
    app = typer.Typer(help="Federation routes between brokers (qpid-route).", no_args_is_help=True)
    queue_app = typer.Typer(help="Queue routes: SRC's queue drains into DEST.")
    app.add_typer(queue_app, name="queue")
    dynamic_app = typer.Typer(help="Dynamic routes: DEST's bindings on EXCHANGE pull from SRC.")
    app.add_typer(dynamic_app, name="dynamic")

    demand_app = typer.Typer(help="Demand routes: SRC's QUEUE moves to DEST's while DEST consumes.")
    app.add_typer(demand_app, name="demand")

    @demand_app.command("add")
    def demand_add(
        dest: Dest,
        src: Src,
        queue: Annotated[str, typer.Argument(help="The queue (same name on both brokers).")],
        durable: Durable = False,
        ack: Ack = 100,
        max_hops: MaxHops = 8,
        wait: Wait = 3.0,
        vhost: VhostOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Messages of QUEUE on SRC move to QUEUE on DEST only while DEST's QUEUE has consumers."""
        _add(
            admin,
            dest,
            src,
            as_json,
            timeout,
            wait,
            kind="demand",
            exchange="",
            queue=queue,
            durable=durable,
            ack=ack,
            max_hops=max_hops,
            vhost=vhost,
        )

    @demand_app.command("del")
    def demand_del(
        dest: Dest,
        src: Src,
        queue: Annotated[str, typer.Argument(help="The queue.")],
        vhost: VhostOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Delete a demand route."""
        _delete(
            admin, dest, src, as_json, timeout, kind="demand", exchange="", queue=queue, vhost=vhost
        )

    @dynamic_app.command("add")
    def dynamic_add(
        dest: Dest,
        src: Src,
        exchange: Exchange,
        durable: Durable = False,
        ack: Ack = 100,
        max_hops: MaxHops = 8,
        wait: Wait = 3.0,
        vhost: VhostOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Messages on SRC's EXCHANGE that DEST's bindings on EXCHANGE want go to DEST."""
        _add(
            admin,
            dest,
            src,
            as_json,
            timeout,
            wait,
            kind="dynamic",
            exchange=exchange,
            durable=durable,
            ack=ack,
            max_hops=max_hops,
            vhost=vhost,
        )

    @dynamic_app.command("del")
    def dynamic_del(
        dest: Dest,
        src: Src,
        exchange: Exchange,
        vhost: VhostOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Delete a dynamic route (and its queue and bindings on SRC)."""
        _delete(admin, dest, src, as_json, timeout, kind="dynamic", exchange=exchange, vhost=vhost)

    @app.command("add")
    def add(
        dest: Dest,
        src: Src,
        exchange: Exchange,
        key: Key,
        src_local: SrcLocal = False,
        durable: Durable = False,
        ack: Ack = 100,
        max_hops: MaxHops = 8,
        wait: Wait = 3.0,
        vhost: VhostOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Messages published to EXCHANGE on SRC matching KEY arrive at EXCHANGE on DEST."""
        owner, remote = (src, dest) if src_local else (dest, src)
        _add(
            admin,
            owner,
            remote,
            as_json,
            timeout,
            wait,
            kind="exchange",
            exchange=exchange,
            key=key,
            push=src_local,
            durable=durable,
            ack=ack,
            max_hops=max_hops,
            vhost=vhost,
        )

    @app.command("del")
    def delete(
        dest: Dest,
        src: Src,
        exchange: Exchange,
        key: Key,
        src_local: SrcLocal = False,
        vhost: VhostOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Delete the route (and the queue it made on the other broker)."""
        owner, remote = (src, dest) if src_local else (dest, src)
        _delete(
            admin,
            owner,
            remote,
            as_json,
            timeout,
            kind="exchange",
            exchange=exchange,
            key=key,
            push=src_local,
            vhost=vhost,
        )

    @queue_app.command("add")
    def queue_add(
        dest: Dest,
        src: Src,
        exchange: Exchange,
        queue: Annotated[str, typer.Argument(help="The queue on SRC to drain.")],
        durable: Durable = False,
        ack: Ack = 100,
        max_hops: MaxHops = 8,
        wait: Wait = 3.0,
        vhost: VhostOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """SRC's QUEUE drains into EXCHANGE on DEST (DEST runs the link)."""
        _add(
            admin,
            dest,
            src,
            as_json,
            timeout,
            wait,
            kind="queue",
            exchange=exchange,
            queue=queue,
            durable=durable,
            ack=ack,
            max_hops=max_hops,
            vhost=vhost,
        )

    @queue_app.command("del")
    def queue_del(
        dest: Dest,
        src: Src,
        exchange: Exchange,
        queue: Annotated[str, typer.Argument(help="The queue on SRC.")],
        vhost: VhostOption = None,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """Delete a queue route."""
        _delete(
            admin,
            dest,
            src,
            as_json,
            timeout,
            kind="queue",
            exchange=exchange,
            queue=queue,
            vhost=vhost,
        )

    @app.command("list")
    def list_routes(
        broker: Broker = DEFAULT_URL,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """The routes BROKER runs."""
        result = admin.request([broker], timeout, "route.list")
        emit(result, as_json, lambda r: show_table(ROUTE_COLUMNS)(r["routes"]))

    @app.command("map")
    def route_map(
        broker: Broker = DEFAULT_URL,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """The federation graph reachable from BROKER: every broker, every route."""
        emit(federation_map(admin, broker, timeout), as_json, _show_map)

    return app


def make_link_app(admin: Admin) -> typer.Typer:
    """The ``link`` command group."""
    app = typer.Typer(help="Federation links (state, errors, counters).", no_args_is_help=True)

    @app.command("list")
    def list_links(
        broker: Broker = DEFAULT_URL,
        as_json: JsonOption = False,
        timeout: TimeoutOption = DEFAULT_TIMEOUT,
    ) -> None:
        """BROKER's links: state, last error, messages forwarded, backlog, rate."""
        emit(admin.request([broker], timeout, "link.list"), as_json, show_table(LINK_COLUMNS))

    return app


def _add(
    admin: Admin,
    owner: str,
    remote: str,
    as_json: bool,
    timeout: float,
    wait: float,
    **arguments: Any,
) -> None:
    """Send route.add to ``owner``; a link that did not come up is an error (route kept)."""
    result = admin.request(
        [owner],
        timeout + wait,
        "route.add",
        remote=_urls(remote),
        local=_masked(owner),
        wait=wait,
        **arguments,
    )
    if as_json:
        emit(result, True, print)
    state = result["state"]
    if state in ("up", "idle"):
        if not as_json:
            typer.echo(f"route {result['route']} added; link {state} to {result['peer']}")
        return
    if wait <= 0 or state == "connecting":
        if not as_json:
            typer.echo(f"route {result['route']} added; link {state}")
        return
    fail(
        f"route {result['route']} added but its link is {state}: {result['last_error']} "
        "(it keeps retrying; 'plugmq route del' removes the route)"
    )


def _delete(
    admin: Admin, owner: str, remote: str, as_json: bool, timeout: float, **arguments: Any
) -> None:
    result = admin.request([owner], timeout, "route.del", remote=_urls(remote), **arguments)
    emit(result, as_json, lambda r: typer.echo(f"route {r['route']} deleted; {r['cleanup']}"))


def _urls(value: str) -> list[str]:
    urls = [url.strip() for url in value.split(",") if url.strip()]
    for url in urls:
        try:
            parse_url(url)
        except ValueError as error:
            fail(str(error), code=2)
    return urls


def _masked(value: str) -> str:
    return ",".join(str(parse_url(url)) for url in _urls(value))


# -- route map ------------------------------------------------------------------------------------


def federation_map(admin: Admin, start: str, timeout: float) -> dict[str, Any]:
    """Walk the routes from ``start``: each remote broker of a route is asked in turn.

    Remote brokers are dialled with ``start``'s credentials at the address the route names
    (a route's stored URL may carry credentials the map must not show). A broker that does
    not answer is listed as unreachable; the walk goes on.
    """
    first = parse_url(start)
    brokers: dict[str, str] = {}
    groups: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []
    unreachable: list[str] = []
    queue: deque[str] = deque([start])
    asked: set[str] = set()
    while queue:
        url = queue.popleft()
        where = _where(url)
        if where in asked:
            continue
        asked.add(where)
        try:
            listing = admin.call([url], timeout, "route.list")
        except (ConnectionFailed, ConnectionClosed, ChannelClosed, ManagementError) as error:
            unreachable.append(f"{where}: {error}")
            continue
        me = listing["broker_id"]
        if me in brokers:
            continue  # reached again by another address (a standby redirected us to its master)
        brokers[me] = where
        for group in (listing.get("network") or {}).get("groups", []):
            _merge_group(groups, group)
            queue.append(_with_credentials(group["master"], first))  # a group's master answers
        for route in listing["routes"]:
            edges.append(_edge(me, route))
            if route.get("group"):
                continue  # its group's master is asked (its standbys would only redirect)
            for remote in route["remote"].split(","):
                queue.append(_with_credentials(remote, first))
    return {
        "brokers": brokers,
        "groups": sorted(groups.values(), key=lambda group: group["group"]),
        "routes": edges,
        "unreachable": unreachable,
    }


def _merge_group(groups: dict[str, dict[str, Any]], group: dict[str, Any]) -> None:
    """Keep the newest word on each group (masters may have heard of a failover at
    different moments)."""
    known = groups.get(group["group"])
    if known is None or group["epoch"] > known["epoch"]:
        groups[group["group"]] = {
            key: group[key] for key in ("group", "master", "standbys", "epoch", "ha", "broker_id")
        }


def _edge(me: str, route: dict[str, Any]) -> dict[str, Any]:
    peer = route.get("peer") or route["remote"]
    source, destination = (me, peer) if route["direction"] == "push" else (peer, me)
    return {
        "source": source,
        "destination": destination,
        "exchange": route["exchange"],
        "key": route["queue"] if route["kind"] in ("queue", "demand") else route["key"],
        "kind": route["kind"],
        "direction": route["direction"],
        "runs_on": me,
        "group": route.get("group", ""),
    }


def _where(url: str) -> str:
    parsed = parse_url(url)
    return f"{parsed.host}:{parsed.port}"


def _with_credentials(remote: str, first: Any) -> str:
    parsed = parse_url(remote)
    vhost = parsed.vhost if parsed.vhost != "/" else ""
    return (
        f"{parsed.scheme}://{first.username}:{first.password}@{parsed.host}:{parsed.port}/{vhost}"
    )


def _show_map(result: dict[str, Any]) -> None:
    brokers = result["brokers"]

    def name(broker_id: str) -> str:
        where = brokers.get(broker_id)
        return f"{broker_id} ({where})" if where else broker_id

    groups = result.get("groups") or []
    if groups:
        typer.echo(f"Groups: {len(groups)}")
    for group in groups:
        standbys = ", ".join(group["standbys"]) or "none"
        typer.echo(
            f"  {group['group']}: master {group['master']} (epoch {group['epoch']}, "
            f"{group['ha']}), standbys {standbys}"
        )
    typer.echo(f"Brokers: {len(brokers)}")
    for broker_id in sorted(brokers, key=brokers.get):
        typer.echo(f"  {name(broker_id)}")
    typer.echo(f"Routes: {len(result['routes'])}")
    for edge in sorted(result["routes"], key=lambda e: (e["source"], e["destination"])):
        queue_kind = edge["kind"] in ("queue", "demand")
        what = f"{edge['kind']} queue {edge['key']}" if queue_kind else f"key '{edge['key']}'"
        if edge["kind"] == "dynamic":
            what = "dynamic"
        typer.echo(
            f"  {name(edge['source'])} => {name(edge['destination'])}: "
            f"exchange '{edge['exchange']}' {what} ({edge['direction']})"
        )
    for line in result["unreachable"]:
        typer.echo(f"Unreachable: {line}")
