"""Speed measurements behind tools/benchmark_*: figures, not tests."""

import dataclasses
import glob
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from typing import Sequence, Tuple

from tagger import settings
from tagger.audio import decode
from tagger.audio import summary_features
from tagger.audio.params import FeatureParams
from tagger.datasets import demo_data
from tagger.shards import sharding


class PeakMemory:
  """Samples the resident memory of this process and all its descendants.

  getrusage's ru_maxrss for children counts the parent's image a spawned
  child holds between fork and exec, so it overstates workers; /proc does
  not. Linux only (elsewhere it reports 0).
  """

  def __init__(self, interval_s: float = 0.2):
    self.interval_s = interval_s
    self.peak_total_mb = 0.0
    self.peak_worker_mb = 0.0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  @staticmethod
  def _rss_mb(pid: int) -> float:
    try:
      with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
          if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    except OSError:
      pass
    return 0.0

  @staticmethod
  def _children(pid: int) -> list:
    found = []
    for task in glob.glob(f"/proc/{pid}/task/*/children"):
      try:
        with open(task, encoding="ascii") as f:
          found += [int(c) for c in f.read().split()]
      except OSError:
        pass
    return found + [g for c in found for g in PeakMemory._children(c)]

  def _run(self):
    me = os.getpid()
    while not self._stop.wait(self.interval_s):
      workers = [self._rss_mb(c) for c in self._children(me)]
      self.peak_worker_mb = max([self.peak_worker_mb] + workers)
      self.peak_total_mb = max(self.peak_total_mb,
                               self._rss_mb(me) + sum(workers))

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def reference_realtime_factor(audio_dir: str, fnames, params: FeatureParams,
                              clips: int) -> float:
  """Single-core speed of the straightforward librosa summary features."""
  seconds = spent = 0.0
  for fname in fnames[:clips]:
    with open(os.path.join(audio_dir, fname), "rb") as f:
      waveform, _, _ = decode.decode_audio(f.read(), fname, params)
    start = time.perf_counter()
    trimmed = decode.trim_silence(waveform, params)
    summary_features.summary_features_reference(trimmed, params)
    spent += time.perf_counter() - start
    seconds += waveform.size / params.load_sample_rate_hz
  return seconds / spent


def benchmark_make_tfrecords(csv: str = "", audio_dir: str = "",
                             num_workers: int = 0, per_class: int = 6,
                             reference_clips: int = 0,
                             runners: Sequence[str] = ("",)) -> dict:
  """Times make_tfrecords (train split) end to end on a dataset, once per
  runner ("": the local pool; else a Beam runner), on the same data.

  Without csv/audio_dir, makes a demo-like dataset of per_class clips per
  class in a temporary directory first (not timed). The figures of the
  first runner are at the top level; every runner's under "runs", with
  the shards' sha256 (equal across runners when the outputs are).
  """
  with tempfile.TemporaryDirectory() as tmp:
    if not csv:
      demo_data.make_demo_data(tmp, demo_data.DemoSpec(
          train_per_class=per_class, test_per_class=0, seed=1))
      csv, audio_dir = os.path.join(tmp, "train.csv"), os.path.join(
          tmp, "audio_train")
    runs = {}
    for runner in runners:
      options = sharding.Options(
          csv=csv, audio_dir=audio_dir,
          output_dir=os.path.join(tmp, f"out_{runner or 'local'}"),
          num_workers=num_workers, progress=False, runner=runner,
          num_folds=min(10, per_class) if per_class else 10)
      start = time.perf_counter()
      with PeakMemory() as memory:
        if runner:
          from tagger.shards import beam_sharding  # pylint: disable=g-import-not-at-top
          manifest = beam_sharding.make_tfrecords(options)
        else:
          manifest = sharding.make_tfrecords(options)
      wall = time.perf_counter() - start
      audio_s = manifest.audio_hours * 3600
      runs[runner or "local"] = {
          "clips": manifest.num_records, "audio_s": audio_s,
          "wall_s": wall, "clips_per_sec": manifest.num_records / wall,
          "realtime_factor": audio_s / wall,
          "num_workers": num_workers or os.cpu_count(),
          "peak_rss_mb": {"total": memory.peak_total_mb,
                          "largest_worker": memory.peak_worker_mb},
          "shard_sha256": [s.sha256 for s in manifest.shards]}
    result = {**runs[runners[0] or "local"], "runs": runs}
    if reference_clips:
      import csv as csv_lib  # pylint: disable=g-import-not-at-top
      with open(csv, encoding="utf-8") as f:
        fnames = [r["fname"] for r in csv_lib.DictReader(f)]
      result["reference_realtime_factor_1core"] = reference_realtime_factor(
          audio_dir, fnames, FeatureParams(), reference_clips)
    return result


