"""The offline features as TensorFlow ops: waveform -> trimmed -> log-mel.

What `decode.trim_silence` and `features.waveform_to_log_mel` compute with
librosa, soxr and numpy, computed in a graph, so an exported SavedModel can
take a waveform and needs nothing but TensorFlow:
  trim      librosa.effects.trim: RMS of centred 2048-sample frames (hop
            512), frames within trim_top_db of the loudest are sound; the
            clip runs from the first sound frame's start to the last's end.
  resample  44.1 -> 22.05 kHz as soxr's 'HQ' does it. For an integer
            factor soxr is a linear, time-invariant FIR filter followed by
            decimation; `decimation_filter` reads that filter off soxr
            itself (impulses in, taps out), so the graph applies the very
            same taps (a strided convolution).
  log-mel   centred frames, periodic Hann window, |rfft|^2, librosa's
            Slaney filterbank, 10 log10, floored top_db below the peak.
tests/test_graph_features.py measures the differences on recorded-like
clips (BUILD.md, "Serving anywhere").
"""

import functools
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from tagger.audio import decode
from tagger.audio import features
from tagger.audio.params import FeatureParams


class GraphFeatureError(ValueError):
  """Feature parameters the graph cannot reproduce; the message says why."""


@functools.lru_cache(maxsize=4)
def decimation_filter(rate_in: int, rate_out: int) -> Tuple[np.ndarray, int]:
  """(taps [K] float32, first tap's offset): soxr HQ's resampler from
  rate_in to rate_out = rate_in / D as one FIR filter h at rate_in, so that
  y[m] = sum_k h[k - offset] x[D m - k] for k in [offset, offset + K)."""
  if rate_in % rate_out:
    raise GraphFeatureError(
        f"the graph resamples by an integer factor only; {rate_in} -> "
        f"{rate_out} Hz is not one")
  factor = rate_in // rate_out
  length = 4 * rate_in  # far longer than the filter; no edge effects mid
  centre = length // 2 - (length // 2) % factor
  taps = {}
  for phase in range(factor):
    impulse = np.zeros(length, np.float32)
    impulse[centre + phase] = 1.0
    response = decode.resample(impulse, rate_in, rate_out)
    # response[m] = h(D m - centre - phase)
    for m, value in enumerate(response):
      taps[factor * m - centre - phase] = float(value)
  ks = np.array(sorted(taps))
  hs = np.array([taps[k] for k in ks], np.float64)
  keep = np.flatnonzero(np.abs(hs) > 1e-7 * np.abs(hs).max())
  lo, hi = ks[keep[0]], ks[keep[-1]]
  return (np.array([taps.get(k, 0.0) for k in range(lo, hi + 1)],
                   np.float32), int(lo))


def trim_bounds(waveform: tf.Tensor, params: FeatureParams) -> tf.Tensor:
  """int32 [2] (start, end) of the sound in waveform float32 [N], as
  librosa.effects.trim; (0, 0) when every frame is silent, every sample
  is zero, or N == 0."""
  frame, hop = params.trim_frame_length, params.trim_hop_length
  n = tf.shape(waveform)[0]
  mean_square = _frame_mean_squares(waveform, frame, hop)
  # mean_square: [F] = rms^2
  db = 10.0 * _log10(tf.maximum(mean_square, 1e-10))
  ref = 10.0 * _log10(tf.maximum(tf.reduce_max(
      tf.concat([mean_square, [0.0]], 0)), 1e-10))
  sound = tf.cast(tf.where(db - ref > -params.trim_top_db), tf.int32)[:, 0]
  # sound: [S] indices of sound frames
  # All samples zero: no sound (decode.trim_silence says so before librosa,
  # which would keep every frame of a digital silence).
  empty = tf.equal(tf.size(sound), 0) | ~tf.reduce_any(
      tf.not_equal(waveform, 0.0))
  first = tf.reduce_min(tf.concat([sound, [tf.int32.max]], 0))
  last = tf.reduce_max(tf.concat([sound, [0]], 0))
  start = tf.where(empty, 0, first * hop)
  end = tf.where(empty, 0, tf.minimum(n, (last + 1) * hop))
  return tf.stack([start, end])


