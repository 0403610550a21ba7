"""The TFRecord schema: keys, feature spec, writer and parser.

The only module that spells a record key. tfrecords/README.md documents the
same schema for readers who do not use this package.

One tf.train.Example per clip:
  fname              bytes    the clip's file name as in the CSV
  label              int64    index into labels.txt; -1 when unknown (test);
                              for multi-label clips the first of `labels`
  labels             int64    [n] every label of the clip (multi-label data;
                              [label] for single-label train clips; absent
                              in shards of tagger < 0.6: read as none)
  source             int64    index into the manifest's `sources` (which
                              train CSV the clip came from; 0 when absent)
  label_name         bytes    the label's name; b"" when unknown
  fold               int64    cross-validation fold; -1 for test clips
  manually_verified  int64    1/0 from the CSV (1 when the column is absent)
  empty              int64    1 when the clip holds no audio after trimming
                              (test clips only: train clips are skipped)
  num_mels           int64    rows of log_mel (64)
  num_frames         int64    columns of log_mel, T (0 when empty)
  log_mel            bytes    float16 little-endian [T, num_mels], time-major,
                              in dB (normalise with the manifest's bounds)
  pca                float32  [pca_dim] the clip's PCA vector (zeros if empty)

Layout (RECORD_FORMAT 2): the log-mel is stored time-major and its bytes are
the last T * num_mels * 2 bytes of every serialized record, so a reader can
cut a time window straight out of the raw record (`parse_windows`) without
copying the whole clip through the proto parser. The writer guarantees this
by appending a second serialized Example that holds only `log_mel` (protobuf
concatenation is a merge, so any proto parser still reads one Example).
"""

import dataclasses
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np
import tensorflow as tf


FNAME = "fname"
LABEL = "label"
LABEL_NAME = "label_name"
LABELS = "labels"
SOURCE = "source"
FOLD = "fold"
MANUALLY_VERIFIED = "manually_verified"
EMPTY = "empty"
NUM_MELS = "num_mels"
NUM_FRAMES = "num_frames"
LOG_MEL = "log_mel"
PCA = "pca"
WINDOW_FRAMES = "window_frames"  # not stored: parse_windows' valid frames

MANIFEST = "manifest.json"  # a shard folder's description (the README)
LOG_MEL_DTYPE = np.dtype("<f2")  # float16: dB values in [-100, 60] keep 0.03 dB
RECORD_FORMAT = 2  # 2: time-major log-mel as the record's last bytes


