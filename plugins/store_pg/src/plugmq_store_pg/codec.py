"""How record fields become column values and back.

Names (vhosts, queues, exchanges, routing keys) are stored as ``bytea`` of their UTF-8
(``surrogatepass``): PostgreSQL's ``text`` cannot hold the NUL character AMQP allows in a name.
Arguments tables and config values are pickled and read back by an unpickler that builds only
plain data (containers, numbers, strings, bytes, decimals, dates and times), so a row edited by
hand cannot run code in the broker. A binding's identity is the ``repr`` of
:func:`plugmq.store.records.freeze_arguments` (type-tagged, sorted by field name): stable, and
the same rule the exchanges use.
"""

from __future__ import annotations

import pickle
from typing import Any

from plugmq.store.plain import load_plain
from plugmq.store.records import BindingAdded, BindingRemoved, binding_identity


class DecodeError(ValueError):
    """A value read from the database is not what this store writes."""


def name(text: str) -> bytes:
    """A name as stored."""
    return text.encode("utf-8", "surrogatepass")


def text(value: bytes | memoryview) -> str:
    """A stored name read back."""
    return bytes(value).decode("utf-8", "surrogatepass")


def binding_key(record: BindingAdded | BindingRemoved) -> bytes:
    """The arguments part of a binding's primary key (its identity with the other columns)."""
    return repr(binding_identity(record)[5]).encode("utf-8", "surrogatepass")


def dump(value: Any) -> bytes:
    """Pickle plain data; raises ``ValueError`` for anything :func:`load` would refuse."""
    data = pickle.dumps(value, protocol=5)
    try:
        load_plain(data)
    except pickle.UnpicklingError as error:
        raise ValueError(f"a value the PostgreSQL store cannot keep: {error}") from None
    return data


def load(data: bytes | memoryview) -> Any:
    """The value :func:`dump` stored."""
    try:
        return load_plain(data)
    except Exception as error:
        raise DecodeError(f"malformed stored value: {error!r}") from error