FRAMES_PER_BLOCK = 6000   # frames computed at once: memory flat in length
SAMPLES_PER_BLOCK = 1 << 18   # resampled samples computed at once


def _frame_mean_squares(waveform: tf.Tensor, frame: int,
                        hop: int) -> tf.Tensor:
  """float32 [F]: the mean square of each centred frame of `frame` samples
  every `hop` of waveform [N] (zeros beyond it; F = 1 + N // hop, as
  tf.signal.frame cuts the padded waveform), FRAMES_PER_BLOCK frames at a
  time, so a long recording never holds all its frames at once."""
  count = 1 + (tf.shape(waveform)[0] + 2 * (frame // 2) - frame) // hop

  def block(first):
    size = tf.minimum(FRAMES_PER_BLOCK, count - first)
    piece = _zero_padded(waveform, first * hop - frame // 2,
                         (size - 1) * hop + frame)
    frames = tf.signal.frame(piece, frame, hop)
    # frames: [size, frame]
    return tf.reduce_mean(tf.square(frames), axis=1)

  return _in_blocks(block, count, tf.float32)


def _zero_padded(x: tf.Tensor, start: tf.Tensor,
                 length: tf.Tensor) -> tf.Tensor:
  """x[start:start + length] of x [N] seen with zeros on both sides (start
  may be negative, the end past N): [length], without copying all of x."""
  n = tf.shape(x)[0]
  lo = tf.clip_by_value(start, 0, n)
  hi = tf.clip_by_value(start + length, lo, n)
  return tf.pad(x[lo:hi], [[lo - start, start + length - hi]])


def _in_blocks(block, count: tf.Tensor, dtype, size: Optional[int] = None,
               inner: Tuple[int, ...] = ()) -> tf.Tensor:
  """block(first) [b, ...] for first = 0, size, 2 size, ... < count
  (size: FRAMES_PER_BLOCK by default), each [b] + inner, concatenated on
  axis 0 (a while loop: one block's temporaries at a time)."""
  size = size or FRAMES_PER_BLOCK
  blocks = (count + size - 1) // size
  parts = tf.TensorArray(dtype, size=blocks, infer_shape=False,
                         element_shape=tf.TensorShape([None, *inner]))

  def body(i, parts):
    return i + 1, parts.write(i, block(i * size))

  _, parts = tf.while_loop(lambda i, _: i < blocks, body,
                           [tf.constant(0), parts], parallel_iterations=1)
  return tf.cond(blocks > 0, parts.concat,
                 lambda: tf.zeros([0, *inner], dtype))


def trim_silence(waveform: tf.Tensor, params: FeatureParams) -> tf.Tensor:
  """float32 [N] -> [n] without leading and trailing silence."""
  bounds = trim_bounds(waveform, params)
  return waveform[bounds[0]:bounds[1]]


def _log10(x: tf.Tensor) -> tf.Tensor:
  return tf.math.log(x) / np.log(10.0).astype(np.float32)


def resample(waveform: tf.Tensor, params: FeatureParams) -> tf.Tensor:
  """float32 [N] at load_sample_rate_hz -> [ceil(N / D)] at
  mel_sample_rate_hz, with soxr HQ's own filter."""
  taps, offset = decimation_filter(params.load_sample_rate_hz,
                                   params.mel_sample_rate_hz)
  factor = params.load_sample_rate_hz // params.mel_sample_rate_hz
  if factor == 1:
    return waveform
  last = offset + len(taps) - 1   # largest k
  n = tf.shape(waveform)[0]
  out = (n + factor - 1) // factor
  # y[m] = sum_k h(k) x[D m - k]: a correlation with the reversed taps over
  # x seen with `last` zeros in front (and zeros behind).
  kernel = tf.constant(taps[::-1].copy())[:, None, None]
  # kernel: [K, 1, 1]

  def block(first):
    # Outputs first .. first + b - 1 read x[D first - last : D (first + b
    # - 1) + K - last]; a convolution of the whole would hold ~170 bytes
    # per input sample at once (2.3 GB for 10 minutes).
    b = tf.minimum(SAMPLES_PER_BLOCK, out - first)
    piece = _zero_padded(waveform, factor * first - last,
                         factor * (b - 1) + len(taps))
    return tf.nn.conv1d(piece[None, :, None], kernel, stride=factor,
                        padding="VALID")[0, :, 0]

  return _in_blocks(block, out, tf.float32, SAMPLES_PER_BLOCK)[:out]


def _mel_db(low: tf.Tensor, params: FeatureParams) -> tf.Tensor:
  """Resampled waveform, already padded -> dB [M, T] of its frames (no
  floor)."""
  fft = params.mel_fft_length
  frames = tf.signal.frame(low, fft, params.mel_hop_length)
  # frames: [T, fft]
  window = tf.constant(features.hann_window(fft))
  spectrum = tf.abs(tf.signal.rfft(frames * window, [fft]))
  # spectrum: [T, fft // 2 + 1]
  power = spectrum if params.mel_power == 1.0 else tf.pow(
      spectrum, params.mel_power)
  filterbank = tf.constant(features.mel_filterbank(params))
  # filterbank: [M, fft // 2 + 1]
  mel = tf.matmul(filterbank, power, transpose_b=True)
  # mel: [M, T]
  db = 10.0 * _log10(tf.maximum(mel, params.db_amin))
  return db - 10.0 * np.log10(max(params.db_amin, params.db_ref))


def _check_params(params: FeatureParams) -> int:
  if params.stft_pad_mode != "constant":
    raise GraphFeatureError(f"stft_pad_mode {params.stft_pad_mode!r}: the "
                            "graph pads frames with zeros only")
  return params.load_sample_rate_hz // params.mel_sample_rate_hz


def chunk_context(params: FeatureParams) -> int:
  """Samples at load rate a chunk must hold before its first frame's
  centre (and after its last): the resampler's and the window's reach,
  rounded up to whole frames."""
  factor = _check_params(params)
  taps, offset = decimation_filter(params.load_sample_rate_hz,
                                   params.mel_sample_rate_hz)
  reach = factor * (params.mel_fft_length // 2) + max(
      -offset, offset + len(taps))
  step = factor * params.mel_hop_length
  return -(-reach // step) * step


def chunk_mel_db(chunk: tf.Tensor, count: tf.Tensor,
                 params: FeatureParams) -> tf.Tensor:
  """The dB frames [M, count] (no top_db floor) of a long recording, from
  a chunk of it: chunk float32 at load rate starts chunk_context(params)
  samples before the first frame's centre and ends at least that far after
  the last's (zeros beyond the recording). Frames are exactly those of
  log_mel on the whole recording, but for the floor."""
  factor = _check_params(params)
  context = chunk_context(params)
  low = resample(chunk, params)
  first = context // factor - params.mel_fft_length // 2
  need = (count - 1) * params.mel_hop_length + params.mel_fft_length
  return _mel_db(low[first:first + need], params)[:, :count]


def log_mel(waveform: tf.Tensor, params: FeatureParams) -> tf.Tensor:
  """float32 [N] trimmed, at load_sample_rate_hz (N > 0) -> log-mel dB
  [mel_bands, T], T = 1 + ceil(N / D) // mel_hop_length, as
  features.waveform_to_log_mel. The spectrum is computed
  FRAMES_PER_BLOCK frames at a time: memory grows with N only by the
  waveform's and the log-mel's own size."""
  _check_params(params)
  low = resample(waveform, params)
  fft, hop = params.mel_fft_length, params.mel_hop_length
  count = 1 + (tf.shape(low)[0] + 2 * (fft // 2) - fft) // hop

  def block(first):
    size = tf.minimum(FRAMES_PER_BLOCK, count - first)
    piece = _zero_padded(low, first * hop - fft // 2,
                         (size - 1) * hop + fft)
    return tf.transpose(_mel_db(piece, params))
    # [size, M]

  db = tf.transpose(_in_blocks(block, count, tf.float32,
                               inner=(params.mel_bands,)))
  # db: [M, T]
  db = tf.maximum(db, tf.reduce_max(db) - params.db_top_db)
  if params.db_ref_peak:
    db -= peak_db(tf.reduce_max(tf.abs(waveform)), params)
  return db


def peak_db(peak: tf.Tensor, params: FeatureParams) -> tf.Tensor:
  """dB of a waveform peak's power, as features.peak_db (db_ref_peak)."""
  return 10.0 * _log10(tf.maximum(params.db_amin, peak * peak))