def _int64(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def serialize_example(*, fname: str, label: int, label_name: str, fold: int,
                      manually_verified: int, log_mel_db: np.ndarray,
                      pca: np.ndarray, labels: Sequence[int] = (),
                      source: int = 0) -> bytes:
  """One clip as a serialized tf.train.Example.

  Args:
    fname: file name as in the CSV.
    label: label index, -1 if unknown.
    label_name: label name, "" if unknown (multi-label: the names joined
      with commas).
    fold: fold index, -1 for test clips.
    manually_verified: 1 or 0.
    log_mel_db: [num_mels, T] log-mel in dB; T == 0 marks an empty clip.
      Stored transposed, [T, num_mels].
    pca: [pca_dim] PCA vector.
    labels: every label index of the clip (written when given).
    source: the clip's source index (written when not 0).
  """
  num_mels, num_frames = log_mel_db.shape
  head = {
      FNAME: _bytes(fname.encode("utf-8")),
      LABEL: _int64(label),
      LABEL_NAME: _bytes(label_name.encode("utf-8")),
      FOLD: _int64(fold),
      MANUALLY_VERIFIED: _int64(manually_verified),
      EMPTY: _int64(num_frames == 0),
      NUM_MELS: _int64(num_mels),
      NUM_FRAMES: _int64(num_frames),
      PCA: tf.train.Feature(float_list=tf.train.FloatList(
          value=np.asarray(pca, np.float32).tolist())),
  }
  if len(labels):
    head[LABELS] = tf.train.Feature(int64_list=tf.train.Int64List(
        value=[int(x) for x in labels]))
  if source:
    head[SOURCE] = _int64(source)
  tail = {LOG_MEL: _bytes(np.ascontiguousarray(
      np.asarray(log_mel_db).T, dtype=LOG_MEL_DTYPE).tobytes())}
  # Two Examples back to back parse as one; the log-mel bytes end the record.
  return b"".join(
      tf.train.Example(features=tf.train.Features(feature=f)).
      SerializeToString() for f in (head, tail))


def header_spec(pca_dim: int) -> Dict[str, tf.io.FixedLenFeature]:
  """The tf.io spec of every key but the log-mel."""
  return {
      FNAME: tf.io.FixedLenFeature([], tf.string),
      LABEL: tf.io.FixedLenFeature([], tf.int64),
      LABEL_NAME: tf.io.FixedLenFeature([], tf.string),
      FOLD: tf.io.FixedLenFeature([], tf.int64),
      MANUALLY_VERIFIED: tf.io.FixedLenFeature([], tf.int64),
      EMPTY: tf.io.FixedLenFeature([], tf.int64),
      NUM_MELS: tf.io.FixedLenFeature([], tf.int64),
      NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
      PCA: tf.io.FixedLenFeature([pca_dim], tf.float32),
      LABELS: tf.io.VarLenFeature(tf.int64),
      SOURCE: tf.io.FixedLenFeature([], tf.int64, default_value=0),
  }


def feature_spec(pca_dim: int) -> Dict[str, tf.io.FixedLenFeature]:
  """The tf.io spec of a record; pca_dim comes from the manifest."""
  return {**header_spec(pca_dim), LOG_MEL: tf.io.FixedLenFeature([], tf.string)}


def parse_example(serialized: tf.Tensor,
                  pca_dim: int) -> Dict[str, tf.Tensor]:
  """Serialized Example -> dict of tensors; log_mel as float32 [mels, T]."""
  parsed = tf.io.parse_single_example(serialized, feature_spec(pca_dim))
  log_mel = tf.io.decode_raw(parsed[LOG_MEL], tf.float16, little_endian=True)
  # log_mel: [T * num_mels]
  log_mel = tf.reshape(log_mel, tf.stack([parsed[NUM_FRAMES],
                                          parsed[NUM_MELS]]))
  # log_mel: [T, num_mels]
  parsed[LOG_MEL] = tf.cast(tf.transpose(log_mel), tf.float32)
  # log_mel: [num_mels, T]
  return parsed


def window_offset(slack: tf.Tensor, fraction: tf.Tensor) -> tf.Tensor:
  """int32, slack's shape: the offset at `fraction` (in [0, 1)) of `slack`
  + 1 places, in [0, slack]. The one window-start rule: where a longer
  clip's window starts, or how much a shorter one is padded before
  (parse_windows, batches.clip_windows, augment.time_indices)."""
  slack = tf.cast(slack, tf.int32)
  return tf.minimum(tf.cast(tf.floor(
      tf.cast(fraction, tf.float32) * tf.cast(slack + 1, tf.float32)),
                            tf.int32), slack)


def parse_windows(serialized: tf.Tensor, pca_dim: int, num_mels: int,
                  start_fraction: tf.Tensor, length: tf.Tensor,
                  keys=None) -> Dict[str, tf.Tensor]:
  """A batch of records with a time window of each log-mel, zero padded.

  Cuts the window out of the raw record bytes (the log-mel ends the record),
  so only the window is copied: the costly step of a fast input pipeline.

  Args:
    serialized: string [B] records.
    pca_dim: width of the PCA vector.
    num_mels: mel bands of every record (the manifest's).
    start_fraction: float32 [B] in [0, 1): a clip of T > L frames gets the
      window starting at floor(start_fraction * (T - L + 1)); a shorter clip
      is taken whole.
    length: int32 scalar L, frames of the output.
    keys: header keys to parse besides num_frames (default: all).

  Returns:
    The header keys as parse_example gives them, batched, plus
    log_mel float16 [B, L, num_mels] (time-major, dB, zeros after the clip)
    and window_frames int32 [B]: valid frames of each window (<= L).
  """
  spec = header_spec(pca_dim)
  if keys is not None:
    spec = {k: spec[k] for k in set(keys) | {NUM_FRAMES}}
  parsed = tf.io.parse_example(serialized, spec)
  frames = tf.cast(parsed[NUM_FRAMES], tf.int32)
  start = window_offset(tf.maximum(frames - length, 0), start_fraction)
  valid = tf.minimum(frames, length)
  frame_bytes = num_mels * LOG_MEL_DTYPE.itemsize
  first = tf.strings.length(serialized) - frames * frame_bytes
  window = tf.strings.substr(serialized, first + start * frame_bytes,
                             valid * frame_bytes)
  # DecodePaddedRaw has no float16 kernel: decode the bits, then bitcast.
  bits = tf.io.decode_raw(window, tf.uint16, little_endian=True,
                          fixed_length=length * frame_bytes)
  # bits: [B, L * num_mels]
  log_mel = tf.reshape(tf.bitcast(bits, tf.float16), [-1, length, num_mels])
  # log_mel: [B, L, num_mels]
  parsed[LOG_MEL] = log_mel
  parsed[WINDOW_FRAMES] = valid
  return parsed


def example_to_numpy(serialized: bytes, pca_dim: int) -> Mapping[str, object]:
  """Parses one record eagerly into numpy values (tests, inspection)."""
  parsed = parse_example(tf.constant(serialized), pca_dim)
  out = {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor)
              else v).numpy() for k, v in parsed.items()}
  for key in (FNAME, LABEL_NAME):
    out[key] = out[key].decode("utf-8")
  return out


