"""The ingress exchange (plugmq_federation.ingress): a pushed copy routes nowhere.

Headers are made by :func:`plugmq_federation.hops.hop` as the source's push link makes them,
and the window is the one the broker's pull links share, so both paths recognise each other.
"""

from __future__ import annotations

from dataclasses import dataclass

from pamqp import commands

from plugmq.amqp.content import encode_header
from plugmq_federation.hops import Forward, hop
from plugmq_federation.ingress import (
    RESENT_ARGUMENT,
    ROUTE_ARGUMENT,
    IngressExchange,
    IngressState,
    origin_key,
)


@dataclass
class Pushed:
    """What the engine hands ``route``: the content header as published, and the key."""

    header: bytes
    routing_key: str = "k"


@dataclass(eq=False)
class Target:
    """The route's exchange, as a destination."""

    name: str = "amq.topic"
    kind: str = "exchange"


def _pushed(
    body: bytes, message_id: str | None = None, path: tuple[bytes, ...] = (b"src",)
) -> Pushed:
    fields = {"message_id": message_id} if message_id else {}
    header = encode_header(len(body), commands.Basic.Properties(**fields))
    if not path:
        return Pushed(header)
    for sender, receiver in zip(path, (*path[1:], b"dest"), strict=True):
        result = hop(header, body, sender, receiver, 8, None)
        assert isinstance(result, Forward)
        header = result.header
    return Pushed(header)


def _ingress(
    state: IngressState, resent: bool = False, target: Target | None = None
) -> tuple[IngressExchange, Target]:
    exchange = IngressExchange(
        "/", "federation.ingress.r1", arguments={ROUTE_ARGUMENT: "r1", RESENT_ARGUMENT: resent}
    )
    target = target or Target()
    exchange.bind(target, "", {})
    exchange.attach(state)
    return exchange, target


def test_a_copy_with_a_message_id_routes_nowhere() -> None:
    state = IngressState()
    exchange, target = _ingress(state)
    assert set(exchange.route(_pushed(b"a", "id-1"))) == {target}
    assert not exchange.route(_pushed(b"other body, same id", "id-1"))
    assert set(exchange.route(_pushed(b"a", "id-2"))) == {target}
    assert state.duplicates == 1


def test_identical_messages_without_id_pass_once_each_and_a_resend_is_dropped() -> None:
    state = IngressState()
    exchange, target = _ingress(state)
    resend, _ = _ingress(state, resent=True, target=target)
    message = _pushed(b"same")
    assert set(exchange.route(message)) == {target}
    assert set(exchange.route(message)) == {target}  # a second identical message: legitimate
    assert not resend.route(message)  # sent again after a break: in doubt, a copy
    assert not resend.route(message)
    assert set(resend.route(message)) == {target}  # a third resend was never stored: let in
    assert state.duplicates == 2


def test_the_pull_path_and_the_push_path_share_the_window() -> None:
    state = IngressState()
    exchange, _ = _ingress(state)
    # A mesh: the message is pulled from its origin directly, then pushed by 'mid'.
    direct = _pushed(b"mesh", path=()).header
    pulled = hop(direct, b"mesh", b"origin", b"dest", 8, state.window)
    assert isinstance(pulled, Forward)
    pushed = _pushed(b"mesh", path=(b"origin", b"mid"))
    assert not exchange.route(pushed)
    key, route, counted = origin_key(pushed.header)
    assert (key, route, counted) == (pulled.key, b"origin,mid", True)
    assert origin_key(pulled.header)[:2] == (pulled.key, b"")  # what the pull link admitted


def test_a_message_without_a_path_is_not_decoded_and_passes() -> None:
    exchange, target = _ingress(IngressState())
    plain = Pushed(encode_header(1, commands.Basic.Properties(message_id="x")))
    assert set(exchange.route(plain)) == {target}
    assert set(exchange.route(plain)) == {target}


def test_before_attach_everything_passes() -> None:
    exchange = IngressExchange("/", "federation.ingress.r2")
    target = Target()
    exchange.bind(target, "", {})
    message = _pushed(b"a", "id")
    assert set(exchange.route(message)) == {target}
    assert set(exchange.route(message)) == {target}
