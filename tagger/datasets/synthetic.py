"""Synthetic train shards (random log-mels of realistic lengths).

For benchmarks and tests of the input pipeline and trainer, which need shards
of a given size quickly and no audio. The records and manifest have the same
format tools/make_tfrecords writes; pca[0] holds the record's index, so a
test can tell records apart after shuffling.
"""

import math

import numpy as np
import tensorflow as tf

from tagger import fileio
from tagger.audio.params import FeatureParams
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


def write_synthetic_shards(output_dir: str, num_records: int, *,
                           num_classes: int = 41, num_folds: int = 10,
                           pca_dim: int = 350, median_frames: float = 500,
                           sigma: float = 0.7, shards_per_fold: int = 1,
                           seed: int = 0, lengths=None,
                           learnable: bool = False,
                           params: FeatureParams = FeatureParams()) -> dict:
  """Writes train shards (one fold per shard group) and manifest.json.

  Label i % num_classes, fold synthetic_fold(i) (every fold holds every
  class); log-mel uniform in dB over
  the normalisation range, or (learnable) quiet noise with a loud band of
  mel rows that depends on the class (and a PCA vector shifted by class),
  which a model learns in a few steps. params: the feature set written
  into the manifest (its mel bands and dB bounds shape the log-mel).
  Returns the manifest.
  """
  rng = np.random.default_rng(seed)
  if lengths is None:
    lengths = clip_lengths(num_records, rng, median_frames, sigma)
  lengths = np.asarray(lengths, np.int64)
  labels = [f"class_{c:02d}" for c in range(num_classes)]
  fileio.makedirs(output_dir)
  shards, index = [], np.arange(num_records)
  count = num_folds * shards_per_fold
  for fold in range(num_folds):
    members = index[synthetic_fold(index, num_classes, num_folds) == fold]
    for part, chunk in enumerate(np.array_split(members, shards_per_fold)):
      name = (f"train-{fold * shards_per_fold + part:05d}-of-"
              f"{count:05d}.tfrecord")
      path = fileio.join(output_dir, name)
      with tf.io.TFRecordWriter(path) as writer:
        for i in chunk:
          shape = (params.mel_bands, lengths[i])
          if learnable:
            mel = rng.uniform(-80, -60, shape)
            rows = params.mel_bands // num_classes
            c = i % num_classes
            mel[c * rows:(c + 1) * rows] += 70
          else:
            mel = rng.uniform(params.norm_min_db, params.norm_max_db, shape)
          mel = mel.astype(np.float16)
          pca = rng.normal(size=pca_dim).astype(np.float32)
          if learnable:  # the class moves the PCA vector too, as real ones
            pca[1 + (i % num_classes) % max(pca_dim - 1, 1)] += 4.0
          pca[0] = i
          writer.write(records.serialize_example(
              fname=f"clip_{i:06d}.wav", label=int(i % num_classes),
              label_name=labels[i % num_classes], fold=fold,
              manually_verified=int(i % 3 != 0), log_mel_db=mel, pca=pca))
      shards.append({"file": name, "fold": fold, "records": len(chunk),
                     "bytes": tf.io.gfile.stat(path).length,
                     "sha256": fileio.sha256(path)})
  p25, p75 = np.percentile(lengths, [25, 75])
  manifest = {
      "tool": "tagger.synthetic", "record_format": records.RECORD_FORMAT,
      "split": "train", "num_records": num_records, "labels": labels,
      "num_classes": num_classes, "feature_params": params.to_dict(),
      "log_mel": {"dtype": "float16", "layout": "[num_frames, num_mels]",
                  "units": "dB", "num_mels": params.mel_bands},
      "normalization": {"min_db": params.norm_min_db,
                        "max_db": params.norm_max_db},
      "frames": {"mean": float(lengths.mean()), "p25": float(p25),
                 "p75": float(p75)},
      "crop_range": [int(round(p25)), int(max(math.ceil(p75),
                                              round(p25) + 1))],
      "pca": {"dim": pca_dim},
      "folds": {"num_folds": num_folds},
      "per_class_counts": {l: int(np.sum(index % num_classes == c))
                           for c, l in enumerate(labels)},
      "per_fold_counts": {str(f): int(np.sum(
          synthetic_fold(index, num_classes, num_folds) == f))
                          for f in range(num_folds)},
      "compression": "none",
      "shards": shards,
  }
  records.write_manifest(output_dir, manifest)
  return manifest