def _rate(iterator, step_fn, warmup: int, steps: int, batch: int) -> float:
  """Examples/s of `steps` batches after `warmup` batches."""
  for _ in range(warmup):
    step_fn(next(iterator))
  start = time.perf_counter()
  for _ in range(steps):
    out = step_fn(next(iterator))
  # The last step's outputs must exist before the clock stops.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.nest.flatten(out)[0].numpy()
  return steps * batch / (time.perf_counter() - start)


def _train_shards(tmp: str, data_dir: str, num_records: int, seed: int):
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
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tagger.input import batches  # pylint: disable=g-import-not-at-top
  from tagger.shards import data_info  # pylint: disable=g-import-not-at-top
  from tagger.input import pipeline as ip  # pylint: disable=g-import-not-at-top

  with tempfile.TemporaryDirectory() as tmp:
    info, folds = _train_shards(tmp, data_dir, num_records, seed)
    spec = info.batch_spec
    full = settings.AugmentConfig()
    plain = settings.AugmentConfig(shift_fraction=0.0, flip_probability=0.0,
                                   erase_probability=0.0, mixup_alpha=0.0)
    results = {"records": info.num_records(folds),
               "mean_frames": info.manifest.frames.get("mean"),
               "length_range": list(data_info.length_range(
                   info, settings.InputConfig()))}

    def run(placement, aug):
      config = settings.InputConfig(batch_size=batch_size,
                                    placement=placement, seed=seed)
      ds = ip.train_dataset(info, folds, config, aug)
      if placement == "host":
        step = lambda batch: batch
      else:
        step = tf.function(
            lambda batch: batches.augment_batch(batch, spec, aug),
            reduce_retracing=True)
      with PeakMemory() as memory:
        rate = _rate(iter(ds), step, warmup, steps, batch_size)
      return rate, memory.peak_total_mb

    reader_config = settings.InputConfig(batch_size=batch_size, seed=seed)
    ds = ip.train_dataset(info, folds, reader_config)
    before = PeakMemory._rss_mb(os.getpid())  # pylint: disable=protected-access
    with PeakMemory() as memory:
      results["host_only_examples_per_sec"] = _rate(
          iter(ds), lambda b: b, warmup, steps, batch_size)
    results["host_only_peak_rss_mb"] = memory.peak_total_mb
    results["host_only_pipeline_mb"] = memory.peak_total_mb - before
    for mode in pairings:
      config = settings.InputConfig(batch_size=batch_size, seed=seed,
                                    pairing=mode)
      started = time.perf_counter()
      it = iter(ip.train_dataset(info, folds, config))
      next(it)
      results[f"pairing_{mode}_first_batch_s"] = time.perf_counter() - started
      with PeakMemory() as memory:
        results[f"pairing_{mode}_examples_per_sec"] = _rate(
            it, lambda b: b, warmup, steps, batch_size)
      results[f"pairing_{mode}_peak_rss_mb"] = memory.peak_total_mb
    for name, placement, aug in () if host_only else (
        ("device_full", "device", full),
        ("device_no_augment", "device", plain),
        ("host_full", "host", full), ("host_no_augment", "host", plain)):
      rate, peak = run(placement, aug)
      results[name + "_examples_per_sec"] = rate
      results[name + "_peak_rss_mb"] = peak
    # The default: placement 'device'. The host's part is what a GPU is fed;
    # the device part runs on the accelerator, not on these cores.
    results["examples_per_sec"] = results["host_only_examples_per_sec"]
    return results


