"""Optional arguments of queue.declare and exchange.declare: parsing, validation, equivalence.

Errors carry RabbitMQ 3.10's texts (``rabbit_amqqueue:declare_args/0`` and
``rabbit_misc:assert_args_equivalence/4``), because clients and their tests match on them::

    invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}
    inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received '2000' but current
    is '1000'

Field types are not kept by the codec (pamqp decodes tables to Python values), so the type
names in messages are inferred from the value: an ``int`` that fits 32 bits is ``signedint``.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from plugmq.amqp.errors import PreconditionFailed

OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
MAX_PRIORITY = 255

#: Queue arguments whose values must match on redeclare, in the order RabbitMQ checks them.
QUEUE_EQUIVALENCE_KEYS = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-queue-type",
)
EXCHANGE_EQUIVALENCE_KEYS = ("alternate-exchange",)


@dataclass(frozen=True, slots=True)
class QueueArguments:
    """The queue.declare arguments the engine acts on (None: not set)."""

    message_ttl: int | None = None
    expires: int | None = None
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_priority: int | None = None
    single_active_consumer: bool = False

    @property
    def limited(self) -> bool:
        """True when a length or byte limit applies."""
        return self.max_length is not None or self.max_length_bytes is not None

    @property
    def rejects_publish(self) -> bool:
        """True when an over-limit publish is refused rather than the head dropped."""
        return self.limited and self.overflow != "drop-head"


PLAIN = QueueArguments()
"""The arguments of a queue declared without any the engine acts on."""


def type_name(value: Any) -> str:
    """The AMQP field type RabbitMQ would name for ``value`` (inferred, see module doc)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -(1 << 31) <= value < (1 << 31) else "long"
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return "void"


_TYPE_NAMES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (str, "longstr"),
    ((bytes, bytearray), "binary"),
    (float, "double"),
    (decimal.Decimal, "decimal"),
    (datetime.datetime, "timestamp"),
    (dict, "table"),
    (list, "array"),
)


# -- queue arguments ---------------------------------------------------------------------


def parse_queue_arguments(arguments: dict[str, Any], queue: str, vhost: str) -> QueueArguments:
    """Validate queue.declare arguments; 406 with RabbitMQ's text for an invalid one."""
    if not arguments:
        return PLAIN
    where = f"for queue '{queue}' in vhost '{vhost}'"
    for key, check in _QUEUE_CHECKS.items():
        if key in arguments:
            reason = check(arguments[key], arguments)
            if reason is not None:
                raise PreconditionFailed(_invalid(key, where, reason, queue, vhost), 50, 10)
    if not any(key in arguments for key in _ACTED_ON):
        return PLAIN
    return QueueArguments(
        message_ttl=arguments.get("x-message-ttl"),
        expires=arguments.get("x-expires"),
        max_length=arguments.get("x-max-length"),
        max_length_bytes=arguments.get("x-max-length-bytes"),
        overflow=arguments.get("x-overflow", "drop-head"),
        dead_letter_exchange=arguments.get("x-dead-letter-exchange"),
        dead_letter_routing_key=arguments.get("x-dead-letter-routing-key"),
        max_priority=arguments.get("x-max-priority"),
        single_active_consumer=arguments.get("x-single-active-consumer", False),
    )


def _invalid(key: str, where: str, reason: str, queue: str, vhost: str) -> str:
    if reason.startswith("invalid type"):
        return f"{reason} for arg '{key}' in queue '{queue}' in vhost '{vhost}'"
    return f"invalid arg '{key}' {where}: {reason}"


def _integer(value: Any) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return f'"expected integer, got {type_name(value)}"'


def _non_negative(value: Any, _arguments: dict[str, Any]) -> str | None:
    problem = _integer(value)
    if problem is None and value < 0:
        return f"{{value_negative,{value}}}"
    return problem


def _positive(value: Any, arguments: dict[str, Any]) -> str | None:
    problem = _non_negative(value, arguments)
    if problem is None and value == 0:
        return "{value_zero,0}"
    return problem


def _priority(value: Any, arguments: dict[str, Any]) -> str | None:
    problem = _non_negative(value, arguments)
    if problem is None and value > MAX_PRIORITY:
        return f"{{max_value_exceeded,{value}}}"
    return problem


