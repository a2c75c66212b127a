"""The AMQP engine: connections, channels, virtual hosts, exchanges and queues."""
