"""Waveform -> log-mel spectrogram [mel_bands, T], the model's main input.

A numpy implementation of librosa's melspectrogram + power_to_db that caches
the filterbank and window; tests compare it to librosa on the same input.
"""

import functools

import numpy as np
import scipy.fft

from tagger.audio import decode
from tagger.audio.params import FeatureParams


MEL_BLOCK_FRAMES = 2048  # ~20 s of audio per block


@functools.lru_cache(maxsize=8)
def mel_filterbank(params: FeatureParams) -> np.ndarray:
  """Mel filterbank [mel_bands, fft_length // 2 + 1], float32 (Slaney's
  or HTK's scale; area- or unit-sum-normalised filters)."""
  import librosa  # pylint: disable=g-import-not-at-top
  return librosa.filters.mel(
      sr=params.mel_sample_rate_hz, n_fft=params.mel_fft_length,
      n_mels=params.mel_bands, fmin=params.mel_min_hz,
      fmax=params.mel_max_hz, htk=params.mel_htk,
      norm="slaney" if params.mel_norm == "slaney" else 1.0
  ).astype(np.float32)


def peak_db(waveform: np.ndarray, params: FeatureParams) -> float:
  """What db_ref_peak subtracts: the dB of the waveform's peak power (0
  when params.db_ref_peak is off; silence counts as amin)."""
  if not params.db_ref_peak or waveform.size == 0:
    return 0.0
  peak = float(np.max(np.abs(waveform)))
  return 10.0 * float(np.log10(max(params.db_amin, peak * peak)))


@functools.lru_cache(maxsize=8)
def hann_window(length: int) -> np.ndarray:
  """Periodic Hann window, as librosa's get_window('hann', fftbins=True)."""
  n = np.arange(length)
  return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)).astype(np.float32)


def centered_frames(waveform: np.ndarray, frame_length: int, hop_length: int,
                    pad_mode: str) -> np.ndarray:
  """Frames [T, frame_length] of a waveform padded by frame_length // 2."""
  pad = frame_length // 2
  padded = np.pad(waveform, pad, mode=pad_mode)
  # padded: [num_samples + 2 * pad]
  num_frames = 1 + (padded.size - frame_length) // hop_length
  return np.lib.stride_tricks.as_strided(
      padded, shape=(num_frames, frame_length),
      strides=(padded.strides[0] * hop_length, padded.strides[0]),
      writeable=False)


def power_to_db(power: np.ndarray, params: FeatureParams) -> np.ndarray:
  """10 log10(power / ref), floored at amin and at top_db below the peak."""
  db = 10.0 * np.log10(np.maximum(params.db_amin, power))
  db -= 10.0 * np.log10(max(params.db_amin, params.db_ref))
  return np.maximum(db, db.max() - params.db_top_db)


def waveform_to_log_mel(waveform: np.ndarray,
                        params: FeatureParams) -> np.ndarray:
  """Log-mel [mel_bands, T] in dB of a trimmed waveform at 44.1 kHz.

  Args:
    waveform: float32 [num_samples] at params.load_sample_rate_hz, not empty.
    params: feature parameters.

  Returns:
    float32 [mel_bands, T], T = 1 + num_samples_at_22050 // mel_hop_length.
  """
  if waveform.size == 0:
    raise ValueError("waveform_to_log_mel needs at least one sample")
  low_rate = decode.resample(waveform, params.load_sample_rate_hz,
                            params.mel_sample_rate_hz)
  # low_rate: [num_samples / 2]
  frames = centered_frames(low_rate, params.mel_fft_length,
                           params.mel_hop_length, params.stft_pad_mode)
  # frames: [T, fft_length], a view (no copy)
  filterbank = mel_filterbank(params)
  window = hann_window(params.mel_fft_length)
  mel = np.empty((params.mel_bands, frames.shape[0]), np.float32)
  # In blocks of frames, so memory stays ~30 MB however long the clip.
  for start in range(0, frames.shape[0], MEL_BLOCK_FRAMES):
    block = frames[start:start + MEL_BLOCK_FRAMES]
    magnitude = np.abs(scipy.fft.rfft(block * window, axis=1))
    if params.mel_power != 1.0:
      magnitude **= params.mel_power
    # magnitude: [block, fft_length // 2 + 1]
    mel[:, start:start + block.shape[0]] = filterbank @ magnitude.T
  # mel: [mel_bands, T]
  return (power_to_db(mel, params) - peak_db(waveform, params)).astype(
      np.float32)


def normalize(log_mel_db, min_db: float, max_db: float):
  """dB -> [0, 1] between the bounds (the reference's fixed -90.5..39.21
  dB, recorded in the manifest and data.json). The one normalisation of
  training, scoring and export: arithmetic only, so it takes numpy arrays
  and float32 tensors alike."""
  return (log_mel_db - min_db) / (max_db - min_db)
