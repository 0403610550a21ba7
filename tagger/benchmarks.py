"""Speed measurements behind tools/benchmark_*: figures, not tests."""

import os
import glob
import tempfile
import threading
import time

import numpy as np

from tagger import audio
from tagger import demo_data
from tagger import sharding
from tagger import summary_features
from tagger.params import FeatureParams


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
      waveform, _ = audio.decode_audio(f.read(), fname, params)
    start = time.perf_counter()
    trimmed = audio.trim_silence(waveform, params)
    summary_features.summary_features_reference(trimmed, params)
    spent += time.perf_counter() - start
    seconds += waveform.size / params.load_sample_rate_hz
  return seconds / spent


def benchmark_make_tfrecords(csv: str = "", audio_dir: str = "",
                             num_workers: int = 0, per_class: int = 6,
                             reference_clips: int = 0) -> dict:
  """Times make_tfrecords (train split) end to end on a dataset.

  Without csv/audio_dir, makes a demo-like dataset of per_class clips per
  class in a temporary directory first (not timed).
  """
  with tempfile.TemporaryDirectory() as tmp:
    if not csv:
      demo_data.make_demo_data(tmp, demo_data.DemoSpec(
          train_per_class=per_class, test_per_class=0, seed=1))
      csv, audio_dir = os.path.join(tmp, "train.csv"), os.path.join(
          tmp, "audio_train")
    options = sharding.Options(
        csv=csv, audio_dir=audio_dir, output_dir=os.path.join(tmp, "out"),
        num_workers=num_workers, progress=False,
        num_folds=min(10, per_class) if per_class else 10)
    start = time.perf_counter()
    with PeakMemory() as memory:
      manifest = sharding.make_tfrecords(options)
    wall = time.perf_counter() - start
    audio_s = manifest["audio_hours"] * 3600
    result = {"clips": manifest["num_records"], "audio_s": audio_s,
              "wall_s": wall, "clips_per_sec": manifest["num_records"] / wall,
              "realtime_factor": audio_s / wall,
              "num_workers": num_workers or os.cpu_count(),
              "peak_rss_mb": {"total": memory.peak_total_mb,
                              "largest_worker": memory.peak_worker_mb}}
    if reference_clips:
      import csv as csv_lib  # pylint: disable=g-import-not-at-top
      with open(csv, encoding="utf-8") as f:
        fnames = [r["fname"] for r in csv_lib.DictReader(f)]
      result["reference_realtime_factor_1core"] = reference_realtime_factor(
          audio_dir, fnames, FeatureParams(), reference_clips)
    return result
