"""Waveform in, tags out, in one TensorFlow graph: what `tools/export` saves
as a SavedModel and what the Python API (`tagger.api`) runs.

`WaveformTagger` holds one or several trained models (folds) of one dataset
and does in the graph what tools/score does offline:
  trim -> resample -> log-mel (graph_features: equal to the numpy features
  within 0.001 dB) -> float16 dB, as the shards store it -> windows at each
  of the models' validation lengths x `tries` spread evenly over the clip
  (tools.score --tta=even) -> crop/pad + normalise (batches) -> every
  model -> the geometric mean over all views.
Frame scores slide one window (a training length) over a recording at a hop
and score each window once, without trimming, so frame times are the
file's.

Stage-2 models also take the PCA vector of 1,133 summary features (HPSS,
chroma, spectral statistics of librosa): these are not computed in the
graph, so waveform serving takes stage-1 models (BUILD.md measures what
that costs on the demo set). Stage-2 models are served from log-mel + PCA
(`export`'s `log_mel` signature).
"""

import json
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from tagger import errors
from tagger.audio import graph_features
from tagger.audio.params import FeatureParams
from tagger.infer import scorer
from tagger.input import batches
from tagger.model import backbones
from tagger.model import networks as model_lib
from tagger.shards import records

DEFAULT_TRIES = scorer.DEFAULT_TRIES   # one default: tools/score's
DEFAULT_HOP_SECONDS = 0.5
WINDOWS_PER_BATCH = 64   # frames: windows scored at once (memory bounded)


class ServingError(errors.UserError):
  """Models that cannot be served this way; the message says why."""


def check_models(models) -> None:
  """Waveform serving: stage-1 models of one dataset with its features."""
  for m in models:
    if m.stage2:
      raise ServingError(
          f"{m.model_dir} is a stage-2 model: it needs the PCA vector of "
          "the summary features, which only tagger's numpy features make; "
          "export stage-1 model dirs for waveform input (tools/score serves "
          "stage 2 from audio files)")
    if not m.data.feature_params:
      raise ServingError(f"{m.model_dir}: data.json has no feature "
                         "parameters; re-train with this tagger")
  differs = scorer.first_difference(models)
  if differs:
    m, key = differs
    raise ServingError(f"{m.model_dir} and {models[0].model_dir} differ in "
                       f"{key}; serve models of one dataset together")


