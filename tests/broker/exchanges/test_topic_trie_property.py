"""Property tests: the topic exchange agrees with an independent word matcher.

The reference matcher below is a direct recursive reading of RabbitMQ's rules and shares no
code with the trie: keys split on ``.`` with ``""`` as zero words, ``*`` is one word, ``#`` is
zero or more words.
"""

from __future__ import annotations

from exchange_fakes import Dest, Msg
from hypothesis import given, settings
from hypothesis import strategies as st

from plugmq.broker.exchanges import TopicExchange

PATTERN_WORDS = st.sampled_from(["a", "b", "", "*", "#"])
KEY_WORDS = st.sampled_from(["a", "b", "", "*", "#"])


def _words(key: str) -> list[str]:
    return key.split(".") if key else []


def reference_match(pattern: str, key: str) -> bool:
    """Whether ``pattern`` matches ``key`` under RabbitMQ's topic rules (slow, obviously right)."""
    return _match(_words(pattern), _words(key))


def _match(pattern: list[str], key: list[str]) -> bool:
    if not pattern:
        return not key
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, key[skip:]) for skip in range(len(key) + 1))
    if not key:
        return False
    return (head == "*" or head == key[0]) and _match(rest, key[1:])


patterns = st.lists(PATTERN_WORDS, max_size=6).map(".".join)
keys = st.lists(KEY_WORDS, max_size=6).map(".".join)


def expected(bound: list[tuple[str, Dest]], key: str) -> set[Dest]:
    """The destinations the reference matcher routes ``key`` to."""
    return {dest for pattern, dest in bound if reference_match(pattern, key)}


@settings(max_examples=300, deadline=None)
@given(bound_patterns=st.lists(patterns, max_size=12), probe=st.lists(keys, max_size=12))
def test_routing_matches_reference(bound_patterns: list[str], probe: list[str]) -> None:
    exchange = TopicExchange("/", "t")
    bound = [(pattern, Dest(f"q{n}")) for n, pattern in enumerate(bound_patterns)]
    for pattern, dest in bound:
        exchange.bind(dest, pattern, {})
    for key in probe + probe:  # the second pass is answered from the cache
        assert set(exchange.route(Msg(key))) == expected(bound, key)


@settings(max_examples=200, deadline=None)
@given(
    operations=st.lists(
        st.tuples(st.booleans(), st.integers(0, 3), patterns), min_size=1, max_size=30
    ),
    probe=st.lists(keys, min_size=1, max_size=8),
)
def test_bind_unbind_sequences_match_reference(
    operations: list[tuple[bool, int, str]], probe: list[str]
) -> None:
    exchange, queues = TopicExchange("/", "t"), [Dest(f"q{n}") for n in range(4)]
    live: set[tuple[str, Dest]] = set()
    for is_bind, which, pattern in operations:
        dest = queues[which]
        if is_bind:
            exchange.bind(dest, pattern, {})
            live.add((pattern, dest))
        else:
            exchange.unbind(dest, pattern, {})
            live.discard((pattern, dest))
        for key in probe:  # route after every change, so stale cache entries would show
            assert set(exchange.route(Msg(key))) == expected(sorted(live, key=str), key)
    for pattern, dest in list(live):
        exchange.unbind(dest, pattern, {})
    assert exchange._trie.is_empty
