"""The 1,133 summary features of a clip (BUILD.md, "Audio and shards").

Layout of the vector, in order:
  [0, 985)     five statistics over time (mean, std, skew, max, min) of the
               rows of 9 frame-wise features, feature by feature: mel (128),
               MFCC (40), chroma (12), spectral contrast (7), roll-off (1),
               centroid (1), bandwidth (1), tonnetz (6), zero-crossing rate
               (1); within a feature, the 5 statistics are consecutive blocks
               of its rows.
  [985, 997)   envelope statistics (envelope_features).
  [997, 1061)  long-term spectrum statistics (spectrum_features).
  [1061, 1133) waveform statistics over the clip, halves and thirds.

As in the reference, the spectral features get the *magnitude* STFT as S,
so "MFCC" is a DCT of the linear magnitude spectrum, not of a log-mel.

`summary_features` is the fast path used by the sharding tool: one STFT shared
by every spectral feature, and a median filter for the harmonic/percussive
separation that runs SciPy's 1-D fast path over all rows at once (exactly
equal to librosa's, about 10x faster). `summary_features_reference` is the
straightforward librosa computation, kept for tests and the benchmark.
"""

import functools
import warnings

import numpy as np
import scipy.fft
import scipy.ndimage

from tagger.audio.params import FeatureParams
from tagger.audio.params import SUMMARY_FEATURE_COUNT

_FRAME_FEATURE_ROWS = (("mel", 128), ("mfcc", 40), ("chroma", 12),
                       ("contrast", 7), ("rolloff", 1), ("centroid", 1),
                       ("bandwidth", 1), ("tonnetz", 6), ("zcr", 1))
FRAME_STATS_COUNT = 5 * sum(rows for _, rows in _FRAME_FEATURE_ROWS)  # 985
ENVELOPE_COUNT = 12
SPECTRUM_COUNT = 64
WAVEFORM_COUNT = 72
_THRESHOLDS = (0.1, 0.2, 0.5, 0.9, 0.99)


def feature_names():
  """Names of the 1,133 values, in vector order (for debugging and plots)."""
  names = []
  for feature, rows in _FRAME_FEATURE_ROWS:
    for stat in ("mean", "std", "skew", "max", "min"):
      names += [f"{feature}_{stat}_{i}" for i in range(rows)]
  for level in ("5", "25"):
    names += [f"env{level}_{s}" for s in ("mean_w", "std_w", "max_w", "n")]
  names += ["attack", "relax", "zc_count", "zc_rate"]
  for level in _THRESHOLDS:
    names += [f"spec{level}_{s}" for s in ("count", "runs", "mean_w",
                                           "std_w", "max_w")]
  names += ["spec_argmax", "spec_centroid", "spec_q2", "spec_q1", "spec_q0",
            "peak_q2", "peak_q1", "peak_q0", "spec_sum", "spec_mean",
            "spec_std", "spec_l2", "spec_max", "spec_tv"]
  names += [f"spec_smooth_{i}" for i in range(25)]
  for part in ("all", "half0", "half1", "third0", "third1", "third2"):
    for signal in ("x", "abs", "diff"):
      names += [f"{part}_{signal}_{s}" for s in ("mean", "std", "min", "max")]
  return names


def row_statistics(rows: np.ndarray) -> np.ndarray:
  """[5 * R]: mean, std, skew, max, min over time of rows [R, T]."""
  rows = rows.astype(np.float64)
  mean = rows.mean(axis=1)
  centred = rows - mean[:, None]
  m2 = np.mean(centred**2, axis=1)
  m3 = np.mean(centred**3, axis=1)
  with np.errstate(all="ignore"):
    # scipy.stats.skew(bias=True), NaN for constant rows as scipy gives.
    skew = np.where(m2 > (1e-14 * mean)**2, m3 / m2**1.5, np.nan)
  return np.concatenate([mean, np.sqrt(m2), skew, rows.max(axis=1),
                         rows.min(axis=1)])


# ---------------------------------------------------------------------------
# Harmonic/percussive separation with a fast median filter.