class WaveformTagger(tf.Module):
  """Models + features + TTA as one module (saved whole by export)."""

  def __init__(self, models, *, tries: int = DEFAULT_TRIES,
               lengths: Optional[Sequence[int]] = None,
               window: Optional[int] = None):
    super().__init__()
    check_models(models)
    data = models[0].data
    self.params = FeatureParams.from_dict(data.feature_params)
    self.spec = data.batch_spec
    self.pad_mode = data.pad_mode
    self.lengths = [int(x) for x in (lengths or data.eval_lengths)]
    self.tries = int(tries)
    if self.tries < 1:
      raise ServingError(f"tries must be >= 1, not {tries}")
    self.window = int(window or min(self.lengths))
    shortest = max(backbones.min_frames(m.data.arch.backbone)
                   for m in models)
    if min(self.lengths + [self.window]) < shortest:
      raise ServingError(f"lengths and window must be >= {shortest} frames")
    self.models = [m.model for m in models]  # outputs (probs, embedding)
    # Variables, not constants: a SavedModel keeps a module's variables.
    self.labels = tf.Variable(list(data.labels), trainable=False)
    self.num_classes = len(data.labels)
    self.max_clip_samples = int(self.params.max_clip_seconds *
                                self.params.load_sample_rate_hz)
    counts = np.maximum(np.asarray(data.class_counts, np.float64), 1e-3)
    self.prior_log_probs = tf.constant(
        np.log(counts / counts.sum()).astype(np.float32))
    self.frames_per_second = tf.constant(
        self.params.mel_frames_per_second, tf.float32)
    self.window_frames = tf.Variable(self.window, trainable=False)
    self.is_multi_label = data.multi_label
    self.multi_label = tf.Variable(data.multi_label, trainable=False)
    self.feature_params_json = tf.Variable(json.dumps(
        self.params.to_dict()), trainable=False)

  # -- features ------------------------------------------------------------

  def log_mel(self, waveform: tf.Tensor, trim: bool = True):
    """float32 [N] at 44.1 kHz -> (log-mel float16 dB [T, M], empty bool:
    no sound after trimming, or no samples)."""
    if trim:
      waveform = graph_features.trim_silence(waveform, self.params)
    n = tf.size(waveform)
    # An empty clip still gets a (meaningless) log-mel; callers use `empty`.
    safe = tf.cond(n > 0, lambda: waveform, lambda: tf.zeros([1]))
    mel = graph_features.log_mel(safe, self.params)
    # mel: [M, T]
    return tf.cast(tf.transpose(mel), tf.float16), tf.equal(n, 0)

  # -- scoring -------------------------------------------------------------

  def _host_batch(self, windows: Dict[str, tf.Tensor],
                  fraction: Optional[tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Windows -> a host batch with the keys prepare_eval_batch reads."""
    rows = tf.shape(windows[records.LOG_MEL])[0]
    out = dict(windows)
    out[records.PCA] = tf.zeros([rows, self.spec.pca_dim])
    out[records.LABEL] = tf.zeros([rows], tf.int32)
    if self.spec.multi_label:
      out[records.LABELS] = tf.zeros([rows, self.spec.num_classes], tf.uint8)
    out[records.MANUALLY_VERIFIED] = tf.zeros([rows], tf.int32)
    out[batches.SEED] = tf.zeros([rows, 2], tf.int64)
    if fraction is not None:
      out[batches.FRACTION] = fraction
    return out

  def _log_probs(self, host: Dict[str, tf.Tensor]):
    """Host batch -> (log-probabilities [r, C] summed over models, the
    ensemble's embeddings [r, D]: model_lib.ensemble_pooled)."""
    model_batch = batches.prepare_eval_batch(host, self.spec, self.pad_mode)
    inputs = model_lib.model_inputs(model_batch, False)
    log_probs, pooled = 0.0, []
    for model in self.models:
      probs, features = model(inputs, training=False)
      log_probs += model_lib.log_probabilities(probs)
      pooled.append(features)
    return log_probs, model_lib.ensemble_pooled(pooled)

  def score_log_mel(self, log_mel: tf.Tensor,
                    empty: tf.Tensor) -> Dict[str, tf.Tensor]:
    """One clip's log-mel float16 [T, M] -> clip scores with TTA."""
    fraction = batches.even_fractions(self.tries, self.tries)
    total, pooled = 0.0, 0.0
    for length in self.lengths:
      host = self._host_batch(
          batches.clip_windows(log_mel, length, fraction), fraction)
      log_probs, features = self._log_probs(host)
      total += tf.reduce_sum(log_probs, axis=0)
      pooled += tf.reduce_sum(features, axis=0)
    views = float(len(self.lengths) * self.tries)
    mean = tf.where(empty, self.prior_log_probs,
                    total / (views * len(self.models)))
    embedding = tf.where(empty, tf.zeros_like(pooled), pooled / views)
    return {"probabilities": model_lib.probabilities_of(
        mean, self.is_multi_label),
            "log_probabilities": mean, "embedding": embedding,
            "empty": empty}

  def clip(self, waveform: tf.Tensor) -> Dict[str, tf.Tensor]:
    """float32 [N] mono at 44.1 kHz -> probabilities [C] (the normalised
    geometric mean over models x lengths x tries), log_probabilities [C],
    embedding [D], empty (no sound: class frequencies), seconds (of the
    waveform) and heard_seconds: a clip is heard up to the models'
    max_clip_seconds, as tools/score and training hear it (frames hear
    recordings of any length). NaN or infinite samples are an error."""
    waveform = tf.reshape(waveform, [-1])
    tf.debugging.assert_all_finite(
        waveform, "the waveform holds NaN or infinite samples")
    rate = float(self.params.load_sample_rate_hz)
    heard = waveform[:self.max_clip_samples]
    log_mel, empty = self.log_mel(heard)
    out = self.score_log_mel(log_mel, empty)
    out["seconds"] = tf.cast(tf.size(waveform), tf.float32) / rate
    out["heard_seconds"] = tf.cast(tf.size(heard), tf.float32) / rate
    return out

  def window_scores(self, log_mel: tf.Tensor,
                    starts: tf.Tensor) -> tf.Tensor:
    """log-mel float16 [T, M] and window starts int32 [F] -> probabilities
    [F, C] of the windows of `self.window` frames at those starts (the
    models' geometric mean; a recording shorter than a window is padded)."""
    count = tf.shape(starts)[0]
    blocks = (count + WINDOWS_PER_BATCH - 1) // WINDOWS_PER_BATCH
    parts = tf.TensorArray(tf.float32, size=blocks, infer_shape=False)

    def body(i, parts):
      some = starts[i * WINDOWS_PER_BATCH:(i + 1) * WINDOWS_PER_BATCH]
      host = self._host_batch(batches.windows_at(log_mel, self.window, some),
                              tf.fill([tf.shape(some)[0]], 0.5))
      log_probs, _ = self._log_probs(host)
      # log_probs: [b, C]
      return i + 1, parts.write(i, model_lib.probabilities_of(
          log_probs / float(len(self.models)), self.is_multi_label))

    _, parts = tf.while_loop(lambda i, _: i < blocks, body,
                             [tf.constant(0), parts], parallel_iterations=1)
    probs = parts.concat()
    probs.set_shape([None, self.num_classes])
    return probs

  def frame_starts(self, num_frames: tf.Tensor,
                   hop_seconds: tf.Tensor) -> tf.Tensor:
    """int32 [F]: window starts 0, hop, 2 hop, ... while a whole window
    fits (at least one window)."""
    hop_seconds = tf.cast(hop_seconds, tf.float32)
    tf.debugging.assert_positive(
        hop_seconds, "hop_seconds must be a positive number of seconds")
    tf.debugging.assert_all_finite(hop_seconds,
                                   "hop_seconds must be finite")
    hop = tf.maximum(1, tf.cast(tf.round(
        hop_seconds * self.frames_per_second), tf.int32))
    count = tf.maximum(1, (num_frames - self.window) // hop + 1)
    return tf.range(count) * hop

  def frames(self, waveform: tf.Tensor,
             hop_seconds: tf.Tensor) -> Dict[str, tf.Tensor]:
    """float32 [N] at 44.1 kHz (not trimmed) -> frame probabilities [F, C],
    each frame's start time in seconds [F], and the clip's probabilities
    [C] (geometric mean of the frames)."""
    waveform = tf.reshape(waveform, [-1])
    tf.debugging.assert_all_finite(
        waveform, "the waveform holds NaN or infinite samples")
    log_mel, _ = self.log_mel(waveform, trim=False)
    starts = self.frame_starts(tf.shape(log_mel)[0], hop_seconds)
    probs = self.window_scores(log_mel, starts)
    clip = model_lib.probabilities_of(
        tf.reduce_mean(tf.math.log(probs + 1e-12), axis=0),
        self.is_multi_label)
    return {"frame_probabilities": probs,
            "start_seconds": tf.cast(starts, tf.float32) /
                             self.frames_per_second,
            "probabilities": clip}
