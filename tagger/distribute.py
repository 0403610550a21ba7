"""Strategy and precision: one place decides where and how training runs."""

import json
import os

import keras
import tensorflow as tf
from absl import logging

from tagger import errors

STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")
PRECISIONS = ("auto", "float32", "mixed_float16", "mixed_bfloat16")


class DistributeError(errors.UserError):
  """A strategy or precision that cannot run here; the message says why."""


def split_cpu(replicas: int) -> None:
  """Splits the CPU into `replicas` logical devices, so that mirrored code
  runs on several replicas without GPUs (tests, debugging). Must run before
  TensorFlow initialises its devices."""
  if replicas <= 1:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * replicas)
  except RuntimeError as e:
    raise DistributeError(f"cannot split the CPU into {replicas} devices "
                          f"after TensorFlow started ({e})") from e


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
  """auto: MirroredStrategy over all visible GPUs when there are several,
  else one device (the GPU, or the CPU). mirrored on a machine without GPUs
  mirrors over its logical CPU devices. multi_worker reads TF_CONFIG."""
  if name not in STRATEGIES:
    raise DistributeError(f"strategy must be one of {STRATEGIES}, not "
                          f"{name!r}")
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise DistributeError(
          "--strategy=multi_worker needs TF_CONFIG (the cluster and this "
          "task), e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:2222\","
          " \"host2:2222\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'")
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  if name == "auto":
    name = "mirrored" if len(gpus) > 1 else "one_device"
  if name == "mirrored":
    devices = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def choose_precision(name: str = "auto") -> str:
  """auto: mixed_float16 (with loss scaling) on GPUs, float32 on CPUs."""
  if name not in PRECISIONS:
    raise DistributeError(f"precision must be one of {PRECISIONS}, not "
                          f"{name!r}")
  if name == "auto":
    return "mixed_float16" if tf.config.list_logical_devices("GPU") \
        else "float32"
  return name


def set_precision(policy: str) -> None:
  keras.mixed_precision.set_global_policy(policy)
  logging.info("precision policy: %s", policy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the one task that writes files (always, but in multi-worker
  runs: the chief, or worker 0 when the cluster has no chief)."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  config = json.loads(os.environ.get("TF_CONFIG", "{}"))
  task = config.get("task", {})
  task_type, index = task.get("type"), task.get("index", 0)
  if task_type == "chief":
    return True
  has_chief = "chief" in config.get("cluster", {})
  return task_type in (None, "worker") and index == 0 and not has_chief


def worker_index(strategy: tf.distribute.Strategy) -> int:
  """This worker's input pipeline index (0 but in multi-worker runs)."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return 0
  resolver = strategy.cluster_resolver
  return int(resolver.task_id or 0)


def task_name() -> str:
  """This process's task in TF_CONFIG ('worker:1'), or 'local'."""
  task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
  if not task:
    return "local"
  return f"{task.get('type', 'worker')}:{task.get('index', 0)}"


def describe(strategy: tf.distribute.Strategy) -> str:
  name = type(strategy).__name__
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    name = "MultiWorkerMirroredStrategy"  # its class is named differently
  return f"{name} with {strategy.num_replicas_in_sync} replica(s)"


def finite_everywhere(grads):
  """Per-replica gradients, made non-finite on every replica when they are
  on any (call in replica context, before a LossScaleOptimizer's apply).

  Keras 3's LossScaleOptimizer decides "skip this step and halve the loss
  scale" from the first replica's gradients alone, then all-reduces them
  all: when only another replica overflowed (its batch differs), inf and
  NaN reach the weights. Measured on 2 CPU replicas (tests/test_trainer.py
  test_an_overflow_on_one_replica_skips_the_step_on_all). One scalar
  all-reduce per step makes every replica see the same verdict.
  """
  present = [g for g in grads if g is not None]
  if not present:
    return grads
  finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(g))
                                   for g in present]))
  context = tf.distribute.get_replica_context()
  failed = context.all_reduce(tf.distribute.ReduceOp.SUM,
                              1.0 - tf.cast(finite, tf.float32))
  poison = tf.where(failed > 0, float("nan"), 0.0)
  return [None if g is None else g + tf.cast(poison, g.dtype) for g in grads]
