"""The TFRecord schema: keys, feature spec, writer and parser.

The only module that spells a record key. tfrecords/README.md documents the
same schema for readers who do not use this package.

One tf.train.Example per clip:
  fname              bytes    the clip's file name as in the CSV
  label              int64    index into labels.txt; -1 when unknown (test)
  label_name         bytes    the label's name; b"" when unknown
  fold               int64    cross-validation fold; -1 for test clips
  manually_verified  int64    1/0 from the CSV (1 when the column is absent)
  empty              int64    1 when the clip holds no audio after trimming
                              (test clips only: train clips are skipped)
  num_mels           int64    rows of log_mel (64)
  num_frames         int64    columns of log_mel, T (0 when empty)
  log_mel            bytes    float16 little-endian [num_mels, T], row-major,
                              in dB (normalise with the manifest's bounds)
  pca                float32  [pca_dim] the clip's PCA vector (zeros if empty)
"""

from typing import Dict, Mapping

import numpy as np
import tensorflow as tf

FNAME = "fname"
LABEL = "label"
LABEL_NAME = "label_name"
FOLD = "fold"
MANUALLY_VERIFIED = "manually_verified"
EMPTY = "empty"
NUM_MELS = "num_mels"
NUM_FRAMES = "num_frames"
LOG_MEL = "log_mel"
PCA = "pca"

LOG_MEL_DTYPE = np.dtype("<f2")  # float16: dB values in [-100, 60] keep 0.03 dB


def _int64(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def serialize_example(*, fname: str, label: int, label_name: str, fold: int,
                      manually_verified: int, log_mel_db: np.ndarray,
                      pca: np.ndarray) -> bytes:
  """One clip as a serialized tf.train.Example.

  Args:
    fname: file name as in the CSV.
    label: label index, -1 if unknown.
    label_name: label name, "" if unknown.
    fold: fold index, -1 for test clips.
    manually_verified: 1 or 0.
    log_mel_db: [num_mels, T] log-mel in dB; T == 0 marks an empty clip.
    pca: [pca_dim] PCA vector.
  """
  num_mels, num_frames = log_mel_db.shape
  features = {
      FNAME: _bytes(fname.encode("utf-8")),
      LABEL: _int64(label),
      LABEL_NAME: _bytes(label_name.encode("utf-8")),
      FOLD: _int64(fold),
      MANUALLY_VERIFIED: _int64(manually_verified),
      EMPTY: _int64(num_frames == 0),
      NUM_MELS: _int64(num_mels),
      NUM_FRAMES: _int64(num_frames),
      LOG_MEL: _bytes(np.ascontiguousarray(
          log_mel_db, dtype=LOG_MEL_DTYPE).tobytes()),
      PCA: tf.train.Feature(float_list=tf.train.FloatList(
          value=np.asarray(pca, np.float32).tolist())),
  }
  return tf.train.Example(
      features=tf.train.Features(feature=features)).SerializeToString()


def feature_spec(pca_dim: int) -> Dict[str, tf.io.FixedLenFeature]:
  """The tf.io spec of a record; pca_dim comes from the manifest."""
  return {
      FNAME: tf.io.FixedLenFeature([], tf.string),
      LABEL: tf.io.FixedLenFeature([], tf.int64),
      LABEL_NAME: tf.io.FixedLenFeature([], tf.string),
      FOLD: tf.io.FixedLenFeature([], tf.int64),
      MANUALLY_VERIFIED: tf.io.FixedLenFeature([], tf.int64),
      EMPTY: tf.io.FixedLenFeature([], tf.int64),
      NUM_MELS: tf.io.FixedLenFeature([], tf.int64),
      NUM_FRAMES: tf.io.FixedLenFeature([], tf.int64),
      LOG_MEL: tf.io.FixedLenFeature([], tf.string),
      PCA: tf.io.FixedLenFeature([pca_dim], tf.float32),
  }


def parse_example(serialized: tf.Tensor,
                  pca_dim: int) -> Dict[str, tf.Tensor]:
  """Serialized Example -> dict of tensors; log_mel as float32 [mels, T]."""
  parsed = tf.io.parse_single_example(serialized, feature_spec(pca_dim))
  log_mel = tf.io.decode_raw(parsed[LOG_MEL], tf.float16, little_endian=True)
  # log_mel: [num_mels * T]
  parsed[LOG_MEL] = tf.cast(
      tf.reshape(log_mel, tf.stack([parsed[NUM_MELS], parsed[NUM_FRAMES]])),
      tf.float32)
  # log_mel: [num_mels, T]
  return parsed


def example_to_numpy(serialized: bytes, pca_dim: int) -> Mapping[str, object]:
  """Parses one record eagerly into numpy values (tests, inspection)."""
  parsed = parse_example(tf.constant(serialized), pca_dim)
  out = {k: v.numpy() for k, v in parsed.items()}
  for key in (FNAME, LABEL_NAME):
    out[key] = out[key].decode("utf-8")
  return out
