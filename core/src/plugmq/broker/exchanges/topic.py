"""The topic exchange: routing keys matched against ``*``/``#`` patterns, cached per key."""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Any

from plugmq.broker.exchange import EMPTY, Binding, Exchange, RoutableMessage
from plugmq.broker.topic_trie import TopicTrie, split_pattern


class TopicExchange(Exchange):
    """Routes with RabbitMQ's topic rules (see :mod:`plugmq.broker.topic_trie`).

    Matching walks a trie of binding words; its result is cached per routing key as a
    frozenset, so a repeated key costs one dict lookup. Any bind or unbind that changes the
    trie clears the cache.

    The cache is bounded by :attr:`CACHE_LIMIT` and simply cleared when full. Routing keys
    often embed identifiers (``order.81723.created``), so an unbounded cache would grow with
    every distinct key ever published; an LRU would bound it too but costs bookkeeping on
    every hit, while clearing costs one trie walk per key afterwards and keeps hits free.
    """

    type_name = "topic"
    CACHE_LIMIT = 10_000

    def _setup_routing(self) -> None:
        """Start with an empty trie and cache."""
        self._trie = TopicTrie()
        self._cache: dict[str, frozenset[Any]] = {}

    def _route_key(self, binding: Binding) -> Hashable:
        """File a binding under its normalised words, so ``a.#.#`` and ``a.#`` share a node."""
        return split_pattern(binding.routing_key)

    def _attach(self, route_key: tuple[str, ...], binding: Binding) -> None:
        """Add the destination to the trie and forget cached results."""
        self._trie.add(route_key, binding.destination)
        self._cache.clear()

    def _detach(self, route_key: tuple[str, ...], binding: Binding) -> None:
        """Remove the destination from the trie and forget cached results."""
        self._trie.remove(route_key, binding.destination)
        self._cache.clear()

    def route(self, message: RoutableMessage) -> Collection[Any]:
        """Return the destinations whose pattern matches ``message.routing_key``."""
        key = message.routing_key
        cached = self._cache.get(key)
        if cached is None:
            cached = self._match(key)
        return cached

    def _match(self, key: str) -> frozenset[Any]:
        """Walk the trie for ``key`` and cache the result."""
        matched = self._trie.match(key)
        result = frozenset(matched) if matched else EMPTY
        if len(self._cache) >= self.CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = result
        return result
