"""The exchange base class and the binding record every exchange type shares.

An exchange keeps two views of its bindings:

* the *binding set* (:class:`Binding` objects), which is what clients declared and what the
  journal, the management API and ``unbind_destination`` work with;
* a *routing table* owned by each subclass (a dict for direct, a trie for topic ...), which is
  what :meth:`Exchange.route` reads once per published message.

Several bindings can mean the same thing to the routing table (a queue bound to a direct
exchange twice with the same key but different arguments). The base class therefore counts
references per ``(route key, destination)`` and tells the subclass only when a destination
enters or leaves its table (:meth:`Exchange._attach` / :meth:`Exchange._detach`). Subclasses
stay small: they never see duplicates and never have to scan bindings to decide a removal.

Routing tables hold destination *objects*, never names: a queue deleted and re-declared under
the same name is a different destination, and the old one must not receive messages.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

# One definition of binding identity, shared with the stores (re-exported for exchange types).
from plugmq.store.records import freeze_arguments as freeze_arguments

EMPTY: frozenset[Any] = frozenset()
"""What ``route`` returns when nothing matches: one shared constant, so a miss allocates nothing."""


class Destination(Protocol):
    """What a binding points at: a queue or another exchange.

    Destinations are hashed by identity (queues and exchanges define no ``__eq__``), so two
    objects with the same name are different destinations.
    """

    name: str
    kind: str  # "queue" or "exchange"


class RoutableMessage(Protocol):
    """The two attributes of a message that exchanges read."""

    routing_key: str

    @property
    def headers(self) -> dict[str, Any] | None:
        """The AMQP headers table, decoded lazily; only the headers exchange reads it."""


@dataclass(frozen=True, eq=False)
class Binding:
    """One binding from an exchange to ``destination``.

    Two bindings are equal when they have the same destination object, routing key and
    arguments (compared with their field types, in any order), which is RabbitMQ's rule for
    idempotent ``queue.bind``. ``arguments`` must not be mutated after construction.
    """

    destination: Any
    routing_key: str
    arguments: dict[str, Any]
    _identity: tuple[str, Hashable] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Freeze the arguments once, so hashing and comparing a binding is cheap."""
        object.__setattr__(self, "_identity", (self.routing_key, freeze_arguments(self.arguments)))

    def __eq__(self, other: object) -> bool:
        """Same destination object, same routing key, equivalent arguments."""
        if not isinstance(other, Binding):
            return NotImplemented
        return self.destination is other.destination and self._identity == other._identity

    def __hash__(self) -> int:
        """Hash of the destination, the key and the frozen arguments."""
        return hash((self.destination, self._identity))


