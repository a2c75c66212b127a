"""The topic scenario's bindings and routing keys, and an independent reference matcher.

The matcher is a direct transcription of the AMQP 0-9-1 topic rule (words split on ``.``;
``*`` matches exactly one word, ``#`` zero or more), written recursively with no trie and no
cache, so it shares nothing with a broker's optimised implementation. The scenario checks
every delivery count against it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

_FIRST = (
    "sports", "novel", "news", "weather", "music",
    "movie", "stock", "crypto", "food", "travel",
)  # fmt: skip
_SECOND = tuple(f"s{i}" for i in range(20))
_THIRD = ("x", "y", "z", "eu", "us", "asia", "hot", "cold", "new", "old")
_FOURTH = ("a", "b", "c")


def topic_matches(pattern: str, routing_key: str) -> bool:
    """True if the binding ``pattern`` matches ``routing_key`` (AMQP topic rules)."""
    return _match(pattern.split("."), 0, routing_key.split("."), 0)


def _match(pattern: Sequence[str], p: int, words: Sequence[str], w: int) -> bool:
    if p == len(pattern):
        return w == len(words)
    token = pattern[p]
    if token == "#":
        # '#' swallows zero words, or one word and stays
        return _match(pattern, p + 1, words, w) or (
            w < len(words) and _match(pattern, p, words, w + 1)
        )
    if w == len(words):
        return False
    if token == "*" or token == words[w]:
        return _match(pattern, p + 1, words, w + 1)
    return False


def _candidate_patterns() -> list[str]:
    wild: list[str] = []
    for first in _FIRST:
        wild.append(f"{first}.#")
        wild += [f"{first}.*.{third}" for third in _THIRD]
        wild += [f"{first}.#.{third}" for third in _THIRD[:3]]
        wild += [f"{first}.{second}.*" for second in _SECOND]
    wild += [f"*.{second}.{third}" for second in _SECOND for third in _THIRD]
    wild += [f"#.{fourth}" for fourth in _FOURTH]
    wild += [f"*.*.{third}" for third in _THIRD]
    return wild


@dataclass(frozen=True)
class TopicPlan:
    """Bindings per queue and the routing keys the producer cycles through."""

    bindings: tuple[tuple[str, ...], ...]
    """``bindings[q]``: the distinct patterns bound to queue ``q``."""
    keys: tuple[str, ...]
    """Routing keys, published round robin in this order."""

    def expected_matrix(self) -> list[list[bool]]:
        """``matrix[q][k]``: does queue ``q`` receive key ``k``? (reference matcher)."""
        return [
            [any(topic_matches(p, key) for p in patterns) for key in self.keys]
            for patterns in self.bindings
        ]

    def expected_counts(self, sent: int, matrix: list[list[bool]]) -> list[list[int]]:
        """Deliveries per queue and key after ``sent`` round-robin publishes."""
        n = len(self.keys)
        per_key = [sent // n + (1 if k < sent % n else 0) for k in range(n)]
        return [[per_key[k] if row[k] else 0 for k in range(n)] for row in matrix]


def make_plan(
    queues: int = 10, bindings: int = 1000, keys: int = 1000, seed: int = 20261122
) -> TopicPlan:
    """``bindings`` distinct wildcard patterns spread over ``queues``, and ``keys`` keys.

    Patterns look like ``sports.#``, ``novel.*.x``, ``*.s3.eu``, ``news.#.y``; keys have three
    or four words (``sports.s7.x``, ``novel.s2.eu.b``), so ``#`` is exercised both ways.
    """
    rng = random.Random(seed)
    pool = _candidate_patterns()
    if bindings > len(pool):
        extra = [f"{f}.{s}.{t}" for f in _FIRST for s in _SECOND for t in _THIRD]
        pool += rng.sample(extra, min(len(extra), bindings - len(pool)))
    if bindings > len(pool):
        raise ValueError(f"at most {len(pool)} distinct bindings are available")
    patterns = rng.sample(pool, bindings)
    per_queue: list[list[str]] = [[] for _ in range(queues)]
    for index, pattern in enumerate(patterns):
        per_queue[index % queues].append(pattern)
    all_keys = [f"{f}.{s}.{t}" for f in _FIRST for s in _SECOND for t in _THIRD]
    all_keys += [f"{key}.{fourth}" for key in all_keys[::7] for fourth in _FOURTH]
    if keys > len(all_keys):
        raise ValueError(f"at most {len(all_keys)} distinct routing keys are available")
    chosen = rng.sample(all_keys, keys)
    return TopicPlan(tuple(tuple(q) for q in per_queue), tuple(chosen))
