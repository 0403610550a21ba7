"""Speed of the inference stage (tools/benchmark_score,
tools/benchmark_serving): batched TTA against one plain pass, the waveform
SavedModel on long recordings and on a 10 s clip. Their agreement with
tools/score and features.py is checked by tests/infer/test_serving.py."""

import os
import tempfile
import time

from tagger.lab import measure


def _untrained_model_dir(path: str, data_dir: str, stage: int = 2) -> str:
  """A model dir (data.json + best weights) of a freshly built model: enough
  for timing the scorer, no training needed."""
  from tagger.shards import data_info  # pylint: disable=g-import-not-at-top
  from tagger import fileio  # pylint: disable=g-import-not-at-top
  from tagger.model import architecture as architecture_lib  # pylint: disable=g-import-not-at-top
  from tagger.model import networks as model_lib  # pylint: disable=g-import-not-at-top
  from tagger.model import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  info = data_info.load_data_info(data_dir)
  fileio.makedirs(path)
  model = model_lib.build_model(
      architecture_lib.Architecture(
          info.num_classes, info.pca_dim if stage == 2 else 0, info.num_mels),
      architecture_lib.TrainOptions(bn_momentum=0.9))
  model_dir_lib.save_weights(model, fileio.join(path, model_dir_lib.BEST))
  model_dir_lib.write_data(path, model_dir_lib.data_description(
      info, stage, [263, 363, 463, 563, 663, 763]))
  _placeholder_pca_fit(info.pca_dim).save(
      fileio.join(path, model_dir_lib.PCA_FIT))
  return path


def _placeholder_pca_fit(dim: int):
  """A PCA fit that keeps the first `dim` summary features (scoring audio
  files reads a fit; synthetic shards have none)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tagger.audio import pca as pca_lib  # pylint: disable=g-import-not-at-top
  from tagger.audio.params import SUMMARY_FEATURE_COUNT  # pylint: disable=g-import-not-at-top
  n = SUMMARY_FEATURE_COUNT
  return pca_lib.PcaFit(np.zeros(n), np.ones(n), np.zeros(n),
                        np.eye(n)[:dim], np.full(dim, 1.0 / n))


def benchmark_score(data_dir: str = "", model_dirs: str = "",
                    num_clips: int = 48, tries: int = 5,
                    batch_size: int = 240, lengths=(263, 363, 463, 563, 663,
                                                    763)) -> dict:
  """Scorer clips/s and TTA efficiency: the bare model's time for the same
  number of forward examples in plain large batches (random inputs at the
  same lengths), divided by the scorer's time (reading, windows, crop/pad,
  every model, every length and try, combining)."""
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

    bare_s = _bare_model_seconds(models, lengths, clips * tries, batch_size)
  forward = clips * tries * len(lengths) * len(models)
  return {"clips": clips, "models": len(models), "lengths": list(lengths),
          "tries": tries, "forward_examples": forward,
          "scorer_s": scorer_s, "bare_model_s": bare_s,
          "clips_per_sec": clips / scorer_s,
          "forward_examples_per_sec": forward / scorer_s,
          "tta_efficiency": bare_s / scorer_s, "traces": scorer.traces}


def _bare_model_seconds(models, lengths, rows_per_length: int,
                        batch_size: int) -> float:
  """Seconds the models alone take for rows_per_length rows at each
  length, in plain large batches of random inputs (after a warm-up)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  info = models[0].data
  bare = [tf.function(m.model, reduce_retracing=True) for m in models]

  def random_inputs(rows, length, stage2):
    x = {"log_mel": tf.random.uniform([rows, info.num_mels, length, 1])}
    if stage2:
      x["pca"] = tf.random.normal([rows, info.pca_dim])
    return x

  batches = []
  for length in lengths:
    for start_row in range(0, rows_per_length, batch_size):
      batches.append((min(batch_size, rows_per_length - start_row), length))
  for fn, m in zip(bare, models):  # warm-up
    for length in lengths:
      fn(random_inputs(batch_size, length, m.stage2), training=False)
  prepared = [[random_inputs(rows, length, m.stage2)
               for rows, length in batches] for m in models]
  start = time.perf_counter()
  for fn, xs in zip(bare, prepared):
    for x in xs:
      out = fn(x, training=False)
  out[0].numpy()
  return time.perf_counter() - start


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
                      clip_seconds: float = 10.0,
                      long_clip_minutes: float = 20.0) -> dict:
  """Frame scoring of long recordings through tagger.api (streamed in
  chunks): seconds and the rise of peak resident memory for each length;
  the exported waveform SavedModel's serving_default on one clip of
  clip_seconds (the median of 5 calls after one that traces); and the
  TFLite per-window model: file sizes and latency per window; with
  long_clip_minutes, the SavedModel on one recording that long in a fresh
  process (_long_clip: peak memory, agreement with tools/score).

  Without model_dirs, times one untrained stage-1 MobileNetV2 (the speed
  does not depend on the weights).
  """
  from tagger import api  # pylint: disable=g-import-not-at-top
  from tagger.datasets import synthetic  # pylint: disable=g-import-not-at-top
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
    baseline = measure.PeakMemory._rss_mb(os.getpid())  # pylint: disable=protected-access
    for m in minutes:
      path = os.path.join(tmp, f"rec{m:g}.wav")
      _recording(path, m)
      start = time.perf_counter()
      with measure.PeakMemory() as memory:
        frames = tagger.frames(path, hop_seconds)
      seconds = time.perf_counter() - start
      results[f"frames_{m:g}min_s"] = seconds
      results[f"frames_{m:g}min_windows"] = len(frames.start_seconds)
      results[f"frames_{m:g}min_realtime_factor"] = m * 60 / seconds
      results[f"frames_{m:g}min_peak_rise_mb"] = (memory.peak_total_mb -
                                                  baseline)
    results.update(_clip_latency(model_dirs, os.path.join(tmp, "saved"),
                                 clip_seconds))
    results.update(_tflite_latency(model_dirs, os.path.join(tmp, "tflite"),
                                   tagger.window, window_runs))
    if long_clip_minutes:
      results.update(_long_clip(model_dirs, os.path.join(tmp, "saved"),
                                tmp, long_clip_minutes))
  return results