def _cpu_seconds() -> float:
  """User + system CPU seconds of this process (not its children)."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


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
    info, folds = _train_shards(tmp, data_dir, num_records, seed)
    results = {"records": info.num_records(folds), "cores": os.cpu_count()}
    config = settings.InputConfig(batch_size=batch_size, seed=seed,
                                  placement=placement)

    def measure(name, config):
      """examples/s, and this (the trainer's) process's CPU time per
      example: what the input costs the host that feeds the GPUs."""
      it = iter(ip.train_dataset(info, folds, config))
      next(it)
      cpu = _cpu_seconds()
      results[f"{name}_examples_per_sec"] = rate = _rate(
          it, lambda b: b, warmup, steps, batch_size)
      examples = (warmup + steps) * batch_size
      results[f"{name}_trainer_cpu_us_per_example"] = (
          (_cpu_seconds() - cpu) / examples * 1e6)
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
      results[name + "_examples_per_sec"] = run.measure_train_rate(
          steps, warmup)
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
        rates.append(run.measure_train_rate(spec.steps, spec.warmup))
        progress(f"stage {stage}, length {length}: {rates[-1]:.1f} "
                 "examples/s")
      results[f"stage{stage}_examples_per_sec"] = rates
      # One epoch's mix of lengths: the harmonic mean of the rates.
      results[f"stage{stage}_mean_examples_per_sec"] = len(rates) / sum(
          1.0 / r for r in rates)
    host = benchmark_pipeline(data_dir, batch_size=spec.batch_size,
                              warmup=min(30, spec.pipeline_steps),
                              steps=spec.pipeline_steps, host_only=True)
  results["host_examples_per_sec"] = host["host_only_examples_per_sec"]
  results["host_over_step"] = (results["host_examples_per_sec"] /
                               results["stage1_mean_examples_per_sec"])
  return results


def _untrained_model_dir(path: str, data_dir: str, stage: int = 2) -> str:
  """A model dir (data.json + best weights) of a freshly built model: enough
  for timing the scorer, no training needed."""
  from tagger.shards import data_info  # pylint: disable=g-import-not-at-top
  from tagger import fileio  # pylint: disable=g-import-not-at-top
  from tagger.model import networks as model_lib  # pylint: disable=g-import-not-at-top
  from tagger.model import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  info = data_info.load_data_info(data_dir)
  fileio.makedirs(path)
  model = model_lib.build_model(
      model_lib.Architecture(info.num_classes,
                             info.pca_dim if stage == 2 else 0, info.num_mels),
      model_lib.TrainOptions(bn_momentum=0.9))
  model_dir_lib.save_weights(model, fileio.join(path, model_dir_lib.BEST))
  model_dir_lib.write_data(path, model_dir_lib.data_description(
      info, stage, [263, 363, 463, 563, 663, 763]))
  return path


def benchmark_score(data_dir: str = "", model_dirs: str = "",
                    num_clips: int = 48, tries: int = 5,
                    batch_size: int = 240, lengths=(263, 363, 463, 563, 663,
                                                    763)) -> dict:
  """Scorer clips/s and TTA efficiency: the bare model's time for the same
  number of forward examples in plain large batches (random inputs at the
  same lengths), divided by the scorer's time (reading, windows, crop/pad,
  every model, every length and try, combining)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tagger import distribute  # pylint: disable=g-import-not-at-top
  from tagger.infer import inputs  # pylint: disable=g-import-not-at-top
  from tagger.infer import scorer as scorer_lib  # pylint: disable=g-import-not-at-top
  from tagger.datasets import synthetic  # pylint: disable=g-import-not-at-top

  strategy = distribute.make_strategy("auto")
  distribute.set_precision(*distribute.choose_precision("auto"))
  with tempfile.TemporaryDirectory() as tmp:
    if not data_dir:
      data_dir = os.path.join(tmp, "shards")
      synthetic.write_synthetic_shards(data_dir, synthetic.SyntheticSet(
          num_clips, num_folds=1))
    if not model_dirs:
      model_dirs = _untrained_model_dir(os.path.join(tmp, "model"), data_dir)
    dirs = scorer_lib.find_model_dirs(model_dirs)
    with strategy.scope():
      models = [scorer_lib.load_model(d) for d in dirs]
    records_ds = inputs.shard_records(data_dir)
    clips = sum(1 for _ in records_ds)
    views = scorer_lib.Views(list(lengths), tries, batch_size)
    scorer = scorer_lib.Scorer(models, strategy)
    # Warm-up: the compiled forward pass (one trace for every shape).
    scorer.score(records_ds.take(max(1, batch_size // tries)), views,
                 progress=False)
    start = time.perf_counter()
    scorer.score(records_ds, views, progress=False)
    scorer_s = time.perf_counter() - start

    info = models[0].data
    rows_per_length = clips * tries
    bare = [tf.function(m.model, reduce_retracing=True) for m in models]

    def inputs(rows, length, stage2):
      x = {"log_mel": tf.random.uniform([rows, info.num_mels, length, 1])}
      if stage2:
        x["pca"] = tf.random.normal([rows, info.pca_dim])
      return x

    batches = []
    for length in lengths:
      for start_row in range(0, rows_per_length, batch_size):
        rows = min(batch_size, rows_per_length - start_row)
        batches.append((rows, length))
    for fn, m in zip(bare, models):  # warm-up
      for length in lengths:
        fn(inputs(batch_size, length, m.stage2), training=False)
    prepared = [[inputs(rows, length, m.stage2) for rows, length in batches]
                for m in models]
    start = time.perf_counter()
    for fn, xs in zip(bare, prepared):
      for x in xs:
        out = fn(x, training=False)
    out[0].numpy()
    bare_s = time.perf_counter() - start
  forward = clips * tries * len(lengths) * len(models)
  return {"clips": clips, "models": len(models), "lengths": list(lengths),
          "tries": tries, "forward_examples": forward,
          "scorer_s": scorer_s, "bare_model_s": bare_s,
          "clips_per_sec": clips / scorer_s,
          "forward_examples_per_sec": forward / scorer_s,
          "tta_efficiency": bare_s / scorer_s, "traces": scorer.traces}


def _recording(path: str, minutes: float, seed: int = 0) -> None:
  """A WAV at 44.1 kHz of `minutes` (tones and noise bursts), written in
  blocks so memory stays small."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  rate = 44100
  with sf.SoundFile(path, "w", rate, 1, subtype="PCM_16") as f:
    for _ in range(int(minutes * 60 / 10)):
      t = np.arange(10 * rate) / rate
      block = 0.2 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t)
      block += 0.05 * rng.standard_normal(t.size)
      block *= (np.sin(2 * np.pi * t / rng.uniform(1, 5)) > 0)
      f.write(block.astype(np.float32))


def benchmark_serving(model_dirs: str = "", minutes=(2.0, 10.0),
                      hop_seconds: float = 0.5, window_runs: int = 50,
                      chunk_seconds: float = 60.0,
                      clip_seconds: float = 10.0) -> dict:
  """Frame scoring of long recordings through tagger.api (streamed in
  chunks): seconds and the rise of peak resident memory for each length;
  the exported waveform SavedModel's serving_default on one clip of
  clip_seconds (the median of 5 calls after one that traces); and the
  TFLite per-window model: file sizes and latency per window.

  Without model_dirs, times one untrained stage-1 MobileNetV2 (the speed
  does not depend on the weights).
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tagger import api  # pylint: disable=g-import-not-at-top
  from tagger.infer import export  # pylint: disable=g-import-not-at-top
  from tagger.datasets import synthetic  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  results = {"hop_seconds": hop_seconds, "chunk_seconds": chunk_seconds}
  with tempfile.TemporaryDirectory() as tmp:
    if not model_dirs:
      shards = os.path.join(tmp, "shards")
      synthetic.write_synthetic_shards(shards, synthetic.SyntheticSet(
          48, num_folds=1))
      model_dirs = _untrained_model_dir(os.path.join(tmp, "model"), shards,
                                        stage=1)
    tagger = api.Tagger.load(model_dirs, chunk_seconds=chunk_seconds)
    results["window_frames"] = tagger.window
    warm = os.path.join(tmp, "warm.wav")
    _recording(warm, 0.5)
    tagger.frames(warm, hop_seconds)  # traces the graphs
    baseline = PeakMemory._rss_mb(os.getpid())  # pylint: disable=protected-access
    for m in minutes:
      path = os.path.join(tmp, f"rec{m:g}.wav")
      _recording(path, m)
      start = time.perf_counter()
      with PeakMemory() as memory:
        frames = tagger.frames(path, hop_seconds)
      seconds = time.perf_counter() - start
      results[f"frames_{m:g}min_s"] = seconds
      results[f"frames_{m:g}min_windows"] = len(frames.start_seconds)
      results[f"frames_{m:g}min_realtime_factor"] = m * 60 / seconds
      results[f"frames_{m:g}min_peak_rise_mb"] = (memory.peak_total_mb -
                                                  baseline)
    results.update(_clip_latency(model_dirs, os.path.join(tmp, "saved"),
                                 clip_seconds))
    files = export.export_tflite(model_dirs, os.path.join(tmp, "tflite"))
    mel = np.random.default_rng(0).uniform(
        -80, 20, (1, 64, tagger.window)).astype(np.float32)
    for variant, path in files.items():
      interpreter = tf.lite.Interpreter(model_path=path, num_threads=2)
      interpreter.allocate_tensors()
      inp = interpreter.get_input_details()[0]["index"]
      interpreter.set_tensor(inp, mel)
      interpreter.invoke()
      start = time.perf_counter()
      for _ in range(window_runs):
        interpreter.set_tensor(inp, mel)
        interpreter.invoke()
      results[f"tflite_{variant}_ms_per_window"] = (
          (time.perf_counter() - start) / window_runs * 1000)
      results[f"tflite_{variant}_mb"] = os.path.getsize(path) / 2**20
  return results


def _clip_latency(model_dirs: str, export_dir: str, clip_seconds: float,
                  calls: int = 5) -> dict:
  """serving_default of the exported SavedModel on a clip of tones and
  noise: the median seconds per call, and ms per second of audio."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tagger.infer import export  # pylint: disable=g-import-not-at-top
  serve = tf.saved_model.load(export.export(model_dirs, export_dir)
                              ).signatures["serving_default"]
  rng = np.random.default_rng(0)
  n = int(clip_seconds * 44100)
  t = np.arange(n) / 44100.0
  waveform = tf.constant((0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 *
                          rng.normal(size=n)).astype(np.float32))
  serve(waveform=waveform)["probabilities"].numpy()   # traces
  seconds = []
  for _ in range(calls):
    start = time.perf_counter()
    serve(waveform=waveform)["probabilities"].numpy()
    seconds.append(time.perf_counter() - start)
  median = float(np.median(seconds))
  return {"clip_seconds": clip_seconds, "clip_s": median,
          "clip_ms_per_audio_second": median * 1000 / clip_seconds}


def serving_agreement(model_dirs: str, audio_dir: str,
                      audio_csv: str = "") -> dict:
  """The waveform SavedModel against tools.score --tta=even on the same
  files: top-1 agreement, the largest probability difference, and the
  in-graph log-mel's largest difference from features.py (dB)."""
  import csv as csv_lib  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tagger.shards import clip_files  # pylint: disable=g-import-not-at-top
  from tagger.infer import export  # pylint: disable=g-import-not-at-top
  from tagger.infer import score  # pylint: disable=g-import-not-at-top
  params = FeatureParams()
  names = clip_files.names_to_score(audio_dir, audio_csv)
  with tempfile.TemporaryDirectory() as tmp:
    saved = export.export(model_dirs, os.path.join(tmp, "saved"))
    csv_path = os.path.join(tmp, "files.csv")
    with open(csv_path, "w", encoding="utf-8") as f:
      f.write("fname\n" + "\n".join(names) + "\n")
    probs_path = os.path.join(tmp, "probs.csv")
    start = time.perf_counter()
    score.score(score.ScoreJob(model_dirs=model_dirs, audio_dir=audio_dir,
                audio_csv=csv_path, output=os.path.join(tmp, "s.csv"),
                probs_out=probs_path, tta="even", progress=False))
    offline_s = time.perf_counter() - start
    rows = list(csv_lib.reader(open(probs_path, encoding="utf-8")))
    offline = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
    serve = tf.saved_model.load(saved).signatures["serving_default"]
    online, online_s, check = [], 0.0, _FeatureCheck(params)
    for name in names:
      start = time.perf_counter()
      waveform, _, _ = decode.decode_audio(
          open(os.path.join(audio_dir, name), "rb").read(), name, params)
      online.append(serve(waveform=tf.constant(waveform))[
          "probabilities"].numpy())
      online_s += time.perf_counter() - start
      check.add(waveform)
  online = np.array(online)
  return {"clips": len(names),
          "top1_agreement": float((online.argmax(1) ==
                                   offline.argmax(1)).mean()),
          "max_probability_difference": float(np.abs(online -
                                                     offline).max()),
          "max_log_mel_difference_db": check.worst_db,
          "trims_equal": check.trims_equal,
          "saved_model_s": online_s, "tools_score_s": offline_s}


class _FeatureCheck:
  """graph_features against decode.trim_silence + features.py, clip by
  clip: how many trims are identical, the largest log-mel difference."""

  def __init__(self, params: FeatureParams):
    self.params = params
    self.clips = self.trims_equal = 0
    self.worst_db = 0.0

  def add(self, waveform) -> None:
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from tagger.audio import features  # pylint: disable=g-import-not-at-top
    from tagger.audio import graph_features  # pylint: disable=g-import-not-at-top
    trimmed = decode.trim_silence(waveform, self.params)
    in_graph = graph_features.trim_silence(tf.constant(waveform),
                                           self.params).numpy()
    self.clips += 1
    self.trims_equal += int(np.array_equal(in_graph, trimmed))
    if trimmed.size:
      got = graph_features.log_mel(tf.constant(trimmed), self.params).numpy()
      ref = features.waveform_to_log_mel(trimmed, self.params)
      self.worst_db = max(self.worst_db, float(np.abs(got - ref).max()))


def graph_feature_agreement(audio_dir: str, audio_csv: str = "") -> dict:
  """The in-graph trim and log-mel against the offline ones on a folder's
  audio files (no model needed)."""
  from tagger.shards import clip_files  # pylint: disable=g-import-not-at-top
  params = FeatureParams()
  check = _FeatureCheck(params)
  for name in clip_files.names_to_score(audio_dir, audio_csv):
    waveform, _, _ = decode.decode_audio(
        open(os.path.join(audio_dir, name), "rb").read(), name, params)
    check.add(waveform)
  return {"clips": check.clips, "trims_equal": check.trims_equal,
          "max_log_mel_difference_db": check.worst_db}
