"""Built-in behaviour (exchange types, auth, memory store) as plugins of :mod:`plugmq.hookspecs`."""
