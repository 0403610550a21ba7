"""Tag audio from Python, no files to write:

  from tagger import api
  tagger = api.Tagger.load("runs/demo/stage1/fold*")   # or a SavedModel dir
  clip = tagger.tag("dog.wav")            # or tag(waveform, sample_rate)
  clip.top(3)                             # [("Bark", 0.81), ...]
  frames = tagger.frames("street.wav", hop_seconds=0.5)
  frames.start_seconds, frames.probabilities   # [F], [F, C]
  frames.timeline_png("street.png")

Clips: the waveform SavedModel's graph (serving.WaveformTagger: trim,
log-mel, TTA, every model). Frames: a recording of any length is read and
turned into log-mel in chunks (`chunk_seconds`), so memory stays flat in
its length: one pass finds the loudest frame (the log-mel's 80 dB floor is
the file's, as offline), a second scores windows chunk by chunk.
Audio at any sample rate is resampled to 44.1 kHz with soxr, as the
sharding tool does.
"""

import dataclasses
import io
import json
from typing import Iterator, List, Optional, Sequence, Tuple, Union

from absl import logging
import numpy as np
import tensorflow as tf

from tagger import errors
from tagger import fileio
from tagger.audio import decode
from tagger.audio import features
from tagger.audio import graph_features
from tagger.audio.params import FeatureParams
from tagger.infer import audio_files
from tagger.infer import serving

Audio = Union[str, np.ndarray]


class ApiError(errors.UserError):
  """Audio or models the API cannot use; the message says why."""


@dataclasses.dataclass
class ClipResult:
  labels: List[str]
  probabilities: np.ndarray   # [C], sums to 1
  embedding: np.ndarray       # [D]
  empty: bool                 # no sound: ranked by class frequencies
  seconds: float = 0.0        # the audio's duration
  heard_seconds: float = 0.0  # how much of it was scored (max_clip_seconds)

  def top(self, k: int = 3) -> List[Tuple[str, float]]:
    order = np.argsort(-self.probabilities)[:k]
    return [(self.labels[i], float(self.probabilities[i])) for i in order]


@dataclasses.dataclass
class FrameResult:
  labels: List[str]
  start_seconds: np.ndarray   # [F]
  window_seconds: float
  probabilities: np.ndarray   # [F, C]
  multi_label: bool = False   # sigmoid models: classes independent

  def timeline_png(self, path: str, top: int = 5, title: str = "") -> str:
    from tagger import plots  # pylint: disable=g-import-not-at-top
    fileio.atomic_write_bytes(path, plots.timeline(
        self.start_seconds, self.window_seconds, self.probabilities,
        self.labels, top=top, title=title))
    return path


