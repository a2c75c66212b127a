"""plugmq plugin: shared-filesystem master/standby (ActiveMQ's shared file system master/slave).

Several brokers point ``--data-dir`` at one directory on a shared filesystem. The broker that
holds a POSIX record lock on ``<data-dir>/ha/master.lock`` and a valid lease in
``<data-dir>/ha/lease.json`` is master; the others wait as standbys. See
``docs/plugins/ha_sharedfs.md``.
"""
