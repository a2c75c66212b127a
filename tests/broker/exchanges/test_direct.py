"""The direct exchange, and the binding bookkeeping every exchange type inherits."""

from __future__ import annotations

from exchange_fakes import Dest, Msg, NoHeadersMsg

from plugmq.broker.exchange import EMPTY, Binding
from plugmq.broker.exchanges import DirectExchange


def make() -> DirectExchange:
    """A fresh direct exchange."""
    return DirectExchange("/", "amq.direct", durable=True)


def test_constructor_keeps_attributes() -> None:
    exchange = DirectExchange(
        "v", "x", durable=True, auto_delete=True, internal=True, arguments={"a": 1}
    )
    assert (exchange.vhost, exchange.name, exchange.kind) == ("v", "x", "exchange")
    assert (exchange.durable, exchange.auto_delete, exchange.internal) == (True, True, True)
    assert exchange.arguments == {"a": 1}
    assert DirectExchange.type_name == "direct"


def test_routes_by_exact_key(q1: Dest, q2: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "a", {})
    exchange.bind(q2, "b", {})
    assert set(exchange.route(Msg("a"))) == {q1}
    assert set(exchange.route(Msg("b"))) == {q2}
    assert exchange.route(Msg("c")) is EMPTY
    assert exchange.route(Msg("")) is EMPTY


def test_route_returns_the_stored_set(q1: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "a", {})
    assert exchange.route(Msg("a")) is exchange.route(Msg("a"))


def test_route_never_reads_headers(q1: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "a", {})
    assert set(exchange.route(NoHeadersMsg("a"))) == {q1}


def test_bind_is_idempotent(q1: Dest) -> None:
    exchange = make()
    assert exchange.bind(q1, "a", {"x": 1, "y": "s"}) is True
    assert exchange.bind(q1, "a", {"y": "s", "x": 1}) is False
    assert exchange.binding_count == 1


def test_arguments_with_other_types_make_another_binding(q1: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "a", {"x": 1})
    assert exchange.bind(q1, "a", {"x": True}) is True
    assert exchange.bind(q1, "a", {"x": 1.0}) is True
    assert exchange.binding_count == 3


def test_same_name_different_object_is_another_destination() -> None:
    old, new = Dest("q"), Dest("q")
    exchange = make()
    exchange.bind(old, "a", {})
    assert exchange.bind(new, "a", {}) is True
    exchange.unbind_destination(old)
    assert set(exchange.route(Msg("a"))) == {new}


def test_unbind_reports_whether_it_existed(q1: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "a", {})
    assert exchange.unbind(q1, "a", {"other": 1}) is False
    assert exchange.unbind(q1, "a", {}) is True
    assert exchange.unbind(q1, "a", {}) is False
    assert exchange.route(Msg("a")) is EMPTY
    assert exchange.binding_count == 0


def test_destination_stays_while_another_binding_routes_it(q1: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "a", {"n": 1})
    exchange.bind(q1, "a", {"n": 2})
    exchange.unbind(q1, "a", {"n": 1})
    assert set(exchange.route(Msg("a"))) == {q1}
    exchange.unbind(q1, "a", {"n": 2})
    assert exchange.route(Msg("a")) is EMPTY


def test_unbind_destination_removes_all_of_its_bindings(q1: Dest, q2: Dest) -> None:
    exchange = make()
    exchange.bind(q1, "a", {})
    exchange.bind(q1, "b", {"k": "v"})
    exchange.bind(q2, "a", {})
    removed = exchange.unbind_destination(q1)
    assert removed == [Binding(q1, "a", {}), Binding(q1, "b", {"k": "v"})]
    assert set(exchange.route(Msg("a"))) == {q2}
    assert exchange.route(Msg("b")) is EMPTY
    assert exchange.unbind_destination(q1) == []


def test_bindings_listed_in_order_and_safe_to_unbind_while_iterating(q1: Dest, q2: Dest) -> None:
    exchange = make()
    exchange.bind(q2, "b", {})
    exchange.bind(q1, "a", {})
    listed = list(exchange.bindings())
    assert [(b.destination, b.routing_key) for b in listed] == [(q2, "b"), (q1, "a")]
    for binding in exchange.bindings():
        exchange.unbind(binding.destination, binding.routing_key, binding.arguments)
    assert exchange.binding_count == 0


def test_has_exchange_destinations_follows_exchange_bindings(q1: Dest) -> None:
    exchange, downstream = make(), Dest("x2", kind="exchange")
    exchange.bind(q1, "a", {})
    assert exchange.has_exchange_destinations is False
    exchange.bind(downstream, "a", {})
    exchange.bind(downstream, "b", {})
    assert exchange.has_exchange_destinations is True
    exchange.unbind(downstream, "a", {})
    assert exchange.has_exchange_destinations is True
    exchange.unbind_destination(downstream)
    assert exchange.has_exchange_destinations is False


def test_exchange_can_be_a_destination(q1: Dest) -> None:
    upstream, downstream = make(), make()
    upstream.bind(downstream, "a", {})
    assert set(upstream.route(Msg("a"))) == {downstream}
    assert upstream.has_exchange_destinations is True


def test_bind_copies_arguments(q1: Dest) -> None:
    exchange, arguments = make(), {"k": 1}
    exchange.bind(q1, "a", arguments)
    arguments["k"] = 2
    assert exchange.unbind(q1, "a", {"k": 1}) is True


def test_binding_equality_and_hash(q1: Dest, q2: Dest) -> None:
    nested = {"t": {"b": [1, 2], "a": b"x"}}
    assert Binding(q1, "k", {"a": 1, "b": nested}) == Binding(q1, "k", {"b": nested, "a": 1})
    assert hash(Binding(q1, "k", {"a": 1})) == hash(Binding(q1, "k", {"a": 1}))
    assert Binding(q1, "k", {}) != Binding(q2, "k", {})
    assert Binding(q1, "k", {}) != Binding(q1, "j", {})
    assert Binding(q1, "k", {"a": 1}) != Binding(q1, "k", {"a": True})