# The peak is VmHWM, the high-water mark of this process's own memory:
# getrusage's ru_maxrss carries the parent's over fork and exec (the
# child of a 2 GB process reads 2 GB before it has done anything).
_SERVE_ONE_FILE = """
import json, sys
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
waveform, rate = tf.audio.decode_wav(tf.io.read_file(sys.argv[2]))
out = model.signatures["serving_default"](
    waveform=tf.reduce_mean(waveform, axis=1))
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
print(json.dumps({"peak_mb": int(hwm[0].split()[1]) / 1024,
    "probabilities": out["probabilities"].numpy().tolist(),
    "seconds": float(out["seconds"]),
    "heard_seconds": float(out["heard_seconds"])}))
"""


def _long_clip(model_dirs: str, saved_dir: str, tmp: str,
               minutes: float) -> dict:
  """A fresh process of plain TensorFlow loads the exported SavedModel and
  tags one recording of `minutes` (16-bit WAV, decoded by
  tf.audio.decode_wav): its peak resident memory (the whole process:
  TensorFlow, the model, the waveform), and how its answer compares with
  tools/score --tta=even's on the same file."""
  import json  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tagger.infer import score  # pylint: disable=g-import-not-at-top
  audio = os.path.join(tmp, "long")
  os.makedirs(audio)
  _recording(os.path.join(audio, "long.wav"), minutes)
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  done = subprocess.run([sys.executable, "-c", _SERVE_ONE_FILE, saved_dir,
                         os.path.join(audio, "long.wav")], env=env,
                        capture_output=True, text=True, check=True)
  served = json.loads(done.stdout.strip().splitlines()[-1])
  probs_csv = os.path.join(tmp, "long_probs.csv")
  score.score(score.ScoreJob(model_dirs=model_dirs, audio_dir=audio,
                             output=os.path.join(tmp, "long.csv"),
                             probs_out=probs_csv, tta="even",
                             num_workers=1, progress=False))
  with open(probs_csv, encoding="utf-8") as f:
    offline = np.array([float(x) for x in f.read().splitlines()[1].split(
        ",")[1:]])
  online = np.array(served["probabilities"])
  key = f"long_clip_{minutes:g}min"
  return {f"{key}_peak_mb": served["peak_mb"],
          f"{key}_heard_seconds": served["heard_seconds"],
          f"{key}_max_abs_diff": float(np.abs(online - offline).max()),
          f"{key}_same_top": bool(online.argmax() == offline.argmax())}


def _tflite_latency(model_dirs: str, export_dir: str, window: int,
                    runs: int) -> dict:
  """Each TFLite variant's file size and ms per window (2 threads)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tagger.infer import export  # pylint: disable=g-import-not-at-top
  results = {}
  mel = np.random.default_rng(0).uniform(
      -80, 20, (1, 64, window)).astype(np.float32)
  for variant, path in export.export_tflite(model_dirs, export_dir).items():
    interpreter = tf.lite.Interpreter(model_path=path, num_threads=2)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    interpreter.set_tensor(inp, mel)
    interpreter.invoke()
    start = time.perf_counter()
    for _ in range(runs):
      interpreter.set_tensor(inp, mel)
      interpreter.invoke()
    results[f"tflite_{variant}_ms_per_window"] = (
        (time.perf_counter() - start) / runs * 1000)
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
