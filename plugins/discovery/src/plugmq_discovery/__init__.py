"""plugmq-discovery: the masters of HA groups find each other (ZooKeeper or UDP multicast)."""
