"""The ``plugmq`` command line: ``broker``, ``plugins`` and the admin commands."""
