"""Speed of the training stage (tools/benchmark_train, tools/benchmark_gpu):
examples a second of the compiled training step."""

import dataclasses
import os
import tempfile
import time
from typing import Tuple

from tagger import settings
from tagger.lab import speed_input


def train_rate(run, steps: int, warmup: int = 3, lr: float = 1e-4) -> float:
  """Training examples/s of a trainer.FoldRun over `steps` steps after
  `warmup` (which pay for tracing), from its fresh model at epoch 0;
  writes nothing."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  parts = run.prepare(0)
  iterator = iter(parts.train_data)
  lr = tf.constant(lr, tf.float32)
  for _ in range(warmup):
    parts.steps.train_step(next(iterator), lr)[0].numpy()
  start = time.perf_counter()
  for _ in range(steps):
    loss, _ = parts.steps.train_step(next(iterator), lr)
  loss.numpy()
  return steps * run.data.input.batch_size / (time.perf_counter() - start)


def benchmark_train(data_dir: str = "", num_records: int = 600,
                    batch_size: int = 32, length: int = 512, warmup: int = 3,
                    steps: int = 15, strategy_name: str = "auto",
                    precision: str = "auto",
                    jit_compile: bool = False) -> dict:
  """Training examples/s of the stage-2 model at one input length, with the
  device-side augmentation (crop/pad, shift, flip, erasing, mixup) in the
  step and without it (crop/pad only, no mixup).

  Without data_dir, writes synthetic shards (41 classes, 350 PCA) first.
  """
  from tagger import distribute  # pylint: disable=g-import-not-at-top
  from tagger.datasets import synthetic  # pylint: disable=g-import-not-at-top
  from tagger.train import trainer  # pylint: disable=g-import-not-at-top

  strategy = distribute.make_strategy(strategy_name)
  policy, why = distribute.choose_precision(precision)
  distribute.set_precision(policy, why)
  results = {"length": length, "batch_size": batch_size, "precision": policy,
             "strategy": distribute.describe(strategy),
             "jit_compile": jit_compile}
  with tempfile.TemporaryDirectory() as tmp:
    if not data_dir:
      data_dir = os.path.join(tmp, "shards")
      synthetic.write_synthetic_shards(data_dir, synthetic.SyntheticSet(
          num_records, median_frames=600, sigma=0.3))
    for name, augment in (("with_augmentation", True),
                          ("without_augmentation", False)):
      config = settings.default_config()
      config.stage = 2
      config.input.batch_size = batch_size
      config.input.length_range = (length, length + 1)
      config.input.length_quantum = 1
      config.input.eval_lengths = (length,)
      config.model.bn_momentum = 0.9
      config.tensorboard_images = 0
      config.jit_compile = jit_compile
      if not augment:
        config.augment.shift_fraction = 0.0
        config.augment.flip_probability = 0.0
        config.augment.erase_probability = 0.0
        config.augment.mixup_alpha = 0.0
      run = trainer.FoldRun(config, data_dir, os.path.join(tmp, name),
                            strategy, 0)
      results[name + "_examples_per_sec"] = train_rate(run, steps, warmup)
      results[name + "_traces"] = run.traces["train"]
  results["examples_per_sec"] = results["with_augmentation_examples_per_sec"]
  return results


@dataclasses.dataclass(frozen=True)
class GpuBenchmark:
  """What tools/benchmark_gpu measures (one field per flag): the batch, the
  input lengths, timed and warm-up steps, precision, strategy, XLA, the
  synthetic clips, the timed host batches and the backbone."""
  batch_size: int = 64
  lengths: Tuple[int, ...] = (263, 513, 763)
  steps: int = 20
  warmup: int = 3
  precision: str = "auto"
  strategy_name: str = "auto"
  jit_compile: bool = False
  num_records: int = 2000
  pipeline_steps: int = 200
  backbone: str = "mobilenet_v2"


def benchmark_gpu(spec: GpuBenchmark = GpuBenchmark(),
                  progress=print) -> dict:
  """The figures that decide a GPU run, on synthetic shards (41 classes,
  350 PCA, clips of realistic lengths): the training step's examples/s of
  stage 1 and stage 2 at each input length (the reference's batch and
  lengths by default; full augmentation on the device), the host input
  pipeline's examples/s on the same machine, and their ratio (above 1:
  the host keeps up with the step). backbone: a registered one that
  trains on the reference's features. Tiny arguments make it a CPU
  check."""
  from tagger import distribute  # pylint: disable=g-import-not-at-top
  from tagger.datasets import synthetic  # pylint: disable=g-import-not-at-top
  from tagger.train import trainer  # pylint: disable=g-import-not-at-top

  strategy = distribute.make_strategy(spec.strategy_name)
  policy, why = distribute.choose_precision(spec.precision)
  distribute.set_precision(policy, why)
  results = {"batch_size": spec.batch_size, "lengths": list(spec.lengths),
             "backbone": spec.backbone,
             "precision": policy, "precision_reason": why,
             "strategy": distribute.describe(strategy),
             "jit_compile": bool(spec.jit_compile)}
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = os.path.join(tmp, "shards")
    synthetic.write_synthetic_shards(data_dir, synthetic.SyntheticSet(
        spec.num_records, median_frames=500, sigma=0.5))
    for stage in (1, 2):
      rates = []
      for length in spec.lengths:
        config = settings.default_config()
        config.stage = stage
        config.input.batch_size = spec.batch_size
        config.input.length_range = (length, length + 1)
        config.input.length_quantum = 1
        config.input.eval_lengths = (length,)
        config.tensorboard_images = 0
        config.jit_compile = bool(spec.jit_compile)
        config.model.backbone = spec.backbone
        run = trainer.FoldRun(config, data_dir, os.path.join(
            tmp, f"stage{stage}_{length}"), strategy, 0)
        rates.append(train_rate(run, spec.steps, spec.warmup))
        progress(f"stage {stage}, length {length}: {rates[-1]:.1f} "
                 "examples/s")
      results[f"stage{stage}_examples_per_sec"] = rates
      # One epoch's mix of lengths: the harmonic mean of the rates.
      results[f"stage{stage}_mean_examples_per_sec"] = len(rates) / sum(
          1.0 / r for r in rates)
    host = speed_input.benchmark_pipeline(data_dir, batch_size=spec.batch_size,
                              warmup=min(30, spec.pipeline_steps),
                              steps=spec.pipeline_steps, host_only=True)
  results["host_examples_per_sec"] = host["host_only_examples_per_sec"]
  results["host_over_step"] = (results["host_examples_per_sec"] /
                               results["stage1_mean_examples_per_sec"])
  return results
