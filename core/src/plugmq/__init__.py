"""plugmq: an AMQP 0-9-1 message broker built as a small trio core plus pluggy plugins."""

__version__ = "0.1.0"
