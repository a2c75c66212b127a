"""The fanout exchange: every bound destination gets every message."""

from __future__ import annotations

from exchange_fakes import Dest, NoHeadersMsg

from plugmq.broker.exchanges import FanoutExchange


def make() -> FanoutExchange:
    """A fresh fanout exchange."""
    return FanoutExchange("/", "amq.fanout")


def test_routes_to_all_whatever_the_key(q1: Dest, q2: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "ignored", {})
    exchange.bind(q2, "", {})
    for key in ("", "a", "ignored", "#"):
        assert set(exchange.route(NoHeadersMsg(key))) == {q1, q2}


def test_nothing_bound_routes_nowhere() -> None:
    assert not make().route(NoHeadersMsg("a"))


def test_route_returns_the_stored_set(q1: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "", {})
    assert exchange.route(NoHeadersMsg("a")) is exchange.route(NoHeadersMsg("b"))


def test_destination_stays_until_its_last_binding_goes(q1: Dest, q2: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "a", {})
    exchange.bind(q1, "b", {})
    exchange.bind(q2, "a", {})
    exchange.unbind(q1, "a", {})
    assert set(exchange.route(NoHeadersMsg())) == {q1, q2}
    exchange.unbind(q1, "b", {})
    assert set(exchange.route(NoHeadersMsg())) == {q2}


def test_unbind_destination(q1: Dest, q2: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "a", {})
    exchange.bind(q1, "b", {})
    exchange.bind(q2, "", {})
    assert len(exchange.unbind_destination(q1)) == 2
    assert set(exchange.route(NoHeadersMsg())) == {q2}
    assert exchange.binding_count == 1
