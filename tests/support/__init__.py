"""Helpers shared by the test suite: real broker processes, free ports, raw AMQP sockets."""
