"""A user's audio file in, one way for every caller (tagger.api's tag()
and frames(), through clip_files as tools/score reads): regular files
only, opened without blocking (a FIFO or a device would block open()
forever), checked after opening; decoded whole or streamed in blocks with
the same refusals (empty, undecodable, NaN or infinite samples) and the
same notes (truncated, clipped)."""

from typing import Iterator

from absl import logging
import numpy as np
import tensorflow as tf

from tagger import errors
from tagger.audio import decode
from tagger.shards import clip_files


class FileError(errors.UserError):
  """A file that cannot be read; the message names it and says why."""


def read_file(path: str) -> bytes:
  """A file's bytes through clip_files' intake (regular files only, no
  blocking open); ApiError naming the file and the reason."""
  try:
    return clip_files.read_clip(path)
  except (OSError, tf.errors.OpError) as e:
    raise FileError(f"{path}: cannot read ({clip_files.read_reason(e)})"
                   ) from None


def open_file(path: str):
  """A file object to stream from (local: opened without blocking and
  checked regular; remote: tf.io.gfile)."""
  try:
    if "://" in path:
      if tf.io.gfile.isdir(path):
        raise IsADirectoryError(path)
      return tf.io.gfile.GFile(path, "rb")
    return clip_files.open_regular(path)
  except (OSError, tf.errors.OpError) as e:
    raise FileError(f"{path}: cannot read ({clip_files.read_reason(e)})"
                   ) from None


def decoded_blocks(f, name: str, rate_out: int, block_seconds: float,
                    say: bool = True) -> Iterator[np.ndarray]:
  """An open audio file -> mono float32 blocks at rate_out (soxr streams
  across blocks); AudioError for undecodable or non-finite audio, the
  notes (truncated, clipped) said once."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  import soxr  # pylint: disable=g-import-not-at-top
  if not f.read(1):
    raise decode.AudioError(f"{name}: file is empty (0 bytes)")
  f.seek(0)
  try:
    sound = sf.SoundFile(f)
  except (sf.LibsndfileError, RuntimeError, ValueError, EOFError) as e:
    raise decode.AudioError(f"{name}: unreadable audio "
                            f"({decode.decode_reason(e)})") from None
  if sound.frames == 0:
    raise decode.AudioError(f"{name}: no audio samples")
  if say and decode.is_truncated(sound.extra_info):
    logging.warning("%s: truncated audio (the file holds less data than its "
                    "header declares); scored from what decoded", name)
  stream = None if sound.samplerate == rate_out else soxr.ResampleStream(
      sound.samplerate, rate_out, 1, dtype="float32", quality="HQ")
  step = max(1, int(block_seconds * sound.samplerate))
  clipped = not say   # said once, and only when asked
  while True:
    block = sound.read(step, dtype="float32", always_2d=True)
    last = block.shape[0] < step
    mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
    if not np.all(np.isfinite(mono)):
      raise decode.AudioError(f"{name}: audio holds NaN or infinite samples")
    if not clipped and decode.is_clipped(mono):
      clipped = True
      logging.warning("%s: clipped (samples at full scale); the scores are "
                      "of distorted audio", name)
    if stream is not None:
      mono = stream.resample_chunk(mono, last=last)
    if mono.size:
      yield mono
    if last:
      return
