"""Shards -> training batches: the tf.data pipeline (bucketing, pairing,
replicas), host and device batches, the augmentation ops, and the tf.data
service for host work on other machines."""
