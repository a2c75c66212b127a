"""The topic exchange: RabbitMQ's word matching, the trie behind it and the per-key cache."""

from __future__ import annotations

import pytest
from exchange_fakes import Dest, Msg, NoHeadersMsg

from plugmq.broker.exchange import EMPTY
from plugmq.broker.exchanges import TopicExchange
from plugmq.broker.topic_trie import TopicTrie, split_key, split_pattern


def routes(pattern: str, key: str) -> bool:
    """Whether a topic exchange with only ``pattern`` bound routes ``key``."""
    exchange, queue = TopicExchange("/", "t"), Dest("q")
    exchange.bind(queue, pattern, {})
    return queue in exchange.route(Msg(key))


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.b", "a.b", True),
        ("a.b", "a.c", False),
        ("a.*", "a.b", True),
        ("a.*", "a", False),
        ("a.*", "a.b.c", False),
        ("a.#", "a", True),
        ("a.#", "a.b.c", True),
        ("a.#", "b.a", False),
        ("#", "", True),
        ("#", "a.b.c", True),
        ("#.c", "c", True),
        ("#.c", "a.b.c", True),
        ("#.c", "a.c.d", False),
        ("a.#.c", "a.c", True),
        ("a.#.c", "a.b.b.c", True),
        ("*.#", "", False),
        ("*.#", "a", True),
        ("#.*", "a.b", True),
        ("#.#", "", True),
        ("a.#.#.b", "a.b", True),
        ("a.#.#.b", "a.x.y.b", True),
        ("*", "", False),  # "" is zero words in RabbitMQ, so '*' needs a word
        ("", "", True),
        ("", "a", False),
        ("*", ".", False),  # "." is two empty words
        ("*.*", ".", True),
        ("a..b", "a..b", True),
        ("a.*.b", "a..b", True),
        ("a.#", "a.", True),
        ("a", "a.", False),
        ("a.*", "a.", True),
        ("*", "*", True),
        ("a", "*", False),  # '*' in a routing key is an ordinary word
        ("#", "#", True),
        ("a", "#", False),
    ],
)
def test_rabbitmq_matching_rules(pattern: str, key: str, expected: bool) -> None:
    assert routes(pattern, key) is expected


def test_split_follows_rabbitmq() -> None:
    assert split_key("") == ()
    assert split_key(".") == ("", "")
    assert split_key("a..b") == ("a", "", "b")
    assert split_pattern("#.#.a.#.#.#") == ("#", "a", "#")


def test_route_never_reads_headers() -> None:
    exchange, queue = TopicExchange("/", "t"), Dest("q")
    exchange.bind(queue, "#", {})
    assert set(exchange.route(NoHeadersMsg("a"))) == {queue}


def test_each_destination_once_even_if_several_patterns_match() -> None:
    exchange, queue = TopicExchange("/", "t"), Dest("q")
    for pattern in ("a.b", "a.*", "#", "a.#"):
        exchange.bind(queue, pattern, {})
    assert list(exchange.route(Msg("a.b"))) == [queue]


def test_no_match_returns_the_empty_constant() -> None:
    exchange = TopicExchange("/", "t")
    exchange.bind(Dest("q"), "a", {})
    assert exchange.route(Msg("b")) is EMPTY


def test_repeated_key_is_served_from_the_cache() -> None:
    exchange = TopicExchange("/", "t")
    exchange.bind(Dest("q"), "a.*", {})
    assert exchange.route(Msg("a.b")) is exchange.route(Msg("a.b"))


def test_bind_invalidates_the_cache(q1: Dest, q2: Dest) -> None:
    exchange = TopicExchange("/", "t")
    exchange.bind(q1, "a.*", {})
    assert set(exchange.route(Msg("a.b"))) == {q1}
    exchange.bind(q2, "#.b", {})
    assert set(exchange.route(Msg("a.b"))) == {q1, q2}


def test_unbind_invalidates_the_cache(q1: Dest, q2: Dest) -> None:
    exchange = TopicExchange("/", "t")
    exchange.bind(q1, "a.*", {})
    exchange.bind(q2, "#", {})
    assert set(exchange.route(Msg("a.b"))) == {q1, q2}
    exchange.unbind(q1, "a.*", {})
    assert set(exchange.route(Msg("a.b"))) == {q2}
    exchange.unbind_destination(q2)
    assert exchange.route(Msg("a.b")) is EMPTY


def test_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TopicExchange, "CACHE_LIMIT", 3)
    exchange, queue = TopicExchange("/", "t"), Dest("q")
    exchange.bind(queue, "#", {})
    for n in range(10):
        assert set(exchange.route(Msg(f"k{n}"))) == {queue}
        assert len(exchange._cache) <= 3


def test_equivalent_patterns_share_a_node_but_count_separately(q1: Dest) -> None:
    exchange = TopicExchange("/", "t")
    exchange.bind(q1, "a.#", {})
    exchange.bind(q1, "a.#.#", {})
    exchange.unbind(q1, "a.#.#", {})
    assert set(exchange.route(Msg("a.b"))) == {q1}
    exchange.unbind(q1, "a.#", {})
    assert exchange.route(Msg("a.b")) is EMPTY


def test_trie_prunes_emptied_branches() -> None:
    trie, queue = TopicTrie(), Dest("q")
    patterns = ["a.b.c", "a.*.#", "#", "", "a..b"]
    for pattern in patterns:
        trie.add(split_pattern(pattern), queue)
    for pattern in patterns:
        assert trie.remove(split_pattern(pattern), queue) is True
    assert trie.is_empty
    assert trie.remove(split_pattern("a.b.c"), queue) is False


def test_many_bindings_route_only_their_matches() -> None:
    exchange = TopicExchange("/", "t")
    queues = [Dest(f"q{n}") for n in range(2000)]
    for n, queue in enumerate(queues):
        exchange.bind(queue, f"orders.{n}.*", {})
    exchange.bind(queues[0], "orders.#", {})
    assert set(exchange.route(Msg("orders.7.created"))) == {queues[7], queues[0]}
    assert set(exchange.route(Msg("orders"))) == {queues[0]}
