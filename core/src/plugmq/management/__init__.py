"""Management over AMQP: requests to an in-broker service, as ``qpid-config`` and ``qpid-stat``.

See ``docs/management.md``. :mod:`.protocol` is the wire format, :mod:`.service` the in-broker
consumer, :mod:`.commands` the command registry (extended by plugins through the
``plugmq_management_commands`` hook), :mod:`.client` the requesting side used by the CLI.
"""
