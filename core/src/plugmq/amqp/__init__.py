"""The AMQP 0-9-1 codec: sans-IO framing and method encoding. Never imports trio."""
