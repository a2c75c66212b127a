"""Reading back plain data a store pickled: what every store plugin needs, written once.

Stores keep configuration values and entity records (AMQP field values: containers, numbers,
strings, bytes, decimals, dates and times) with :mod:`pickle`, which is fast and keeps the
field types RabbitMQ's equivalence rules compare. Unpickling runs code for any global a
payload names, so stored data is read back with :func:`load_plain`, which builds only plain
data and refuses everything else: a damaged or foreign store cannot make the broker run code.
"""

from __future__ import annotations

import io
import pickle
from typing import Any


def load_plain(data: bytes | memoryview) -> Any:
    """Unpickle ``data`` allowing only plain data; :class:`pickle.UnpicklingError` otherwise."""
    return _PlainUnpickler(io.BytesIO(bytes(data))).load()


class _PlainUnpickler(pickle.Unpickler):
    """Builds only plain data: containers, numbers, strings, bytes, decimals, date and time."""

    _ALLOWED = frozenset(
        {
            ("builtins", "set"),
            ("builtins", "frozenset"),
            ("builtins", "bytearray"),
            ("builtins", "complex"),
            ("decimal", "Decimal"),
            ("datetime", "datetime"),
            ("datetime", "date"),
            ("datetime", "time"),
            ("datetime", "timedelta"),
            ("datetime", "timezone"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        """Refuse every global that is not plain data."""
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not plain data")
        return super().find_class(module, name)
