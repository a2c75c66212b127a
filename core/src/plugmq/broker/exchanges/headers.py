"""The headers exchange: routing on the message's headers table, as RabbitMQ does it.

A binding's arguments are the pattern. ``x-match`` chooses how its fields combine:

* ``all`` (the default): every field must be present in the message with an equal value;
* ``any``: at least one field must be;
* ``all-with-x`` / ``any-with-x``: the same, but fields whose names start with ``x-`` count
  too (otherwise they are ignored). ``x-match`` itself never counts.

A field bound with a void value (``None``) matches on presence alone. A binding with no
fields that count matches every message under ``all`` and none under ``any``. The routing key
is ignored. Matching is a linear scan of the distinct patterns, as in RabbitMQ.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Any

from plugmq.amqp.errors import PreconditionFailed
from plugmq.broker.exchange import EMPTY, Binding, Exchange, RoutableMessage, freeze_arguments

X_MATCH = "x-match"
_MODES: dict[str, tuple[bool, bool]] = {  # x-match value -> (any, with_x)
    "all": (False, False),
    "any": (True, False),
    "all-with-x": (False, True),
    "any-with-x": (True, True),
}
_NO_HEADERS: dict[str, Any] = {}


class HeaderPattern:
    """A binding's arguments compiled for matching: the mode and the fields that count."""

    __slots__ = ("fields", "match_any")

    def __init__(self, arguments: dict[str, Any]) -> None:
        # An unknown x-match cannot get here (validate_binding rejects it); defaulting to
        # "all" mirrors RabbitMQ for bindings recovered from before validation existed.
        self.match_any, with_x = _MODES.get(arguments.get(X_MATCH), (False, False))
        self.fields: tuple[tuple[str, Any], ...] = tuple(
            (name, value)
            for name, value in arguments.items()
            if name != X_MATCH and (with_x or not name.startswith("x-"))
        )

    def matches(self, headers: dict[str, Any]) -> bool:
        """True if ``headers`` satisfies this pattern."""
        # Plain loops rather than any()/all() over a generator: this runs for every binding
        # of every message, and the generator costs about twice as much.
        if self.match_any:
            for name, value in self.fields:  # noqa: SIM110 (speed, see above)
                if _field_matches(headers, name, value):
                    return True
            return False
        for name, value in self.fields:  # noqa: SIM110 (speed, see above)
            if not _field_matches(headers, name, value):
                return False
        return True


def _field_matches(headers: dict[str, Any], name: str, bound: Any) -> bool:
    """True if header ``name`` is present and, unless ``bound`` is void, equal to it."""
    if name not in headers:
        return False
    return bound is None or _same_value(bound, headers[name])


def _same_value(bound: Any, sent: Any) -> bool:
    """Compare field values the way RabbitMQ's Erlang ``==`` does.

    Numbers compare by value whatever their width (``1 == 1.0``); booleans are not numbers;
    a long string and a byte array with the same bytes are equal (both are binaries).
    """
    if type(bound) is type(sent):
        return bound == sent
    if isinstance(bound, bool) or isinstance(sent, bool):
        return False
    if isinstance(bound, str):
        bound = bound.encode()
    if isinstance(sent, str):
        sent = sent.encode()
    return bound == sent


class HeadersExchange(Exchange):
    """Routes on header values; bind arguments carry the pattern and ``x-match``."""

    type_name = "headers"

    @classmethod
    def validate_binding(cls, routing_key: str, arguments: dict[str, Any]) -> None:
        """Reject an ``x-match`` that is not a string naming one of the four modes."""
        if X_MATCH not in arguments:
            return  # RabbitMQ allows omitting it: "all"
        mode = arguments[X_MATCH]
        if not isinstance(mode, str):
            raise PreconditionFailed(
                f"Invalid x-match field type {type(mode).__name__} (value {mode!r}); "
                "expected longstr"
            )
        if mode not in _MODES:
            raise PreconditionFailed(
                f"Invalid x-match field value {mode!r}; "
                "expected all, any, all-with-x, or any-with-x"
            )

    def _setup_routing(self) -> None:
        """Start with no patterns."""
        self._patterns: dict[tuple[Hashable, Any], HeaderPattern] = {}

    def _route_key(self, binding: Binding) -> Hashable:
        """Bindings with equal arguments match the same messages, whatever their key."""
        return freeze_arguments(binding.arguments)

    def _attach(self, route_key: Hashable, binding: Binding) -> None:
        """Compile the binding's arguments into a pattern for its destination."""
        self._patterns[(route_key, binding.destination)] = HeaderPattern(binding.arguments)

    def _detach(self, route_key: Hashable, binding: Binding) -> None:
        """Forget the pattern."""
        del self._patterns[(route_key, binding.destination)]

    def route(self, message: RoutableMessage) -> Collection[Any]:
        """Return the destinations with at least one pattern the message's headers satisfy."""
        if not self._patterns:
            return EMPTY  # without bindings, do not make the message decode its headers
        headers = message.headers or _NO_HEADERS
        matched: set[Any] = set()
        for (_, destination), pattern in self._patterns.items():
            if destination not in matched and pattern.matches(headers):
                matched.add(destination)
        return matched or EMPTY
