"""Synthetic train shards (random log-mels of realistic lengths).

For benchmarks and tests of the input pipeline and trainer, which need shards
of a given size quickly and no audio. The records and manifest have the same
format tools/make_tfrecords writes; pca[0] holds the record's index, so a
test can tell records apart after shuffling.
"""

import dataclasses
import math
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from tagger import fileio
from tagger.audio.params import FeatureParams
from tagger.shards import manifest as manifest_lib
from tagger.shards import records


def clip_lengths(count: int, rng: np.random.Generator,
                 median_frames: float = 500, sigma: float = 0.7,
                 lo: int = 30, hi: int = 3000) -> np.ndarray:
  """Log-normal frame counts, like FSDKaggle2018's 0.3-30 s clips."""
  return np.clip(rng.lognormal(np.log(median_frames), sigma, count),
                 lo, hi).astype(np.int64)


def synthetic_fold(index, num_classes: int, num_folds: int):
  """The fold of record `index`: (index // num_classes) % num_folds."""
  return (np.asarray(index) // num_classes) % num_folds


@dataclasses.dataclass(frozen=True)
class SyntheticSet:
  """What write_synthetic_shards writes: num_records clips of num_classes
  labels in num_folds folds (shards_per_fold files each), log-normal
  lengths (median_frames, sigma) unless `lengths` gives each clip's,
  pca_dim-wide PCA vectors, drawn from `seed`; learnable: a class pattern
  a model learns in a few steps; params: the feature set written into the
  manifest (its mel bands and dB bounds shape the log-mel)."""
  num_records: int
  num_classes: int = 41
  num_folds: int = 10
  pca_dim: int = 350
  median_frames: float = 500
  sigma: float = 0.7
  shards_per_fold: int = 1
  seed: int = 0
  lengths: Optional[Sequence[int]] = None
  learnable: bool = False
  params: FeatureParams = FeatureParams()
  # Records given a wrong label (the next class) over their true class's
  # pattern: planted label errors.
  flipped: Sequence[int] = ()

  def given_label(self, i: int) -> int:
    """Record i's label as written: its class, or the next if flipped."""
    true = i % self.num_classes
    return (true + 1) % self.num_classes if i in self.flipped else true


def _record(spec: SyntheticSet, i: int, frames: int, fold: int, labels,
            rng) -> bytes:
  """Clip i's serialized record (its log-mel, then its PCA vector drawn
  from rng, in that order)."""
  shape = (spec.params.mel_bands, frames)
  if spec.learnable:
    mel = rng.uniform(-80, -60, shape)
    rows = spec.params.mel_bands // spec.num_classes
    c = i % spec.num_classes
    mel[c * rows:(c + 1) * rows] += 70
  else:
    mel = rng.uniform(spec.params.norm_min_db, spec.params.norm_max_db,
                      shape)
  mel = mel.astype(np.float16)
  pca = rng.normal(size=spec.pca_dim).astype(np.float32)
  if spec.learnable:  # the class moves the PCA vector too, as real ones
    pca[1 + (i % spec.num_classes) % max(spec.pca_dim - 1, 1)] += 4.0
  pca[0] = i
  return records.serialize_example(
      fname=f"clip_{i:06d}.wav", label=spec.given_label(i),
      label_name=labels[spec.given_label(i)], fold=fold,
      manually_verified=int(i % 3 != 0), log_mel_db=mel, pca=pca)


def write_synthetic_shards(output_dir: str, spec: SyntheticSet
                           ) -> manifest_lib.Manifest:
  """Writes train shards (one fold per shard group) and manifest.json.

  Label i % num_classes, fold synthetic_fold(i) (every fold holds every
  class); log-mel uniform in dB over
  the normalisation range, or (learnable) quiet noise with a loud band of
  mel rows that depends on the class (and a PCA vector shifted by class),
  which a model learns in a few steps. params: the feature set written
  into the manifest (its mel bands and dB bounds shape the log-mel).
  Returns the manifest.
  """
  rng = np.random.default_rng(spec.seed)
  lengths = spec.lengths
  if lengths is None:
    lengths = clip_lengths(spec.num_records, rng, spec.median_frames,
                           spec.sigma)
  lengths = np.asarray(lengths, np.int64)                       # [N]
  labels = [f"class_{c:02d}" for c in range(spec.num_classes)]
  fileio.makedirs(output_dir)
  shards, index = [], np.arange(spec.num_records)
  count = spec.num_folds * spec.shards_per_fold
  for fold in range(spec.num_folds):
    members = index[synthetic_fold(index, spec.num_classes,
                                   spec.num_folds) == fold]
    for part, chunk in enumerate(np.array_split(members,
                                                spec.shards_per_fold)):
      name = (f"train-{fold * spec.shards_per_fold + part:05d}-of-"
              f"{count:05d}.tfrecord")
      path = fileio.join(output_dir, name)
      with tf.io.TFRecordWriter(path) as writer:
        for i in chunk:
          writer.write(_record(spec, int(i), int(lengths[i]), fold, labels,
                               rng))
      shards.append(manifest_lib.Shard(
          name, fold, "train", len(chunk), tf.io.gfile.stat(path).length,
          fileio.sha256(path)))
  p25, p75 = np.percentile(lengths, [25, 75])
  manifest = manifest_lib.Manifest(
      split="train", labels=tuple(labels), shards=tuple(shards),
      feature_params=spec.params.to_dict(), num_mels=spec.params.mel_bands,
      frames_per_second=spec.params.mel_frames_per_second,
      normalization=(spec.params.norm_min_db, spec.params.norm_max_db),
      pca=manifest_lib.Pca(spec.pca_dim, 0.0, ""),
      frames={"mean": float(lengths.mean()), "p25": float(p25),
              "p75": float(p75)},
      crop_range=(int(round(p25)), int(max(math.ceil(p75),
                                           round(p25) + 1))),
      num_records=spec.num_records,
      per_class_counts={l: sum(spec.given_label(int(i)) == c for i in index)
                        for c, l in enumerate(labels)},
      per_fold_counts={str(f): int(np.sum(
          synthetic_fold(index, spec.num_classes, spec.num_folds) == f))
                       for f in range(spec.num_folds)},
      folds={"num_folds": spec.num_folds}, engine="tagger.synthetic")
  manifest.write(output_dir)
  return manifest
