"""Audio decoding and trimming: any file -> mono float32 at 44.1 kHz.

Decoding works on bytes, not paths, so the caller can read from any
filesystem (tf.io.gfile) and the worker processes that decode never import
TensorFlow.
"""

import io
import re
from typing import Tuple

import numpy as np

from tagger.audio.params import FeatureParams


class AudioError(ValueError):
  """A clip that cannot be used; the message names the file and the reason."""


# libsndfile logs "data : 88200 (should be 44078)" for a WAV whose data chunk
# is shorter than its header says.
_TRUNCATED_WAV = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.M)


def decode_audio(data: bytes, name: str,
                 params: FeatureParams) -> Tuple[np.ndarray, bool, float]:
  """Decodes WAV (8/16/24/32-bit int, float), FLAC, OGG or MP3 bytes.

  Args:
    data: the file's bytes.
    name: the file's name, for messages.
    params: feature parameters (the target sample rate).

  Returns:
    (waveform, truncated, full_seconds): mono float32 [num_samples] at
    params.load_sample_rate_hz, whether the file held less audio than its
    header declares (the samples that are there are returned), and the
    file's duration when it is longer than params.max_clip_seconds (only
    that much is decoded: memory stays bounded), else 0.

  Raises:
    AudioError: the bytes are empty or not audio libsndfile can decode.
  """
  import soundfile as sf  # pylint: disable=g-import-not-at-top

  if not data:
    raise AudioError(f"{name}: file is empty (0 bytes)")
  try:
    info = sf.info(io.BytesIO(data))
    limit = int(params.max_clip_seconds * info.samplerate)
    full_seconds = info.duration if 0 < limit < info.frames else 0.0
    audio, sample_rate = sf.read(io.BytesIO(data), dtype="float32",
                                 always_2d=True,
                                 frames=limit if full_seconds else -1)
  except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as e:
    raise AudioError(f"{name}: unreadable audio ({decode_reason(e)})") from e
  truncated = is_truncated(info.extra_info)
  # audio: [num_samples, channels]
  waveform = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
  # waveform: [num_samples]
  if not np.all(np.isfinite(waveform)):
    raise AudioError(f"{name}: audio holds NaN or infinite samples")
  return (resample(waveform, sample_rate, params.load_sample_rate_hz),
          truncated, float(full_seconds))


FORMATS = ("WAV, FLAC, OGG (Vorbis, Opus), MP3, AIFF and the other "
           "formats of libsndfile")


def is_truncated(extra_info: str) -> bool:
  """libsndfile's extra_info says the data chunk is shorter than the
  header declares."""
  return bool(_TRUNCATED_WAV.search(extra_info or ""))


def decode_reason(error: Exception) -> str:
  """libsndfile's reason without its "Error opening <object at 0x..>: ",
  with the formats that work where the format was not recognised."""
  reason = re.sub(r"^Error opening <[^>]*>:\s*", "", str(error))
  if "ormat not recognised" in reason or "nknown format" in reason:
    reason += f"; tagger reads {FORMATS}"
  return reason


CLIPPED_FRACTION = 0.001   # samples at full scale that make a clip clipped


def is_clipped(waveform: np.ndarray) -> bool:
  """More than CLIPPED_FRACTION of the samples at full scale (|x| >=
  0.999): the recording was clipped, so what is heard is distorted."""
  if waveform.size == 0:
    return False
  return np.count_nonzero(np.abs(waveform) >= 0.999) > \
      CLIPPED_FRACTION * waveform.size


def notes(name: str, waveform: np.ndarray, truncated: bool,
          full_seconds: float, params: FeatureParams) -> list:
  """What a user should know about a decoded clip that is scored anyway:
  (kind, one line naming the file) for each of truncated, cut (past
  max_clip_seconds) and clipped. Every tool that takes a user's file says
  the same."""
  said = []
  if truncated:
    said.append(("truncated", f"{name}: truncated audio (the file holds less data than "
                "its header declares); scored from what decoded"))
  if full_seconds:
    said.append(("cut", f"{name}: {full_seconds:.0f} s long; only the first "
                f"{params.max_clip_seconds:g} s are heard (max_clip_seconds"
                "; frame scores hear all of it)"))
  if is_clipped(waveform):
    said.append(("clipped", f"{name}: clipped (samples at full scale); the scores are "
                "of distorted audio"))
  return said


def resample(waveform: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
  """Resamples with soxr (librosa's default, 'soxr_hq')."""
  if rate_in == rate_out or waveform.size == 0:
    return np.ascontiguousarray(waveform, dtype=np.float32)
  import soxr  # pylint: disable=g-import-not-at-top
  return soxr.resample(waveform, rate_in, rate_out,
                       quality="HQ").astype(np.float32)


def trim_silence(waveform: np.ndarray, params: FeatureParams) -> np.ndarray:
  """Drops leading/trailing silence, as librosa.effects.trim does.

  Frames whose RMS is more than trim_top_db below the loudest frame are
  silence. An all-silent clip trims to zero samples.
  """
  import librosa  # pylint: disable=g-import-not-at-top
  if waveform.size == 0 or not np.any(waveform):
    return waveform[:0]
  trimmed, _ = librosa.effects.trim(waveform, top_db=params.trim_top_db,
                                    frame_length=params.trim_frame_length,
                                    hop_length=params.trim_hop_length)
  return trimmed
