"""Plugin loading and the typed facade over the hooks of :mod:`plugmq.hookspecs`."""
