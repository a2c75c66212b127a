"""``plugmq perf``: a PerfTest-like benchmark tool for any AMQP 0-9-1 broker.

The tool drives a broker through fixed scenarios (see :mod:`plugmq.perf.scenarios`) with
producer and consumer *worker processes* (:mod:`plugmq.perf.workers`), each running its own
trio loop on plugmq's client, so that on a small machine the generator spreads over cores
and is not the bottleneck. The parent process only orchestrates: it declares the topology,
starts the workers, samples their shared counters for progress and for the measurement
window, reads the broker's CPU time and RSS from ``/proc`` when given ``--broker-pid``, and
reports (:mod:`plugmq.perf.report`) as a table or JSON.

``ceiling`` measures the tool itself against :mod:`plugmq.perf.sink`, a fake broker that only
reads what producers send and floods consumers with pre-encoded deliveries.
"""

from plugmq.perf.scenarios import SCENARIOS, PerfConfig, PerfError, run_scenario

__all__ = ["SCENARIOS", "PerfConfig", "PerfError", "run_scenario"]
