"""plugmq plugin: AMQP over RDMA (RDMA CM + reliable-connected verbs, ``amqp+rdma://`` dialer).

The wire protocol (see :mod:`.framing`) carries the AMQP byte stream in pre-registered buffers
with credit-based flow control (:mod:`.credit`), the way Qpid's rdma transport did. The logic
is sans-IO and runs over any :class:`~plugmq_transport_rdma.qp.QueuePair`: the real one
(:mod:`.verbs`, pyverbs) or an in-memory one (:mod:`.memory`) used by the tests.
"""

__version__ = "0.1.0"