def median_filter_rows(x: np.ndarray, size: int) -> np.ndarray:
  """Median over a window of `size` along the last axis, 'reflect' edges.

  Equal to scipy.ndimage.median_filter(x, size=(1, size), mode='reflect'):
  each row is padded by its own mirror image, the rows are laid end to end
  and filtered once in 1-D (SciPy's fast path), then the pads are cut off.
  A window never reaches past its row's padding, so rows do not mix.
  """
  half = size // 2
  padded = np.pad(x, ((0, 0), (half, half)), mode="symmetric")
  # padded: [R, T + 2 * half]
  flat = scipy.ndimage.median_filter(padded.ravel(), size=size,
                                     mode="reflect")
  return flat.reshape(padded.shape)[:, half:padded.shape[1] - half]


def harmonic_waveform(stft: np.ndarray, num_samples: int,
                      params: FeatureParams) -> np.ndarray:
  """librosa.effects.harmonic from an existing STFT [F, T] (margin 1)."""
  import librosa  # pylint: disable=g-import-not-at-top
  magnitude = np.abs(stft)
  # magnitude: [F, T]
  harmonic = median_filter_rows(magnitude, params.hpss_kernel)
  percussive = median_filter_rows(magnitude.T, params.hpss_kernel).T
  mask = librosa.util.softmask(harmonic, percussive, power=2.0,
                               split_zeros=True)
  return librosa.istft(stft * mask, hop_length=params.summary_hop_length,
                       n_fft=params.summary_fft_length, length=num_samples)


# ---------------------------------------------------------------------------
# A memo for librosa's constant-Q filter bases.
#
# librosa rebuilds the CQT filter basis of every octave on every call (about
# 60% of tonnetz), although it depends only on the sample rate, the bin
# frequencies (tuning is estimated in steps of 0.01 bin) and fixed settings.
# The memo wraps librosa's private builder; librosa is pinned (setup.py) and
# the tests compare against uncached librosa. vqt() rescales the basis it
# gets in place, so each call receives a copy.


def _memoize_cqt_filters():
  import librosa.core.constantq as cq  # pylint: disable=g-import-not-at-top
  name = "__vqt_filter_fft"
  build = getattr(cq, name, None)
  if build is None or getattr(build, "_tagger_memo", False):
    return
  memo = {}

  def cached(sr, freqs, filter_scale, norm, sparsity, hop_length=None,
             window="hann", gamma=0.0, dtype=np.complex64, alpha=None):
    try:
      key = (float(sr), np.asarray(freqs).tobytes(), filter_scale, norm,
             sparsity, hop_length, window, gamma, np.dtype(dtype).str,
             None if alpha is None else np.asarray(alpha).tobytes())
      hash(key)
    except TypeError:  # an unhashable window: no memo
      return build(sr, freqs, filter_scale, norm, sparsity, hop_length,
                   window, gamma, dtype, alpha)
    if key not in memo:
      if len(memo) >= 4096:  # ~100 tunings x 7 octaves fit
        memo.clear()
      memo[key] = build(sr, freqs, filter_scale, norm, sparsity, hop_length,
                        window, gamma, dtype, alpha)
    basis, n_fft, lengths = memo[key]
    return basis.copy(), n_fft, lengths.copy()

  cached._tagger_memo = True  # pylint: disable=protected-access
  setattr(cq, name, cached)


# ---------------------------------------------------------------------------
# The 985 frame-wise statistics.


@functools.lru_cache(maxsize=4)
def _summary_mel_filterbank(sample_rate: int, fft_length: int, bands: int):
  import librosa  # pylint: disable=g-import-not-at-top
  return librosa.filters.mel(sr=sample_rate, n_fft=fft_length, n_mels=bands)


