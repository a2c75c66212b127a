"""The headers exchange: RabbitMQ's x-match rules."""

from __future__ import annotations

from typing import Any

import pytest
from exchange_fakes import Dest, Msg

from plugmq.amqp.errors import PreconditionFailed
from plugmq.broker.exchange import EMPTY
from plugmq.broker.exchanges import HeadersExchange


def routes(binding: dict[str, Any], headers: dict[str, Any] | None) -> bool:
    """Whether a headers exchange with one binding of ``binding`` routes ``headers``."""
    exchange, queue = HeadersExchange("/", "h"), Dest("q")
    exchange.bind(queue, "", binding)
    return queue in exchange.route(Msg("", headers))


@pytest.mark.parametrize(
    ("binding", "headers", "expected"),
    [
        ({"a": 1, "b": "x"}, {"a": 1, "b": "x", "c": 3}, True),  # x-match defaults to all
        ({"a": 1, "b": "x"}, {"a": 1}, False),
        ({"x-match": "all", "a": 1}, {"a": 2}, False),
        ({"x-match": "any", "a": 1, "b": 2}, {"b": 2}, True),
        ({"x-match": "any", "a": 1, "b": 2}, {"a": 2, "b": 1}, False),
        ({"x-match": "all"}, None, True),  # nothing to check: all of nothing holds
        ({}, {"a": 1}, True),
        ({"x-match": "any"}, {"a": 1}, False),
        ({"a": 1}, None, False),
        ({"a": None}, {"a": "anything"}, True),  # void binds presence only
        ({"a": None}, {"b": 1}, False),
        ({"x-match": "any", "a": None}, {"a": None}, True),
        ({"a": 1, "x-id": 9}, {"a": 1}, True),  # x- fields ignored ...
        ({"x-match": "any", "x-id": 9}, {"x-id": 9}, False),
        ({"x-match": "all-with-x", "a": 1, "x-id": 9}, {"a": 1}, False),  # ... unless with-x
        ({"x-match": "all-with-x", "a": 1, "x-id": 9}, {"a": 1, "x-id": 9}, True),
        ({"x-match": "any-with-x", "a": 1, "x-id": 9}, {"x-id": 9}, True),
        ({"x-match": "all-with-x"}, {"x-match": "any"}, True),  # x-match never counts
        ({"a": 1}, {"a": 1.0}, True),  # numbers compare by value, as Erlang's ==
        ({"a": 1}, {"a": True}, False),  # booleans are not numbers
        ({"a": "s"}, {"a": b"s"}, True),  # longstr and byte array are both binaries
        ({"a": "s"}, {"a": "t"}, False),
        ({"a": {"n": [1]}}, {"a": {"n": [1]}}, True),
    ],
)
def test_rabbitmq_matching_rules(
    binding: dict[str, Any], headers: dict[str, Any] | None, expected: bool
) -> None:
    assert routes(binding, headers) is expected


@pytest.mark.parametrize("x_match", ["first", "ALL", "", 1, b"all"])
def test_invalid_x_match_is_refused(x_match: Any) -> None:
    exchange = HeadersExchange("/", "h")
    with pytest.raises(PreconditionFailed) as caught:
        exchange.bind(Dest("q"), "", {"x-match": x_match})
    assert caught.value.reply_code == 406
    assert "x-match" in str(caught.value)
    assert exchange.binding_count == 0


def test_routing_key_is_ignored(q1: Dest) -> None:
    exchange = HeadersExchange("/", "h")
    exchange.bind(q1, "some.key", {"a": 1})
    assert set(exchange.route(Msg("other", {"a": 1}))) == {q1}


def test_destination_matched_once_and_unbound_per_pattern(q1: Dest, q2: Dest) -> None:
    exchange = HeadersExchange("/", "h")
    exchange.bind(q1, "", {"a": 1})
    exchange.bind(q1, "", {"x-match": "any", "a": 1, "b": 2})
    exchange.bind(q2, "", {"b": 2})
    assert sorted(d.name for d in exchange.route(Msg("", {"a": 1, "b": 2}))) == ["q1", "q2"]
    exchange.unbind(q1, "", {"a": 1})
    assert set(exchange.route(Msg("", {"a": 1}))) == {q1}
    exchange.unbind_destination(q1)
    assert exchange.route(Msg("", {"a": 1})) is EMPTY


def test_same_arguments_under_two_keys_share_a_pattern(q1: Dest) -> None:
    exchange = HeadersExchange("/", "h")
    exchange.bind(q1, "k1", {"a": 1})
    exchange.bind(q1, "k2", {"a": 1})
    exchange.unbind(q1, "k1", {"a": 1})
    assert set(exchange.route(Msg("", {"a": 1}))) == {q1}


def test_no_bindings_does_not_decode_headers() -> None:
    class Untouchable:
        routing_key = ""

        @property
        def headers(self) -> None:
            raise AssertionError("headers decoded with nothing bound")

    assert HeadersExchange("/", "h").route(Untouchable()) is EMPTY