def read_headers(serialized: tf.data.Dataset) -> Dict[str, object]:
  """Every record's header, in order (the one reader of headers in bulk;
  no log-mel decoded): fname [N] str, label, fold, manually_verified [N]
  int, empty [N] bool (no audio, or no frames), label_name [N] str and
  labels: [N] tuples of every class index of the clip (its label alone
  where the record lists none)."""
  keys = (FNAME, LABEL, LABEL_NAME, FOLD, MANUALLY_VERIFIED, EMPTY,
          NUM_FRAMES, LABELS)
  spec = {k: header_spec(1)[k] for k in keys}
  def parse(s):
    parsed = tf.io.parse_example(s, spec)
    # labels: sparse [b, n] -> dense, -1 past each row's end
    parsed[LABELS] = tf.sparse.to_dense(parsed[LABELS], -1)
    return parsed
  out = {k: [] for k in keys}
  for batch in serialized.batch(1024).map(parse).as_numpy_iterator():
    for k in keys:
      if k == LABELS:
        out[k] += [tuple(int(v) for v in row if v >= 0) for row in batch[k]]
      else:
        out[k] += batch[k].tolist()
  headers = {k: np.array(out[k], np.int64)
             for k in (LABEL, FOLD, MANUALLY_VERIFIED)}
  headers[FNAME] = np.array([n.decode("utf-8") for n in out[FNAME]], object)
  headers[LABEL_NAME] = np.array([n.decode("utf-8") for n in out[LABEL_NAME]],
                                 object)
  headers[EMPTY] = ((np.array(out[EMPTY], np.int64) != 0) |
                    (np.array(out[NUM_FRAMES], np.int64) == 0))
  headers[LABELS] = [labels or ((label,) if label >= 0 else ())
                     for labels, label in zip(out[LABELS], out[LABEL])]
  return headers


@dataclasses.dataclass(frozen=True)
class BatchSpec:
  """What turning records into model inputs needs to know of the data
  (shards' `DataInfo.batch_spec`, a model dir's
  `DataDescription.batch_spec`)."""
  num_mels: int
  pca_dim: int
  num_classes: int
  normalization: Tuple[float, float]   # (min_db, max_db)
  multi_label: bool = False            # targets from records' `labels`
  num_sources: int = 1                 # > 1: batches carry the source