def frame_statistics(waveform: np.ndarray,
                     params: FeatureParams) -> np.ndarray:
  """[985] row statistics of the 9 frame-wise features, one shared STFT."""
  import librosa  # pylint: disable=g-import-not-at-top
  sr = params.load_sample_rate_hz
  n_fft, hop = params.summary_fft_length, params.summary_hop_length
  stft = librosa.stft(waveform, n_fft=n_fft, hop_length=hop,
                      pad_mode=params.stft_pad_mode)
  # stft: [1 + n_fft / 2, T] complex
  s = np.abs(stft)
  mel = _summary_mel_filterbank(sr, n_fft, params.summary_mel_bands) @ s
  # mel: [128, T]
  mfcc = scipy.fft.dct(s, axis=0, type=2, norm="ortho")[:params.summary_mfcc]
  # mfcc: [40, T]
  chroma = librosa.feature.chroma_stft(S=s, sr=sr, n_fft=n_fft)
  contrast = librosa.feature.spectral_contrast(S=s, sr=sr, n_fft=n_fft)
  rolloff = librosa.feature.spectral_rolloff(S=s, sr=sr, n_fft=n_fft)
  centroid = librosa.feature.spectral_centroid(S=s, sr=sr, n_fft=n_fft)
  bandwidth = librosa.feature.spectral_bandwidth(S=s, sr=sr, n_fft=n_fft,
                                                 centroid=centroid)
  harmonic = harmonic_waveform(stft, waveform.size, params)
  _memoize_cqt_filters()
  tonnetz = librosa.feature.tonnetz(y=harmonic, sr=sr)
  # tonnetz: [6, T']
  zcr = librosa.feature.zero_crossing_rate(waveform, frame_length=n_fft,
                                           hop_length=hop)
  rows = (mel, mfcc, chroma, contrast, rolloff, centroid, bandwidth, tonnetz,
          zcr)
  return np.concatenate([row_statistics(r) for r in rows])


def frame_statistics_reference(waveform: np.ndarray,
                               params: FeatureParams) -> np.ndarray:
  """The same 985 values, computed the straightforward librosa way."""
  import librosa  # pylint: disable=g-import-not-at-top
  sr = params.load_sample_rate_hz
  s = np.abs(librosa.stft(waveform, pad_mode=params.stft_pad_mode))
  rows = (librosa.feature.melspectrogram(S=s, sr=sr),
          librosa.feature.mfcc(S=s, sr=sr, n_mfcc=params.summary_mfcc),
          librosa.feature.chroma_stft(S=s, sr=sr),
          librosa.feature.spectral_contrast(S=s, sr=sr),
          librosa.feature.spectral_rolloff(S=s, sr=sr),
          librosa.feature.spectral_centroid(S=s, sr=sr),
          librosa.feature.spectral_bandwidth(S=s, sr=sr),
          librosa.feature.tonnetz(y=librosa.effects.harmonic(waveform),
                                  sr=sr),
          librosa.feature.zero_crossing_rate(waveform))
  return np.concatenate([row_statistics(r) for r in rows])


# ---------------------------------------------------------------------------
# Envelope, long-term spectrum and waveform statistics (numpy only).


def run_lengths(mask: np.ndarray) -> np.ndarray:
  """Lengths of the stretches of True in a 1-D boolean array."""
  edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
  return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def _width_stats(widths: np.ndarray) -> list:
  if widths.size == 0:
    return [0.0, 0.0, 0.0]
  return [widths.mean(), widths.std(), widths.max()]


def running_mean(x: np.ndarray, window: int) -> np.ndarray:
  """Mean over each full window of `window` samples ('valid' mode)."""
  window = max(1, min(window, x.size))
  sums = np.cumsum(np.concatenate([[0.0], x.astype(np.float64)]))
  return (sums[window:] - sums[:-window]) / window


def envelope_features(waveform: np.ndarray,
                      params: FeatureParams) -> np.ndarray:
  """[12]: loud stretches, attack, relax and zero crossings of a clip.

  On the running mean of the squared signal (the envelope): for the levels
  5% and 25% of its max, log(1+) of the mean, std and max width (samples) of
  the stretches above the level and of their count; log(1+) of the samples
  to first reach 99% of the max (attack) and from there to first fall under
  20% of it (relax, to the end if it never does); log(1+) of the number of
  zero crossings, and the crossings per sample.
  """
  envelope = running_mean(np.square(waveform), params.envelope_window)
  peak = envelope.max()
  values = []
  for level in (0.05, 0.25):
    widths = run_lengths(envelope > level * peak) if peak > 0 else np.zeros(0)
    values += [np.log1p(v) for v in _width_stats(widths)]
    values.append(np.log1p(widths.size))
  attack = int(np.argmax(envelope >= 0.99 * peak)) if peak > 0 else 0
  after = envelope[attack:] < 0.2 * peak
  relax = int(np.argmax(after)) if after.any() else after.size
  crossings = np.count_nonzero(np.diff(np.signbit(waveform)))
  values += [np.log1p(attack), np.log1p(relax), np.log1p(crossings),
             crossings / max(1, waveform.size - 1)]
  return np.asarray(values, dtype=np.float64)


