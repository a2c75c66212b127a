"""plugmq-ha-zk: ZooKeeper master election and Berkeley DB replication with a quorum."""
