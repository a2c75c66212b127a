"""A trie of topic binding patterns, matched word by word (RabbitMQ's topic semantics).

Keys and patterns are split on ``"."`` exactly as RabbitMQ splits them: the empty string is
*zero* words, and every other string keeps its empty words (``"a..b"`` is ``a``, ``""``,
``b``; ``"."`` is two empty words). In a pattern ``*`` matches exactly one word and ``#``
matches zero or more words; in a routing key they are ordinary words.

Matching walks the trie like an NFA: it keeps the set of nodes reachable after each word of
the key, so a match costs O(words x live nodes), independent of how many bindings hang off
nodes the key never reaches. A node entered through a ``#`` edge loops on any word. Runs of
``#`` in a pattern are collapsed when the pattern is split (``a.#.#`` matches the same keys as
``a.#``), so a pattern can never make the walk revisit the same node twice.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

STAR = "*"
HASH = "#"


def split_key(key: str) -> tuple[str, ...]:
    """Split a routing key into words; ``""`` is zero words (RabbitMQ's ``split_topic_key``)."""
    return tuple(key.split(".")) if key else ()


def split_pattern(pattern: str) -> tuple[str, ...]:
    """Split a binding key into words, collapsing runs of ``#`` into one ``#``."""
    words: list[str] = []
    for word in split_key(pattern):
        if not (word == HASH and words and words[-1] == HASH):
            words.append(word)
    return tuple(words)


class _Node:
    """One trie node: literal children, the ``*`` and ``#`` children, and bound destinations.

    Wildcard children are kept out of ``children`` so that a literal ``*`` or ``#`` word in a
    routing key never follows a wildcard edge by dictionary lookup.
    """

    __slots__ = ("children", "destinations", "hash", "loops", "star")

    def __init__(self, loops: bool = False) -> None:
        self.children: dict[str, _Node] = {}
        self.star: _Node | None = None
        self.hash: _Node | None = None
        self.destinations: set[Any] = set()
        self.loops = loops  # entered through '#': stays active whatever the next word is

    def child(self, word: str) -> _Node | None:
        """The child reached by pattern word ``word``, or None."""
        if word == STAR:
            return self.star
        if word == HASH:
            return self.hash
        return self.children.get(word)

    def add_child(self, word: str) -> _Node:
        """Return the child for pattern word ``word``, creating it if needed."""
        node = self.child(word)
        if node is not None:
            return node
        node = _Node(loops=word == HASH)
        if word == STAR:
            self.star = node
        elif word == HASH:
            self.hash = node
        else:
            self.children[word] = node
        return node

    def drop_child(self, word: str) -> None:
        """Remove the child for pattern word ``word``."""
        if word == STAR:
            self.star = None
        elif word == HASH:
            self.hash = None
        else:
            del self.children[word]

    def is_empty(self) -> bool:
        """True when nothing is bound here or below (the node can be pruned)."""
        return not (self.destinations or self.children or self.star or self.hash)


class TopicTrie:
    """Topic patterns mapped to destinations; :meth:`match` finds every pattern a key matches.

    The trie stores each destination once per pattern: callers that allow several bindings
    with the same pattern and destination count references themselves.
    """

    def __init__(self) -> None:
        self._root = _Node()

    @property
    def is_empty(self) -> bool:
        """True when no pattern is stored (every node has been pruned)."""
        return self._root.is_empty()

    def add(self, words: tuple[str, ...], destination: Hashable) -> None:
        """Bind ``destination`` to the pattern ``words`` (from :func:`split_pattern`)."""
        node = self._root
        for word in words:
            node = node.add_child(word)
        node.destinations.add(destination)

    def remove(self, words: tuple[str, ...], destination: Hashable) -> bool:
        """Unbind ``destination`` from ``words``; prune emptied nodes. True if it was bound."""
        path = [self._root]
        for word in words:
            node = path[-1].child(word)
            if node is None:
                return False
            path.append(node)
        if destination not in path[-1].destinations:
            return False
        path[-1].destinations.discard(destination)
        self._prune(path, words)
        return True

    def _prune(self, path: list[_Node], words: tuple[str, ...]) -> None:
        """Drop the empty nodes at the end of ``path`` so dead branches cost nothing to walk."""
        for depth in range(len(words), 0, -1):
            if not path[depth].is_empty():
                return
            path[depth - 1].drop_child(words[depth - 1])

    def match(self, key: str) -> set[Any]:
        """Return the destinations of every pattern that routing key ``key`` matches."""
        states: set[_Node] = set()
        _enter(states, self._root)
        for word in split_key(key):
            states = _step(states, word)
            if not states:
                return set()
        matched: set[Any] = set()
        for node in states:
            matched |= node.destinations
        return matched


def _enter(states: set[_Node], node: _Node | None) -> None:
    """Add ``node`` to ``states`` with the ``#`` chain below it (``#`` may match zero words)."""
    while node is not None and node not in states:
        states.add(node)
        node = node.hash


def _step(states: set[_Node], word: str) -> set[_Node]:
    """Return the nodes active after consuming ``word`` from every node in ``states``."""
    following: set[_Node] = set()
    for node in states:
        if node.loops:
            _enter(following, node)
        _enter(following, node.children.get(word))
        _enter(following, node.star)
    return following
