"""Fast failover: telling a dead master from a slow one without waiting for ZooKeeper.

ZooKeeper ends a dead master's mastership when its session expires (``--zk-session-timeout``,
4 s by default). A replica knows sooner: Berkeley DB tells it at once when its replication
connection to the master breaks (``DB_EVENT_REP_CONNECT_BROKEN``; a kill -9 closes the
socket). The replica then **probes** the master's replication address with a TCP connect:

* **refused**: nothing listens there. The master's Replication Manager listens on that address
  for as long as its environment is open, and a broker stops writing before it closes its
  environment (fencing stops the journal first), so the old master has stopped writing for
  good: it can never again commit a transaction, let alone get it acknowledged. The replica
  ends that mastership in ZooKeeper itself (:func:`plugmq_ha_zk.election.end_mastership`:
  deletes the ``master`` node only if the epoch counter still holds the dead master's epoch,
  so a newer master is never touched) and the election starts at once.
* **accepted**: a process is there (a paused or busy master, or the same broker restarted as a
  replica): nothing is decided; ZooKeeper's session expiry decides, as before.
* **no answer** (timeout, host down, network partition): nothing is decided either; session
  expiry decides. A partitioned master fences itself when it loses ZooKeeper.

Safety does not rest on the probe: the election still needs a quorum of reported positions
(the winner holds every confirmed message) and a confirm still needs a quorum's
acknowledgements; the probe only replaces "the session expired" by "the master cannot write
any more", which is the property the session expiry stood for.
"""

from __future__ import annotations

import socket

#: How long a probe waits for the master's replication port to answer.
PROBE_TIMEOUT = 0.5


def master_gone(address: tuple[str, int], timeout: float = PROBE_TIMEOUT) -> bool:
    """True only when the connection to ``address`` is refused (nothing listens there).

    Blocking: run it in a worker thread. Any other outcome (accepted, timeout, unreachable
    host) is False: it does not prove the master stopped.
    """
    try:
        with socket.create_connection(address, timeout=timeout):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