def _quadratic_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  if x.size < 3:
    return np.zeros(3)
  return np.polyfit(x, y, 2)


def spectrum_features(waveform: np.ndarray,
                      params: FeatureParams) -> np.ndarray:
  """[64]: statistics of the clip's mean magnitude spectrum.

  m = log(1 + mean |FFT|) over consecutive spectrum_window-sample windows
  from sample spectrum_offset (a shorter clip is zero-padded to one window),
  first spectrum_bins bins. Then: per level 10/20/50/90/99% of max(m), the
  count of bins above it, the number of stretches above it and their mean,
  std and max width (25); argmax; centroid (bin units); quadratic fit of m
  over x in [0, 1) and of m within +-50 bins of its peak (6); sum, mean,
  std, L2 norm, max and total variation (6); and a 20-bin running mean taken
  every 40 bins (25).
  """
  window, offset = params.spectrum_window, params.spectrum_offset
  x = waveform[offset:] if waveform.size >= offset + window else np.pad(
      waveform, (0, max(0, offset + window - waveform.size)))[offset:]
  num_windows = x.size // window
  frames = x[:num_windows * window].reshape(num_windows, window)
  # frames: [num_windows, window]
  magnitude = np.abs(scipy.fft.rfft(frames, axis=1)).mean(axis=0)
  m = np.log1p(magnitude[:params.spectrum_bins].astype(np.float64))
  # m: [spectrum_bins]
  peak, top = int(np.argmax(m)), m.max()
  values = []
  for level in _THRESHOLDS:
    above = m > level * top
    widths = run_lengths(above)
    values += [np.count_nonzero(above), widths.size] + _width_stats(widths)
  bins = np.arange(m.size, dtype=np.float64)
  centroid = (bins * m).sum() / m.sum() if m.sum() > 0 else 0.0
  lo, hi = max(0, peak - 50), min(m.size, peak + 51)
  values += [peak, centroid]
  values += list(_quadratic_fit(bins / m.size, m))
  values += list(_quadratic_fit((bins[lo:hi] - peak) / 50.0, m[lo:hi]))
  values += [m.sum(), m.mean(), m.std(), np.linalg.norm(m), top,
             np.abs(np.diff(m)).sum()]
  smooth = running_mean(m, 20)
  values += list(smooth[::40][:25])
  return np.asarray(values, dtype=np.float64)


def _moments(x: np.ndarray) -> list:
  if x.size == 0:
    return [0.0, 0.0, 0.0, 0.0]
  return [x.mean(), x.std(), x.min(), x.max()]


def waveform_features(waveform: np.ndarray) -> np.ndarray:
  """[72]: mean, std, min, max of x, |x| and diff(x), whole, halves, thirds."""
  values = []
  for parts in (1, 2, 3):
    for part in np.array_split(waveform.astype(np.float64), parts):
      values += _moments(part) + _moments(np.abs(part)) + _moments(
          np.diff(part))
  return np.asarray(values, dtype=np.float64)


# ---------------------------------------------------------------------------


def _assemble(frame_stats: np.ndarray, waveform: np.ndarray,
              params: FeatureParams) -> np.ndarray:
  vector = np.concatenate([frame_stats,
                           envelope_features(waveform, params),
                           spectrum_features(waveform, params),
                           waveform_features(waveform)])
  assert vector.shape == (SUMMARY_FEATURE_COUNT,), vector.shape
  # Degenerate clips (a constant row, a silent harmonic part) give NaN
  # statistics; the scaler and PCA need finite numbers.
  return np.nan_to_num(vector, nan=0.0, posinf=0.0,
                       neginf=0.0).astype(np.float32)


def _quietly(fn, *args):
  with np.errstate(all="ignore"), warnings.catch_warnings():
    warnings.simplefilter("ignore")  # librosa warns on very short clips
    return fn(*args)


def summary_features(waveform: np.ndarray,
                     params: FeatureParams) -> np.ndarray:
  """The 1,133 summary features [1133] float32 of a trimmed 44.1 kHz clip."""
  return _assemble(_quietly(frame_statistics, waveform, params), waveform,
                   params)


def summary_features_reference(waveform: np.ndarray,
                               params: FeatureParams) -> np.ndarray:
  """summary_features computed the straightforward librosa way (slow)."""
  return _assemble(_quietly(frame_statistics_reference, waveform, params),
                   waveform, params)
