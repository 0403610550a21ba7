"""Strategy and precision: one place decides where and how training runs."""

import dataclasses
import json
import os
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence, Tuple

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


# ---------------------------------------------------------------------------
# What this machine has: GPUs as TensorFlow and as the driver see them.


@dataclasses.dataclass(frozen=True)
class Gpu:
  name: str
  compute_capability: Optional[Tuple[int, int]]   # None: not reported
  memory_mb: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class Devices:
  """TensorFlow's GPUs, nvidia-smi's (None: no nvidia-smi on PATH) and
  TensorFlow's build (CUDA or not)."""
  tf_gpus: Tuple[Gpu, ...]
  driver_gpus: Optional[Tuple[Gpu, ...]]
  cuda_build: bool
  build: Dict[str, str]

  @property
  def unusable_gpus(self) -> bool:
    """The driver lists GPUs that TensorFlow cannot use."""
    return bool(self.driver_gpus) and not self.tf_gpus


def tensorflow_gpus() -> Tuple[Gpu, ...]:
  out = []
  for gpu in tf.config.list_physical_devices("GPU"):
    details = tf.config.experimental.get_device_details(gpu)
    capability = details.get("compute_capability")
    out.append(Gpu(details.get("device_name", gpu.name),
                   tuple(capability) if capability else None))
  return tuple(out)


def driver_gpus(command: str = "nvidia-smi") -> Optional[Tuple[Gpu, ...]]:
  """The GPUs nvidia-smi lists (None: no nvidia-smi; () when it fails or
  lists none)."""
  if shutil.which(command) is None:
    return None
  try:
    result = subprocess.run(
        [command, "--query-gpu=name,compute_cap,memory.total",
         "--format=csv,noheader,nounits"], capture_output=True, text=True,
        timeout=30, check=False)
  except (OSError, subprocess.TimeoutExpired):
    return ()
  if result.returncode != 0:
    return ()
  gpus = []
  for line in result.stdout.splitlines():
    parts = [p.strip() for p in line.split(",")]
    if len(parts) < 3 or not parts[0]:
      continue
    try:
      major, minor = (int(v) for v in parts[1].split("."))
      capability = (major, minor)
    except ValueError:
      capability = None
    memory = int(float(parts[2])) if parts[2].replace(".", "").isdigit() \
        else None
    gpus.append(Gpu(parts[0], capability, memory))
  return tuple(gpus)


def devices() -> Devices:
  info = tf.sysconfig.get_build_info()
  build = {k: str(info[k]) for k in ("cuda_version", "cudnn_version")
           if k in info}
  return Devices(tensorflow_gpus(), driver_gpus(),
                 bool(info.get("is_cuda_build")), build)


GPU_INSTALL = ("pip install -e '.[gpu]' (TensorFlow with its CUDA "
               "libraries; README, 'GPUs')")


def check_gpus_usable(found: Devices, strategy: str) -> None:
  """Refuses to train on the CPU when the driver lists GPUs TensorFlow
  cannot use, unless the CPU was asked for (--strategy=one_device)."""
  if not found.unusable_gpus or strategy == "one_device":
    return
  why = ("this TensorFlow was built without CUDA" if not found.cuda_build
         else "TensorFlow found no usable GPU (CUDA libraries or driver)")
  raise DistributeError(
      f"nvidia-smi lists {len(found.driver_gpus)} GPU(s) but {why}: "
      f"{GPU_INSTALL}; tools/doctor says more; --strategy=one_device "
      "trains on the CPU anyway")


def describe_devices(found: Devices) -> List[str]:
  """What tools/doctor prints: the build, the GPUs each side sees, what
  --strategy=auto and --precision=auto pick and why; the last line is the
  verdict (OK, or the one line that training would stop with)."""
  def gpu(g: Gpu) -> str:
    capability = ("compute ?" if g.compute_capability is None else
                  "compute %d.%d" % g.compute_capability)
    memory = f", {g.memory_mb} MiB" if g.memory_mb else ""
    return f"{g.name} ({capability}{memory})"
  build = ("CUDA build, CUDA " + found.build.get("cuda_version", "?") +
           ", cuDNN " + found.build.get("cudnn_version", "?")
           if found.cuda_build else "CPU-only build")
  lines = [f"TensorFlow {tf.__version__} ({build})",
           "TensorFlow sees: " + ("; ".join(gpu(g) for g in found.tf_gpus)
                                  or "no GPU")]
  if found.driver_gpus is None:
    lines.append("nvidia-smi: not on PATH (no NVIDIA driver here)")
  else:
    lines.append(f"nvidia-smi lists {len(found.driver_gpus)} GPU(s)" + (
        ": " + "; ".join(gpu(g) for g in found.driver_gpus)
        if found.driver_gpus else ""))
  count = len(found.tf_gpus)
  lines.append("strategy auto: " + (
      f"MirroredStrategy over {count} GPUs" if count > 1 else
      "OneDeviceStrategy on the GPU" if count else
      "OneDeviceStrategy on the CPU"))
  policy, why = choose_precision("auto", found.tf_gpus)
  lines.append(f"precision auto: {policy} ({why})")
  try:
    check_gpus_usable(found, "auto")
    lines.append("OK")
  except DistributeError as e:
    lines.append(f"PROBLEM: {e}")
  return lines


