"""Speed of the input stage (tools/benchmark_pipeline,
tools/benchmark_data_service): the host pipeline, its pairings, and the
tf.data service with workers in other processes."""

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from typing import Sequence, Tuple

from tagger import settings
from tagger.lab import measure


def train_shards(tmp: str, data_dir: str, num_records: int, seed: int):
  """(DataInfo, train folds of the first fold's split) of data_dir, or of
  num_records synthetic clips of realistic lengths written into tmp."""
  from tagger.shards import data_info  # pylint: disable=g-import-not-at-top
  from tagger.datasets import synthetic  # pylint: disable=g-import-not-at-top
  if not data_dir:
    data_dir = os.path.join(tmp, "shards")
    synthetic.write_synthetic_shards(data_dir, synthetic.SyntheticSet(
        num_records, seed=seed))
  info = data_info.load_data_info(data_dir)
  return info, data_info.select_folds(info, info.folds[0], "train")


def _serve_in_subprocesses(num_workers: int):
  """A dispatcher and num_workers workers, each its own process (tools/
  data_service) on loopback; returns (address, processes)."""
  from tagger.input import data_service  # pylint: disable=g-import-not-at-top
  ports = data_service.free_ports(num_workers + 1)
  workers = [f"localhost:{p}" for p in ports[1:]]
  tool = [sys.executable, "-m", "tagger.cli.data_service"]
  procs = [subprocess.Popen(tool + ["--role=dispatcher", f"--port={ports[0]}",
                                    "--worker_addresses=" + ",".join(workers)],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)]
  for port, address in zip(ports[1:], workers):
    procs.append(subprocess.Popen(
        tool + ["--role=worker", f"--port={port}",
                f"--dispatcher=localhost:{ports[0]}",
                f"--worker_address={address}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
  address = f"localhost:{ports[0]}"
  for port in ports:  # every server up before the clock starts
    deadline = time.time() + 120
    while True:
      try:
        data_service.check_reachable(f"localhost:{port}", 1.0)
        break
      except data_service.DataServiceError:
        if time.time() > deadline or any(p.poll() is not None for p in procs):
          for p in procs:
            p.kill()
          raise RuntimeError("tf.data service processes did not start")
        time.sleep(0.2)
  return address, procs


@dataclasses.dataclass(frozen=True)
class _Timing:
  """How a rate is measured: steps after warmup, of batch_size, seeded."""
  batch_size: int
  warmup: int
  steps: int
  seed: int


def benchmark_pipeline(data_dir: str = "", num_records: int = 4000,
                       batch_size: int = 64, warmup: int = 30,
                       steps: int = 200, seed: int = 0,
                       pairings: Sequence[str] = (),
                       host_only: bool = False) -> dict:
  """Training-input examples/s: host reading + pairing + bucketing, and the
  augmentation either in tf.data (host) or in a compiled step (device).

  examples_per_sec is the default placement ('device') as a GPU machine
  runs it: the host's tf.data work alone. device_full_* runs the device
  ops on this machine's CPU too, competing with tf.data for the same cores.

  Without data_dir, writes num_records synthetic clips of realistic lengths
  (log-normal, median 5 s) to a temporary folder first (not timed).
  pairings: also time the host side with each of these pairing modes
  (pairing_<mode>_examples_per_sec, its start-up seconds and peak RSS).
  host_only: the host side of placement 'device' only.
  """
  from tagger.input import lengths as lengths_lib  # pylint: disable=g-import-not-at-top
  from tagger.input import pipeline as ip  # pylint: disable=g-import-not-at-top
  timing = _Timing(batch_size, warmup, steps, seed)
  with tempfile.TemporaryDirectory() as tmp:
    info, folds = train_shards(tmp, data_dir, num_records, seed)
    full = settings.AugmentConfig()
    plain = settings.AugmentConfig(shift_fraction=0.0, flip_probability=0.0,
                                   erase_probability=0.0, mixup_alpha=0.0)
    results = {"records": info.num_records(folds),
               "mean_frames": info.manifest.frames.get("mean"),
               "length_range": list(lengths_lib.length_range(
                   info, settings.InputConfig()))}
    reader_config = settings.InputConfig(batch_size=batch_size, seed=seed)
    ds = ip.train_dataset(info, folds, reader_config)
    before = measure.PeakMemory._rss_mb(os.getpid())  # pylint: disable=protected-access
    with measure.PeakMemory() as memory:
      results["host_only_examples_per_sec"] = measure.rate(
          iter(ds), lambda b: b, warmup, steps, batch_size)
    results["host_only_peak_rss_mb"] = memory.peak_total_mb
    results["host_only_pipeline_mb"] = memory.peak_total_mb - before
    for mode in pairings:
      results.update(_pairing_rate(info, folds, mode, timing))
    for name, placement, aug in () if host_only else (
        ("device_full", "device", full),
        ("device_no_augment", "device", plain),
        ("host_full", "host", full), ("host_no_augment", "host", plain)):
      rate, peak = _placement_rate(info, folds, placement, aug, timing)
      results[name + "_examples_per_sec"] = rate
      results[name + "_peak_rss_mb"] = peak
    # The default: placement 'device'. The host's part is what a GPU is fed;
    # the device part runs on the accelerator, not on these cores.
    results["examples_per_sec"] = results["host_only_examples_per_sec"]
    return results


def _placement_rate(info, folds, placement: str, aug,
                    timing: _Timing) -> Tuple[float, float]:
  """(examples/s, peak RSS MB) of the pipeline with the augmentation in
  tf.data (host) or in a compiled step on this CPU (device)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tagger.input import batches  # pylint: disable=g-import-not-at-top
  from tagger.input import pipeline as ip  # pylint: disable=g-import-not-at-top
  config = settings.InputConfig(batch_size=timing.batch_size,
                                placement=placement, seed=timing.seed)
  ds = ip.train_dataset(info, folds, config, aug)
  if placement == "host":
    step = lambda batch: batch
  else:
    step = tf.function(
        lambda batch: batches.augment_batch(batch, info.batch_spec, aug),
        reduce_retracing=True)
  with measure.PeakMemory() as memory:
    rate = measure.rate(iter(ds), step, timing.warmup, timing.steps,
                        timing.batch_size)
  return rate, memory.peak_total_mb


def _pairing_rate(info, folds, mode: str, timing: _Timing) -> dict:
  """The host side with one pairing mode: its first batch's seconds,
  examples/s and peak RSS."""
  from tagger.input import pipeline as ip  # pylint: disable=g-import-not-at-top
  config = settings.InputConfig(batch_size=timing.batch_size,
                                seed=timing.seed, pairing=mode)
  started = time.perf_counter()
  it = iter(ip.train_dataset(info, folds, config))
  next(it)
  out = {f"pairing_{mode}_first_batch_s": time.perf_counter() - started}
  with measure.PeakMemory() as memory:
    out[f"pairing_{mode}_examples_per_sec"] = measure.rate(
        it, lambda b: b, timing.warmup, timing.steps, timing.batch_size)
  out[f"pairing_{mode}_peak_rss_mb"] = memory.peak_total_mb
  return out


def benchmark_data_service(data_dir: str = "", num_records: int = 4000,
                           batch_size: int = 64, warmup: int = 30,
                           steps: int = 200, seed: int = 0,
                           worker_counts: Sequence[int] = (1, 2),
                           placement: str = "device") -> dict:
  """Training-input examples/s (the host side of `placement`: with
  'host' the augmentation runs there too) read locally and through a
  tf.data service with each worker count, in one run on the same shards.
  The dispatcher and every worker are processes of their own on loopback,
  as on separate machines but sharing this machine's cores with each other
  and with the reader."""
  from tagger.input import pipeline as ip  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as tmp:
    info, folds = train_shards(tmp, data_dir, num_records, seed)
    results = {"records": info.num_records(folds), "cores": os.cpu_count()}
    config = settings.InputConfig(batch_size=batch_size, seed=seed,
                                  placement=placement)

    def measure(name, config):
      """examples/s, and this (the trainer's) process's CPU time per
      example: what the input costs the host that feeds the GPUs."""
      it = iter(ip.train_dataset(info, folds, config))
      next(it)
      cpu = measure.cpu_seconds()
      results[f"{name}_examples_per_sec"] = rate = measure.rate(
          it, lambda b: b, warmup, steps, batch_size)
      examples = (warmup + steps) * batch_size
      results[f"{name}_trainer_cpu_us_per_example"] = (
          (measure.cpu_seconds() - cpu) / examples * 1e6)
      return rate

    measure("local", config)
    for count in worker_counts:
      address, procs = _serve_in_subprocesses(count)
      try:
        measure(f"workers_{count}",
                dataclasses.replace(config, data_service=address))
      finally:
        for p in procs:
          p.kill()
          p.wait()
    return results
