"""Near-duplicate sound effects: a coarse log-mel fingerprint of each
clip and the removal of clips whose fingerprint matches an earlier one's
(games share public recordings, re-encoded, trimmed or at another gain).
"""

import dataclasses
from typing import List, Sequence, Tuple

import numpy as np

from tagger.audio import decode
from tagger.datasets import sound_effects

FP_RATE = 8000      # fingerprints are taken at this rate (any source has it)
FP_HOP = 160        # 20 ms frames
FP_BANDS = 32       # mel bands, 60 Hz to 3.8 kHz
FP_FRAMES = 250     # the first 5 s after the onset are compared
FP_FLOOR_DB = 40.0  # the envelope is floored this far below its peak
FP_SHIFTS = 3       # frames of misalignment tried each way (small trims)


@dataclasses.dataclass
class Fingerprint:
  """A sound's coarse envelope, what envelope_corr compares."""
  frames: np.ndarray    # [T, FP_BANDS] log-mel envelope from the onset
  profile: np.ndarray   # [FP_BANDS] its mean over time, z-normalised
  audible: float        # seconds from the first to the last audible frame


def fingerprint(waveform: np.ndarray, rate: int) -> Fingerprint:
  """The coarse log-mel envelope of a sound at FP_RATE: 32 bands every
  20 ms, in dB floored FP_FLOOR_DB below the peak, from the first frame
  within 30 dB of the peak, at most FP_FRAMES frames. Gain (a dB offset)
  and resampling (bands below 3.8 kHz) leave it as it was; trims move it
  by a few frames."""
  import librosa  # pylint: disable=g-import-not-at-top
  y = decode.resample(waveform, rate, FP_RATE)
  mel = librosa.feature.melspectrogram(
      y=y, sr=FP_RATE, n_fft=512, hop_length=FP_HOP, n_mels=FP_BANDS,
      fmin=60.0, fmax=3800.0, power=2.0, center=True)
  db = 10 * np.log10(mel.T + 1e-12)   # [T, bands]
  db = np.maximum(db, db.max() - FP_FLOOR_DB)
  level = db.max(axis=1)
  loud = np.nonzero(level > db.max() - 30.0)[0]
  start, stop = int(loud[0]), int(loud[-1]) + 1
  frames = db[start:start + FP_FRAMES]
  profile = frames.mean(axis=0)
  profile = (profile - profile.mean()) / (profile.std() + 1e-9)
  return Fingerprint(frames, profile, (stop - start) * FP_HOP / FP_RATE)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
  x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
  return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9))


def envelope_corr(a: Fingerprint, b: Fingerprint) -> float:
  """How alike two envelopes are over their common length: the smaller of
  the correlation of their loudness contours (mean dB per frame) and that
  of their spectral shapes (dB less each frame's mean), at the best of up
  to FP_SHIFTS frames of offset either way. Two sounds that only share a
  contour (two bangs, two hisses) differ in shape."""
  best = -1.0
  for shift in range(-FP_SHIFTS, FP_SHIFTS + 1):
    x = a.frames[max(shift, 0):]
    y = b.frames[max(-shift, 0):]
    n = min(len(x), len(y))
    if n < 5:
      continue
    x, y = x[:n], y[:n]                        # [n, FP_BANDS]
    level_x, level_y = x.mean(axis=1), y.mean(axis=1)
    shape = _corr(x - level_x[:, None], y - level_y[:, None])
    best = max(best, min(_corr(level_x, level_y), shape))
  return best


def near_duplicates(clips: Sequence[sound_effects.Clip],
                    duplicate_corr: float) -> Tuple[List[int], List[list]]:
  """(indices of the clips kept, duplicates.csv's rows). A clip is a
  near-duplicate of an earlier kept one when their audible lengths are
  within 25% of each other, their mean spectra correlate above 0.8 and
  their envelopes (envelope_corr) above duplicate_corr; the earlier one
  (source, then path order) is kept. The clips are decoded, at
  sound_effects.RATE."""
  prints = [fingerprint(c.waveform, sound_effects.RATE) for c in clips]
  profiles = np.stack([p.profile for p in prints]) / np.sqrt(FP_BANDS)
  similar = profiles @ profiles.T        # [N, N] correlations of spectra
  audible = np.array([p.audible for p in prints])
  ratio = np.minimum.outer(audible, audible) / np.maximum(
      np.maximum.outer(audible, audible), 1e-9)
  candidates = (similar > 0.8) & (ratio > 0.75)
  kept, rows = [], []
  for i, clip in enumerate(clips):
    match = None
    for j in kept:
      if candidates[i, j]:
        corr = envelope_corr(prints[i], prints[j])
        if corr > duplicate_corr:
          match = (j, corr)
          break
    if match is None:
      kept.append(i)
      continue
    j, corr = match
    rows.append([clip.source, clip.path, clip.label, clips[j].source,
                 clips[j].path, clips[j].label, f"{corr:.3f}"])
  return kept, rows

