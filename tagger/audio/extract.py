"""One clip's bytes -> its features; the work done in each worker process.

TensorFlow-free on purpose: workers are spawned processes, and importing TF
in each would cost seconds and hundreds of MB apiece.
"""

import dataclasses
from typing import Optional

import numpy as np

from tagger.audio import decode
from tagger.audio import features
from tagger.audio import summary_features
from tagger.audio.params import FeatureParams
from tagger.audio.params import SUMMARY_FEATURE_COUNT

OK, EMPTY, TRUNCATED, FAILED, CUT = 0, 1, 2, 3, 4
STATUS_NAMES = {OK: "ok", EMPTY: "empty", TRUNCATED: "truncated",
                FAILED: "failed", CUT: "cut"}
USABLE = (OK, CUT)  # written in every split; TRUNCATED only in test splits


@dataclasses.dataclass
class ClipTask:
  row: int  # index of the clip's row in the CSV
  name: str  # path or name used in messages
  data: Optional[bytes]  # None when the file could not be read
  read_error: str = ""


@dataclasses.dataclass
class ClipFeatures:
  """What extraction made of one clip.

  status OK: all features. EMPTY: the file decoded to no audio, or nothing is
  left after trimming (log_mel has 0 frames). TRUNCATED: features of the part
  that decoded, the file is shorter than its header says. CUT: features of
  the first params.max_clip_seconds of a longer file. FAILED: nothing.
  """
  row: int
  status: int
  reason: str
  duration_s: float  # decoded duration before trimming
  log_mel_db: np.ndarray  # float16 [mels, T]
  summary: np.ndarray  # float32 [1133]
  notes: tuple = ()  # decode.notes: (kind, line) of truncated, cut, clipped


def failed(task: ClipTask, status: int, reason: str, duration_s: float,
           params: FeatureParams) -> ClipFeatures:
  """A result without features: the clip is reported with its reason."""
  return ClipFeatures(
      row=task.row, status=status, reason=reason, duration_s=duration_s,
      log_mel_db=np.zeros((params.mel_bands, 0), np.float16),
      summary=np.zeros(SUMMARY_FEATURE_COUNT, np.float32))


def extract_clip(task: ClipTask, params: FeatureParams) -> ClipFeatures:
  """Decodes, trims and computes the log-mel and summary features."""
  if task.data is None:
    return failed(task, FAILED, task.read_error, 0.0, params)
  try:
    waveform, truncated, full_seconds = decode.decode_audio(
        task.data, task.name, params)
  except decode.AudioError as e:
    status = EMPTY if "0 bytes" in str(e) else FAILED
    return failed(task, status, str(e), 0.0, params)
  duration_s = waveform.size / params.load_sample_rate_hz
  if waveform.size == 0:
    return failed(task, EMPTY, f"{task.name}: no audio samples", 0.0,
                   params)
  trimmed = decode.trim_silence(waveform, params)
  if trimmed.size == 0:
    return failed(task, EMPTY, f"{task.name}: silent (nothing left after "
                   f"trimming at {params.trim_top_db:g} dB)", duration_s,
                   params)
  try:
    log_mel = features.waveform_to_log_mel(trimmed, params)
    head = trimmed[:int(params.summary_max_seconds *
                        params.load_sample_rate_hz)]
    summary = summary_features.summary_features(head, params)
  except Exception as e:  # pylint: disable=broad-except
    # A bad clip is reported and skipped; it never stops the whole run.
    return failed(task, FAILED, f"{task.name}: feature extraction failed "
                   f"({type(e).__name__}: {e})", duration_s, params)
  status, reason = OK, ""
  if full_seconds:
    status = CUT
    reason = (f"{task.name}: {full_seconds:.0f} s long; only the first "
              f"{params.max_clip_seconds:g} s are used (max_clip_seconds)")
  if truncated:
    status = TRUNCATED
    reason = (f"{task.name}: truncated audio (the file holds less data than "
              "its header declares)")
  return ClipFeatures(row=task.row, status=status, reason=reason,
                      duration_s=duration_s,
                      log_mel_db=log_mel.astype(np.float16), summary=summary,
                      notes=tuple(decode.notes(task.name, waveform, truncated,
                                               full_seconds, params)))


_worker_params: Optional[FeatureParams] = None


def init_worker(params_dict: dict) -> None:
  """Pool initializer: one BLAS thread per process, params set once."""
  global _worker_params
  try:
    import threadpoolctl  # pylint: disable=g-import-not-at-top
    threadpoolctl.threadpool_limits(1)
  except ImportError:
    pass
  _worker_params = FeatureParams.from_dict(params_dict)


def task_size(task: ClipTask) -> int:
  """Bytes a task holds (for bounding what is read ahead)."""
  return len(task.data or b"")


def extract_in_worker(task: ClipTask) -> ClipFeatures:
  return extract_clip(task, _worker_params)


def heavy_modules_loaded(_=None) -> tuple:
  """Which of (tensorflow, keras) this process has imported (diagnostics)."""
  import sys  # pylint: disable=g-import-not-at-top
  return tuple(m for m in ("tensorflow", "keras") if m in sys.modules)


def warm_up(params: FeatureParams) -> None:
  """Runs the feature code once on a short tone in this process.

  librosa's numba functions compile on first use and write numba's on-disk
  cache; workers compiling at the same moment in a fresh install can corrupt
  that cache (seen: a segfault in piptrack on every later run). Compiling
  here first, before any worker starts, leaves them a complete cache.
  """
  t = np.arange(params.load_sample_rate_hz // 2) / params.load_sample_rate_hz
  waveform = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
  features.waveform_to_log_mel(waveform, params)
  summary_features.summary_features(waveform, params)
