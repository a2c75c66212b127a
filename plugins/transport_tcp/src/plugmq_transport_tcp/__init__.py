"""plugmq plugin: plain TCP transport (listener on 5672 by default, ``amqp://`` dialer)."""

__version__ = "0.1.0"
