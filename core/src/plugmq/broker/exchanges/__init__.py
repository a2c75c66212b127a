"""The built-in exchange types, one module each: direct, fanout, topic and headers."""

from plugmq.broker.exchanges.direct import DirectExchange
from plugmq.broker.exchanges.fanout import FanoutExchange
from plugmq.broker.exchanges.headers import HeadersExchange
from plugmq.broker.exchanges.topic import TopicExchange

__all__ = ["DirectExchange", "FanoutExchange", "HeadersExchange", "TopicExchange"]
