"""Datasets made here, in the Kaggle layout: the synthetic demo set, the
real-recorded evaluation sets, and synthetic shards for speed checks."""