def _overflow(value: Any, _arguments: dict[str, Any]) -> str | None:
    if not isinstance(value, str):
        return f"{{unacceptable_type,{type_name(value)}}}"
    return None if value in OVERFLOW_MODES else "invalid_overflow"


def _dlx(value: Any, _arguments: dict[str, Any]) -> str | None:
    return None if isinstance(value, str) else f"invalid type '{type_name(value)}'"


def _dlrk(value: Any, arguments: dict[str, Any]) -> str | None:
    if not isinstance(value, str):
        return f"{{unacceptable_type,{type_name(value)}}}"
    return None if "x-dead-letter-exchange" in arguments else "routing_key_but_no_dlx_defined"


def _boolean(value: Any, _arguments: dict[str, Any]) -> str | None:
    return None if isinstance(value, bool) else f"{{unacceptable_type,{type_name(value)}}}"


def _one_of(what: str, allowed: tuple[str, ...]) -> Callable[[Any, dict[str, Any]], str | None]:
    def check(value: Any, _arguments: dict[str, Any]) -> str | None:
        if isinstance(value, str) and value in allowed:
            return None
        return f"\"unsupported {what} '{value}'\""

    return check


_QUEUE_CHECKS: dict[str, Callable[[Any, dict[str, Any]], str | None]] = {
    "x-expires": _positive,
    "x-message-ttl": _non_negative,
    "x-dead-letter-exchange": _dlx,
    "x-dead-letter-routing-key": _dlrk,
    "x-max-length": _non_negative,
    "x-max-length-bytes": _non_negative,
    "x-max-priority": _priority,
    "x-overflow": _overflow,
    "x-queue-mode": _one_of("queue mode", ("default", "lazy")),
    "x-single-active-consumer": _boolean,
    "x-queue-type": _one_of("queue type", ("classic", "quorum", "stream")),
}
_ACTED_ON = (
    "x-message-ttl",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-dead-letter-exchange",
    "x-max-priority",
    "x-single-active-consumer",
)


# -- exchange arguments ------------------------------------------------------------------


def check_exchange_arguments(arguments: dict[str, Any], exchange: str, vhost: str) -> None:
    """Validate the generic exchange.declare arguments (``alternate-exchange``)."""
    alternate = arguments.get("alternate-exchange")
    if alternate is not None and not isinstance(alternate, str):
        raise PreconditionFailed(
            f"invalid type '{type_name(alternate)}' for arg 'alternate-exchange' in exchange "
            f"'{exchange}' in vhost '{vhost}'",
            40,
            10,
        )


# -- equivalence on redeclare ------------------------------------------------------------


def assert_equivalent(
    current: dict[str, Any],
    received: dict[str, Any],
    keys: tuple[str, ...],
    resource: str,
    class_id: int,
    method_id: int,
) -> None:
    """406 ``inequivalent arg`` when one of ``keys`` differs (``resource``: "queue 'q' in ...").

    Integers of any width are equivalent when equal, as RabbitMQ compares type classes.
    """
    for key in keys:
        old, new = current.get(key, _MISSING), received.get(key, _MISSING)
        if _same(old, new):
            continue
        raise PreconditionFailed(
            f"inequivalent arg '{key}' for {resource}: received {_describe(new, old)} but "
            f"current is {_describe(old, new)}",
            class_id,
            method_id,
        )


_MISSING = object()


def _same(old: Any, new: Any) -> bool:
    if old is _MISSING or new is _MISSING:
        return old is new
    return _type_class(old) == _type_class(new) and old == new


def _type_class(value: Any) -> str:
    name = type_name(value)
    return "int" if name in ("signedint", "long") else name


def _describe(value: Any, other: Any) -> str:
    """RabbitMQ's ``val/1``: 'v' when both sides are set, else none / the value of type."""
    if value is _MISSING:
        return "none"
    shown = str(value).lower() if isinstance(value, bool) else str(value)
    if other is _MISSING:
        return f"the value '{shown}' of type '{type_name(value)}'"
    return f"'{shown}'"