def make_strategy(name: str = "auto",
                  found: Optional[Devices] = None) -> tf.distribute.Strategy:
  """auto: MirroredStrategy over all visible GPUs when there are several,
  else one device (the GPU, or the CPU). mirrored on a machine without GPUs
  mirrors over its logical CPU devices. multi_worker reads TF_CONFIG.
  Refuses the CPU when the driver lists GPUs that TensorFlow cannot use
  (check_gpus_usable), but for one_device."""
  if name not in STRATEGIES:
    raise DistributeError(f"strategy must be one of {STRATEGIES}, not "
                          f"{name!r}")
  check_gpus_usable(found or devices(), name)
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
    devices_ = gpus or tf.config.list_logical_devices("CPU")
    return tf.distribute.MirroredStrategy([d.name for d in devices_])
  return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


BF16_CAPABILITY = (8, 0)   # Ampere: bfloat16 tensor cores


def choose_precision(name: str = "auto",
                     gpus: Optional[Sequence[Gpu]] = None
                     ) -> Tuple[str, str]:
  """(policy, why). auto: mixed_bfloat16 when every GPU has compute
  capability >= 8.0 (A100, H100, L4, RTX 30xx and newer: bfloat16 tensor
  cores; the float32 exponent range, so no loss scaling and no overflow),
  mixed_float16 with loss scaling on older GPUs, float32 on CPUs. gpus:
  TensorFlow's (tensorflow_gpus() when None)."""
  if name not in PRECISIONS:
    raise DistributeError(f"precision must be one of {PRECISIONS}, not "
                          f"{name!r}")
  if name != "auto":
    return name, "asked for"
  gpus = tensorflow_gpus() if gpus is None else tuple(gpus)
  if not gpus:
    return "float32", "auto: no GPU"
  capabilities = [g.compute_capability for g in gpus]
  if all(c is not None and c >= BF16_CAPABILITY for c in capabilities):
    return "mixed_bfloat16", ("auto: every GPU has compute capability >= "
                              "8.0; bfloat16 needs no loss scaling")
  return "mixed_float16", ("auto: compute capability "
                           f"{_capabilities(capabilities)}, below 8.0 (no "
                           "bfloat16): float16 with loss scaling")


def _capabilities(capabilities) -> str:
  return ", ".join("unknown" if c is None else f"{c[0]}.{c[1]}"
                   for c in capabilities)


_CHOSEN = {"why": ""}


def set_precision(policy: str, why: str = "") -> None:
  keras.mixed_precision.set_global_policy(policy)
  _CHOSEN["why"] = why
  logging.info("precision policy: %s%s", policy, f" ({why})" if why else "")


def precision_reason() -> str:
  """Why set_precision's policy was chosen (for the run's summary)."""
  return _CHOSEN["why"]


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


def num_workers(strategy: tf.distribute.Strategy) -> int:
  """How many workers feed the replicas, one input pipeline each: the
  cluster's chief and worker tasks (1 but in multi-worker runs)."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return 1
  spec = strategy.cluster_resolver.cluster_spec()
  return max(1, sum(spec.num_tasks(job) for job in ("chief", "worker")
                    if job in spec.jobs))


def mean_over_workers(strategy: tf.distribute.Strategy,
                      value: float) -> float:
  """The mean of a host value over all workers (itself but in multi-worker
  runs): every worker then takes the same decisions (best weights,
  plateau, stop), so mirrored weights stay in step. A collective: every
  worker must call it."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return value
  per_replica = strategy.run(lambda: tf.constant(value, tf.float64))
  return float(strategy.reduce(tf.distribute.ReduceOp.MEAN, per_replica,
                               axis=None))


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
