"""Public types passed by the control-plane event hooks (see :mod:`plugmq.hookspecs`).

Plugins import these; the engine's own objects (``plugmq.broker.*``) stay private. A binding
event carries names, not engine objects: a binding outlives neither end, and federation sends
bindings to other brokers, where only names mean anything.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from plugmq.broker.exchange import freeze_arguments

DestinationKind = Literal["queue", "exchange"]


@dataclass(frozen=True, eq=False)
class BindingEvent:
    """One binding, as ``plugmq_binding_added`` / ``plugmq_binding_removed`` report it.

    Two values are equal (and hash alike) when they name the same binding by AMQP's rule:
    same source, destination, destination kind, routing key and arguments (compared with
    their field types, in any order). So a plugin can keep a set of the bindings it has seen
    and find the one a removal names.

    :ivar source: the source exchange's name.
    :ivar destination: the destination queue's or exchange's name.
    :ivar destination_kind: ``"queue"`` or ``"exchange"``.
    :ivar routing_key: the binding key.
    :ivar arguments: the binding arguments, read-only (a view of the broker's own table:
        copy it with ``dict(...)`` to keep it beyond the hook call).
    """

    source: str
    destination: str
    destination_kind: DestinationKind
    routing_key: str
    arguments: Mapping[str, Any]
    _identity: tuple[Hashable, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Freeze the identity once: events are compared and hashed, never mutated."""
        identity = (
            self.source,
            self.destination,
            self.destination_kind,
            self.routing_key,
            freeze_arguments(dict(self.arguments)),
        )
        object.__setattr__(self, "_identity", identity)

    def __eq__(self, other: object) -> bool:
        """Same binding by AMQP's identity rule (see the class docstring)."""
        if not isinstance(other, BindingEvent):
            return NotImplemented
        return self._identity == other._identity

    def __hash__(self) -> int:
        """Hash of the identity, so events can be kept in sets and dict keys."""
        return hash(self._identity)
