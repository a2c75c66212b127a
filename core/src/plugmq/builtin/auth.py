"""Built-in plugin: SASL PLAIN and AMQPLAIN."""

from __future__ import annotations

from plugmq.auth import AMQPlainMechanism, Mechanism, PlainMechanism
from plugmq.hookspecs import hookimpl


@hookimpl
def plugmq_auth_mechanisms() -> list[type[Mechanism]]:
    """PLAIN first (what every client uses), then AMQPLAIN."""
    return [PlainMechanism, AMQPlainMechanism]