class Exchange(ABC):
    """Base class of every exchange type; a plugin registers subclasses.

    A subclass sets :attr:`type_name`, implements :meth:`route`, :meth:`_attach` and
    :meth:`_detach`, and may override :meth:`_route_key`, :meth:`_setup_routing`,
    :meth:`validate_arguments` and :meth:`validate_binding`. Everything here is synchronous and
    does no I/O: the engine calls :meth:`route` once per published message.
    """

    type_name: ClassVar[str]
    kind = "exchange"

    def __init__(
        self,
        vhost: str,
        name: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.vhost = vhost
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments: dict[str, Any] = dict(arguments or {})
        self.validate_arguments(self.arguments)
        #: The ``alternate-exchange`` argument: where messages routed nowhere go instead.
        alternate = self.arguments.get("alternate-exchange")
        self.alternate: str | None = alternate if isinstance(alternate, str) else None
        self.has_exchange_destinations = False
        # dicts used as insertion-ordered sets, so listings come out in declaration order.
        self._bindings: dict[Binding, None] = {}
        self._by_destination: dict[Any, dict[Binding, None]] = {}
        self._references: dict[tuple[Hashable, Any], int] = {}
        self._exchange_bindings = 0
        self._setup_routing()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.vhost!r}/{self.name!r} {self.binding_count} bindings>"

    # -- what subclasses provide ------------------------------------------------------------

    @classmethod
    def validate_arguments(cls, arguments: dict[str, Any]) -> None:
        """Check exchange.declare arguments; raise an :class:`AMQPError` if they are invalid.

        The built-in types accept any arguments (RabbitMQ validates none for them); the
        engine handles the generic ones such as ``alternate-exchange``.
        """
        return None

    @classmethod
    def validate_binding(cls, routing_key: str, arguments: dict[str, Any]) -> None:
        """Check a binding before it is added; raise ``PreconditionFailed`` if it is invalid."""
        return None

    def _setup_routing(self) -> None:
        """Create the subclass's empty routing table (called at the end of ``__init__``)."""
        return None

    def _route_key(self, binding: Binding) -> Hashable:
        """What the routing table files ``binding`` under; equal keys share one table entry."""
        return binding.routing_key

    @abstractmethod
    def _attach(self, route_key: Any, binding: Binding) -> None:
        """Put ``binding.destination`` in the routing table under ``route_key``.

        Called for the first binding with this route key and destination only.
        """

    @abstractmethod
    def _detach(self, route_key: Any, binding: Binding) -> None:
        """Take ``binding.destination`` out of the routing table under ``route_key``.

        Called when the last binding with this route key and destination goes.
        """

    @abstractmethod
    def route(self, message: RoutableMessage) -> Collection[Any]:
        """Return the destinations ``message`` goes to (each at most once).

        The result may be the exchange's own table: callers must not mutate it nor keep it
        across a bind or unbind.
        """

    # -- bindings ---------------------------------------------------------------------------

    def bind(self, destination: Any, routing_key: str, arguments: dict[str, Any] | None) -> bool:
        """Add a binding; return True if it is new, False if an equal one already existed.

        Raises ``PreconditionFailed`` (from :meth:`validate_binding`) for invalid arguments.
        """
        arguments = dict(arguments or {})
        self.validate_binding(routing_key, arguments)
        binding = Binding(destination, routing_key, arguments)
        if binding in self._bindings:
            return False
        self._add(binding)
        return True

    def unbind(self, destination: Any, routing_key: str, arguments: dict[str, Any] | None) -> bool:
        """Remove a binding; return True if it existed."""
        binding = Binding(destination, routing_key, dict(arguments or {}))
        if binding not in self._bindings:
            return False
        self._remove(binding)
        return True

    def unbind_destination(self, destination: Any) -> list[Binding]:
        """Remove every binding to ``destination`` (it was deleted); return the removed ones."""
        removed = list(self._by_destination.get(destination, ()))
        for binding in removed:
            self._remove(binding)
        return removed

    def bindings(self) -> Iterator[Binding]:
        """Iterate over the bindings in the order they were added.

        Iterates over a snapshot, so the caller may unbind while iterating.
        """
        return iter(tuple(self._bindings))

    @property
    def binding_count(self) -> int:
        """How many bindings this exchange has (for auto-delete and ``if-unused``)."""
        return len(self._bindings)

    # -- bookkeeping ------------------------------------------------------------------------

    def _add(self, binding: Binding) -> None:
        """Record a new binding and attach its destination on the first reference."""
        destination = binding.destination
        self._bindings[binding] = None
        self._by_destination.setdefault(destination, {})[binding] = None
        self._count_exchange_binding(binding, +1)
        ref = (self._route_key(binding), destination)
        count = self._references.get(ref, 0)
        self._references[ref] = count + 1
        if count == 0:
            self._attach(ref[0], binding)

    def _remove(self, binding: Binding) -> None:
        """Forget a binding and detach its destination on the last reference."""
        destination = binding.destination
        del self._bindings[binding]
        of_destination = self._by_destination[destination]
        del of_destination[binding]
        if not of_destination:
            del self._by_destination[destination]
        self._count_exchange_binding(binding, -1)
        ref = (self._route_key(binding), destination)
        count = self._references.pop(ref)
        if count > 1:
            self._references[ref] = count - 1
        else:
            self._detach(ref[0], binding)

    def _count_exchange_binding(self, binding: Binding, delta: int) -> None:
        """Keep :attr:`has_exchange_destinations` current.

        A plain attribute rather than a property: the engine reads it for every message to
        decide whether exchange-to-exchange resolution is needed at all.
        """
        if binding.destination.kind == "exchange":
            self._exchange_bindings += delta
            self.has_exchange_destinations = self._exchange_bindings > 0
