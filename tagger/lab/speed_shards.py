"""Speed of the sharding stage (tools/benchmark_make_tfrecords): clips and
audio seconds a second, peak memory, beside the reference code on one core."""

import os
import tempfile
import time
from typing import Sequence

from tagger.audio import decode
from tagger.audio import summary_features
from tagger.audio.params import FeatureParams
from tagger.datasets import demo_data
from tagger.lab import measure
from tagger.shards import sharding


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
      with measure.PeakMemory() as memory:
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
