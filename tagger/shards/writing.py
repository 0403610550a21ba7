"""Step 3 of a run: records dealt to shards (train: one fold and source
per shard, in a seeded random order; test: CSV order) and each shard
written under a temporary name, then renamed. Shards are written a group
at a time, so memory holds one group of shards, never the dataset.
"""

import collections
import math
from typing import Dict, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from tagger import fileio
from tagger.shards import clip_files
from tagger.shards import extraction
from tagger.shards import records
from tagger.shards import run_options


def record_order(indices: np.ndarray, split: str, seed: int) -> np.ndarray:
  """Train records in a seeded random order (shards mix labels even when the
  CSV is sorted by label); test records in CSV order."""
  if split == "train":
    return np.random.default_rng(seed).permutation(indices)
  return np.asarray(indices)


def plan_shards(record_bytes: np.ndarray, shard_mb: float,
                min_shards: int) -> List[np.ndarray]:
  """Cuts records (already in write order) into shards of about shard_mb."""
  total = float(record_bytes.sum())
  count = max(math.ceil(total / (shard_mb * 2**20)), min_shards, 1)
  count = min(count, len(record_bytes))
  ends = np.cumsum(record_bytes)
  cuts = np.searchsorted(ends, total * np.arange(1, count) / count)
  # Uneven record sizes can put two cuts at one place: no empty shards.
  return [s for s in np.split(np.arange(len(record_bytes)), cuts) if len(s)]


def plan_fold_shards(record_bytes: np.ndarray, folds: np.ndarray,
                     split: str, options: run_options.Options,
                     sources: Optional[np.ndarray] = None):
  """(record indices, fold, source) of every shard; train shards hold one
  fold and one source each.

  One fold (and source) per train shard lets a reader pick a fold's (or a
  source's) records by file, so the input pipeline never parses a record
  only to drop it.
  """
  if sources is None:
    sources = np.zeros(len(folds), np.int64)
  if split == "train":
    groups = sorted(set(zip(folds.tolist(), sources.tolist())))
  else:
    groups = [(-1, 0)]
  per_fold_min = math.ceil(options.min_shards / len(groups))
  plan = []
  for fold, source in groups:
    members = np.flatnonzero((folds == fold) & (sources == source)) \
        if split == "train" else np.arange(len(folds))
    order = record_order(members, split,
                         options.fold_seed + fold + 1 + 7919 * source)
    for part in plan_shards(record_bytes[order], options.shard_mb,
                            per_fold_min):
      plan.append((order[part], fold, source))
  return plan


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def shard_layout(staged: extraction.Staged, pca_dim: int, folds: np.ndarray,
                 options: run_options.Options):
  """(file names, record indices of each shard, (fold, source) of each)."""
  record_bytes = (staged.num_frames * options.params.mel_bands * 2 +
                  pca_dim * 4 + 256)
  sources = np.array([r.source for r in staged.rows], np.int64)
  plan = plan_fold_shards(record_bytes, folds, options.split, options,
                          sources)
  names = [shard_name(options.split, i, len(plan)) for i in range(len(plan))]
  return (names, [members for members, _, _ in plan],
          [(fold, source) for _, fold, source in plan])


def serialize_clip(row: clip_files.Row, log_mel: np.ndarray, empty: bool, fold: int,
                   pca_vector: np.ndarray, label_index: Dict[str, int],
                   split: str) -> bytes:
  """One clip's record (an empty clip keeps no frames)."""
  is_train = split == "train"
  return records.serialize_example(
      fname=row.fname,
      label=label_index[row.label] if is_train else -1,
      label_name=",".join(row.labels) if is_train else "",
      fold=int(fold), manually_verified=row.manually_verified,
      log_mel_db=log_mel[:, :0] if empty else log_mel, pca=pca_vector,
      labels=[label_index[l] for l in row.labels] if is_train else (),
      source=row.source)


def write_shard_file(path: str, serialized: Sequence[bytes],
                     compression: str) -> None:
  """Writes records under a temporary name, then renames: a shard file
  is complete or absent."""
  writer_options = tf.io.TFRecordOptions(
      compression_type="GZIP" if compression == "gzip" else "")
  tmp = fileio.temp_name(path)
  with tf.io.TFRecordWriter(tmp, writer_options) as writer:
    for record in serialized:
      writer.write(record)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def write_shards(staged: extraction.Staged, pca_vectors: np.ndarray, folds: np.ndarray,
                 vocabulary: Sequence[str], options: run_options.Options, staging: str):
  """Writes every shard that is not there yet; returns (names, record
  indices of each shard, (fold, source) of each)."""
  names, shards, keys = shard_layout(staged, pca_vectors.shape[1], folds,
                                     options)
  todo = [i for i, name in enumerate(names)
          if not fileio.exists(fileio.join(options.output_dir, name))]
  # Hold at most ~512 MB of shards at once; each group reads every chunk once.
  per_group = max(1, int(512 // max(options.shard_mb, 1)))
  label_index = {label: i for i, label in enumerate(vocabulary)}
  for start in range(0, len(todo), per_group):
    group = todo[start:start + per_group]
    records_of_chunk = collections.defaultdict(list)
    for i in group:
      for n in shards[i]:
        records_of_chunk[int(staged.chunk[n])].append(n)
    serialized = {}
    for k in sorted(records_of_chunk):
      chunk = fileio.read_npz(extraction.chunk_path(staging, k))
      starts = np.concatenate([[0], np.cumsum(chunk["num_frames"])])
      for n in records_of_chunk[k]:
        j = staged.offset[n]
        serialized[n] = serialize_clip(
            staged.rows[n], chunk["log_mel"][:, starts[j]:starts[j + 1]],
            staged.empty[n], folds[n], pca_vectors[n], label_index,
            options.split)
    for i in group:
      write_shard_file(fileio.join(options.output_dir, names[i]),
                       [serialized[n] for n in shards[i]],
                       options.compression)
      logging.debug("wrote %s (%d records)", names[i], len(shards[i]))
  return names, shards, keys
