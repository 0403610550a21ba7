"""Batches -> a model dir: the resumable distributed trainer, its run
state and schedules, the settings every config starts from, strategy and
precision (distribute), preemption, and the pictures it writes."""