class Tagger:
  """Stage-1 model dirs (in-process graph) or a waveform SavedModel."""

  def __init__(self, module, labels: Sequence[str], params: FeatureParams,
               window: int, chunk_seconds: float = 60.0):
    self._module = module
    self.labels = list(labels)
    self.params = params
    self.window = int(window)
    self.chunk_seconds = float(chunk_seconds)
    self._clip = tf.function(module.clip, input_signature=[
        tf.TensorSpec([None], tf.float32)]) if isinstance(
            module, serving.WaveformTagger) else module.signatures[
                "serving_default"]
    self._windows = None
    # One traced function for every file's chunks (a new one per call
    # traced again for each file: 20 files, 20 traces).
    self._chunk_mel_db = tf.function(
        lambda c, n: graph_features.chunk_mel_db(c, n, self.params),
        reduce_retracing=True)
    # SavedModels exported before tagger 0.6 hold single-label models.
    flag = getattr(module, "multi_label", None)
    self.multi_label = bool(flag.numpy()) if flag is not None else False

  @classmethod
  def load(cls, path: str, **kwargs) -> "Tagger":
    """Model dirs (a dir, or globs, comma separated) or a SavedModel."""
    if fileio.exists(fileio.join(path, "saved_model.pb")):
      module = _load_saved_model(path)
      if "frames" not in module.signatures:
        raise ApiError(f"{path}: not a waveform SavedModel (export stage-1 "
                       "model dirs with tools/export)")
      labels = [l.decode() for l in module.labels.numpy()]
      params = FeatureParams.from_dict(_params_of(module))
      return cls(module, labels, params, int(module.window_frames), **kwargs)
    from tagger.infer import scorer  # pylint: disable=g-import-not-at-top
    models = [scorer.load_model(d) for d in scorer.find_model_dirs(path)]
    module = serving.WaveformTagger(models)
    return cls(module, [l.decode() for l in module.labels.numpy()],
               module.params, module.window, **kwargs)

  # -- audio in ------------------------------------------------------------

  def _waveform(self, source: Audio, sample_rate: Optional[int]
                ) -> Tuple[np.ndarray, float]:
    """(mono float32 at 44.1 kHz, the source's seconds): a file through
    the one intake (a regular file, decoded, finite; its notes said), a
    waveform checked and resampled. A file past max_clip_seconds is
    decoded up to it only (memory stays bounded)."""
    if isinstance(source, str):
      try:
        data = audio_files.read_file(source)
      except audio_files.FileError as e:
        raise ApiError(str(e)) from None
      waveform, truncated, full = decode.decode_audio(data, source,
                                                      self.params)
      for _, note in decode.notes(source, waveform, truncated, full,
                               self.params):
        logging.warning(note)
      rate = self.params.load_sample_rate_hz
      return waveform, full or waveform.size / rate
    waveform = np.asarray(source, np.float32)
    if waveform.ndim == 2:  # [samples, channels]
      waveform = waveform.mean(axis=1)
    if waveform.ndim != 1:
      raise ApiError(f"a waveform is [samples] or [samples, channels], "
                     f"not of shape {np.shape(source)}")
    if sample_rate is None or not sample_rate > 0:
      raise ApiError("give the sample_rate of a waveform (a positive "
                     "number of Hz)")
    if not np.all(np.isfinite(waveform)):
      raise ApiError("the waveform holds NaN or infinite samples")
    if decode.is_clipped(waveform):
      logging.warning("the waveform is clipped (samples at full scale); "
                      "the scores are of distorted audio")
    seconds = waveform.size / float(sample_rate)
    return decode.resample(waveform, int(sample_rate),
                           self.params.load_sample_rate_hz), seconds

  def tag(self, source: Audio, sample_rate: Optional[int] = None
          ) -> ClipResult:
    """One clip (a path, or a waveform [N] / [N, channels] with its rate),
    heard up to max_clip_seconds (10 min by default; a warning says when
    more was there: frames() hears any length), as tools/score and the
    SavedModel hear it."""
    waveform, seconds = self._waveform(source, sample_rate)
    out = self._clip(waveform=tf.constant(waveform))
    heard = min(seconds, float(out["heard_seconds"])) if \
        "heard_seconds" in out else seconds
    if heard < seconds - 0.01 and not isinstance(source, str):
      logging.warning("the waveform is %.0f s long; only the first %g s are "
                      "heard (max_clip_seconds; frames() hears all of it)",
                      seconds, self.params.max_clip_seconds)
    empty = bool(out["empty"])
    if empty:
      logging.warning("%s: no sound after trimming (silent); ranked by the "
                      "training class frequencies",
                      source if isinstance(source, str) else "the waveform")
    return ClipResult(self.labels, out["probabilities"].numpy(),
                      out["embedding"].numpy(), empty, float(seconds), heard)

  # -- long recordings -------------------------------------------------------

  def _blocks(self, source: Audio, sample_rate: Optional[int],
              block_seconds: float, say: bool) -> Iterator[np.ndarray]:
    """The recording at 44.1 kHz mono, in blocks (streamed from a file
    through the one intake: a regular file, finite samples, its notes
    said)."""
    rate_out = self.params.load_sample_rate_hz
    if not isinstance(source, str):
      waveform, _ = self._waveform(source, sample_rate)
      step = int(block_seconds * rate_out)
      for start in range(0, waveform.size, step):
        yield waveform[start:start + step]
      return
    try:
      opened = audio_files.open_file(source)
    except audio_files.FileError as e:
      raise ApiError(str(e)) from None
    with opened as f:
      yield from audio_files.decoded_blocks(f, source, rate_out,
                                            block_seconds, say)

  def _chunks(self, source, sample_rate, chunk_frames: int, say: bool
              ) -> Iterator[Tuple[np.ndarray, int, bool]]:
    """(chunk at 44.1 kHz with context, frames in it, last?) for frames
    0..T-1 in runs of chunk_frames; T = 1 + ceil(N / 2) // hop."""
    context = graph_features.chunk_context(self.params)
    factor = self.params.load_sample_rate_hz // self.params.mel_sample_rate_hz
    step = factor * self.params.mel_hop_length  # samples per frame
    buffer = np.zeros(context, np.float32)  # zeros before the recording
    total = 0          # samples read so far
    first = 0          # first frame of the next chunk
    done = False
    blocks = self._blocks(source, sample_rate, self.chunk_seconds, say)
    while True:
      need = context + chunk_frames * step + context
      while not done and buffer.size < need:
        try:
          block = next(blocks)
        except StopIteration:
          done = True
          break
        buffer = np.concatenate([buffer, block])
        total += block.size
      frames_total = 1 + (-(-total // factor)) // self.params.mel_hop_length
      count = min(chunk_frames, frames_total - first) if done else \
          chunk_frames
      if count <= 0:
        return
      size = context + (count - 1) * step + context
      chunk = buffer[:size]
      if chunk.size < size:  # zeros after the recording
        chunk = np.pad(chunk, (0, size - chunk.size))
      last = done and first + count >= frames_total
      yield chunk, count, last
      if last:
        return
      buffer = buffer[count * step:]
      first += count

  def frames(self, source: Audio, hop_seconds: float = 0.5,
             sample_rate: Optional[int] = None) -> FrameResult:
    """Window scores over a recording of any length (windows of the
    models' shortest validation length every hop_seconds; at least one)."""
    params = self.params
    fps = params.mel_frames_per_second
    hop = frame_hop(hop_seconds, fps)
    chunk_frames = max(self.window, int(self.chunk_seconds * fps))
    mel_db = self._chunk_mel_db
    loudest, peak = -np.inf, 0.0
    for chunk, count, _ in self._chunks(source, sample_rate, chunk_frames,
                                        say=True):
      loudest = max(loudest, float(tf.reduce_max(mel_db(chunk, count))))
      peak = max(peak, float(np.max(np.abs(chunk))))
    floor = loudest - params.db_top_db
    # db_ref_peak: relative to the recording's peak (as for a whole clip).
    shift = features.peak_db(np.array([peak], np.float32), params)
    carry = np.zeros((0, params.mel_bands), np.float16)  # frames [T, M]
    offset = 0        # recording frame of carry[0]
    next_start = 0
    starts, probs = [], []
    for chunk, count, last in self._chunks(source, sample_rate,
                                           chunk_frames, say=False):
      db = np.maximum(mel_db(chunk, count).numpy(), floor) - shift
      carry = np.concatenate([carry, db.T.astype(np.float16)])
      end = offset + carry.shape[0]
      todo = []
      while next_start + self.window <= end:
        todo.append(next_start)
        next_start += hop
      if last and not starts and not todo:
        todo = [0]  # shorter than a window: one padded window
      if todo:
        local = np.array(todo, np.int32) - offset
        probs.append(self._score_windows(carry, local))
        starts += todo
      keep = max(0, next_start - offset)
      carry, offset = carry[keep:], offset + keep
    return FrameResult(self.labels, np.array(starts, np.float32) / fps,
                       self.window / fps, np.concatenate(probs),
                       self.multi_label)

  def _score_windows(self, log_mel: np.ndarray,
                     starts: np.ndarray) -> np.ndarray:
    if self._windows is None:
      module = self._module
      self._windows = module.score_windows if hasattr(
          module, "score_windows") else tf.function(
              module.window_scores, reduce_retracing=True)
    out = []
    for i in range(0, len(starts), 64):  # bounded batches of windows
      out.append(self._windows(tf.constant(log_mel),
                               tf.constant(starts[i:i + 64])).numpy())
    return np.concatenate(out)


def _load_saved_model(path: str):
  """tf.saved_model.load; a SavedModel that does not load (damaged or cut
  short files) is ApiError naming it."""
  try:
    return tf.saved_model.load(path)
  except (tf.errors.OpError, ValueError, IndexError, KeyError, OSError,
          AssertionError) as e:
    first = (getattr(e, "message", None) or str(e) or type(e).__name__
             ).strip().splitlines()[0][:200]
    raise ApiError(f"{path}: the SavedModel does not load ({first}); its "
                   "files are damaged or incomplete: export it again with "
                   "tools/export") from None


def frame_hop(hop_seconds: float, frames_per_second: float) -> int:
  """Frames between window starts for hop_seconds (at least one); a hop
  that is not a positive, finite number of seconds is ApiError."""
  try:
    hop = float(hop_seconds)
  except (TypeError, ValueError):
    hop = float("nan")
  if not np.isfinite(hop) or hop <= 0:
    raise ApiError(f"hop_seconds must be a positive number of seconds, not "
                   f"{hop_seconds!r}")
  return max(1, int(round(hop * frames_per_second)))


def _params_of(module) -> dict:
  return json.loads(module.feature_params_json.numpy().decode())



def write_frames(tagger: Tagger, paths: Sequence[str], csv_path: str, *,
                 hop_seconds: float = 0.5, png_dir: str = "",
                 progress: bool = True) -> Tuple[int, List[str]]:
  """Frame scores of audio files: a CSV (fname, start_seconds,
  end_seconds, one probability column per class; a row per window) and,
  with png_dir, a timeline PNG per file. Files are streamed in chunks.
  Returns (rows written, files skipped: (path, reason) each, also
  logged)."""
  import csv  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from tagger import parallel  # pylint: disable=g-import-not-at-top
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["fname", "start_seconds", "end_seconds"] + tagger.labels)
  rows = 0
  if png_dir:
    fileio.makedirs(png_dir)
  bar = parallel.progress_bar(len(paths), enabled=progress, unit="file",
                              desc="frames")
  skipped = []
  for path in paths:
    name = os.path.basename(path)
    try:
      result = tagger.frames(path, hop_seconds)
    except (ApiError, decode.AudioError, tf.errors.OpError) as e:
      reason = str(getattr(e, "message", None) or e)
      logging.warning("%s (no frame scores)", reason)
      skipped.append((path, reason))
      bar.update(1)
      continue
    for start, probs in zip(result.start_seconds, result.probabilities):
      writer.writerow([fileio.spreadsheet_safe(name), f"{start:.3f}",
                       f"{start + result.window_seconds:.3f}"] +
                      [f"{p:.5g}" for p in probs])
      rows += 1
    if png_dir:
      result.timeline_png(fileio.join(png_dir, name + ".png"), title=name)
    bar.update(1)
  bar.close()
  fileio.atomic_write_text(csv_path, buffer.getvalue())
  return rows, skipped


def frames_of_files(model_dirs: str, audio_dir: str, csv_out: str, *,
                    audio_csv: str = "", hop_seconds: float = 0.5,
                    png_dir: str = "", progress: bool = True) -> dict:
  """tools/score --frames_out: frame scores of a folder's audio files (or
  those of audio_csv's fname column), with the stage-1 models of
  model_dirs. Files the sharding tool would refuse are reported and
  skipped, as are files that do not decode: 'skipped' holds (path,
  reason) of each."""
  from tagger.shards import clip_files  # pylint: disable=g-import-not-at-top
  try:
    names = clip_files.names_to_score(audio_dir, audio_csv)
  except clip_files.CsvError as e:
    raise ApiError(str(e)) from e
  paths, refused = [], []
  for name in names:
    path, why = clip_files.resolve(audio_dir, name)
    if why:
      logging.warning("%s (no frame scores)", why)
      refused.append((path, why))
    else:
      paths.append(path)
  try:
    tagger = Tagger.load(model_dirs)
  except serving.ServingError as e:
    raise ApiError(f"--frames_out: {e}") from e
  rows, skipped = write_frames(tagger, paths, csv_out,
                               hop_seconds=hop_seconds, png_dir=png_dir,
                               progress=progress)
  return {"files": len(paths) - len(skipped), "rows": rows,
          "skipped": refused + skipped, "window_seconds":
          tagger.window / tagger.params.mel_frames_per_second}
