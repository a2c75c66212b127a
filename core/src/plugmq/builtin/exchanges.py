"""Built-in plugin: registers the direct, fanout, topic and headers exchange types."""

from __future__ import annotations

from collections.abc import Sequence

from plugmq.broker.exchange import Exchange
from plugmq.broker.exchanges import DirectExchange, FanoutExchange, HeadersExchange, TopicExchange
from plugmq.hookspecs import hookimpl


@hookimpl
def plugmq_exchange_types() -> Sequence[type[Exchange]]:
    """Return the four exchange types of AMQP 0-9-1."""
    return [DirectExchange, FanoutExchange, TopicExchange, HeadersExchange]
