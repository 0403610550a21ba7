"""The shards, as their manifest describes them: which folds, which files,
which lengths; checked before anything reads them.

`DataInfo` is what the input pipeline, the trainer and the scorer know of a
shard folder; `load_data_info` reads and checks it (every shard there at its
size, and with verify its sha256).
"""

import dataclasses
from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tagger import fileio
from tagger import settings
from tagger.shards import manifest as manifest_lib
from tagger.shards import records


class InputError(settings.SettingsError):
  """Shards or settings the pipeline cannot use; the message says why."""


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """A shard folder and its manifest: the views the input pipeline, the
  trainer and the scorer read."""
  data_dir: str
  manifest: manifest_lib.Manifest

  @property
  def labels(self) -> Sequence[str]:
    return self.manifest.labels

  @property
  def num_classes(self) -> int:
    return self.manifest.num_classes

  @property
  def pca_dim(self) -> int:
    return self.manifest.pca.dim

  @property
  def num_mels(self) -> int:
    return self.manifest.num_mels

  @property
  def normalization(self) -> Tuple[float, float]:
    return self.manifest.normalization

  @property
  def compression(self) -> str:
    return "GZIP" if self.manifest.compression == "gzip" else ""

  @property
  def folds(self) -> Tuple[int, ...]:
    """The folds that can be validated (not -1: train-only clips)."""
    return tuple(sorted({s.fold for s in self.manifest.shards
                         if s.fold >= 0}))

  @property
  def train_only(self) -> Tuple[int, ...]:
    """(-1,) when some shards hold clips that train in every fold (their
    class has one clip), else ()."""
    return (-1,) if any(s.fold < 0 for s in self.manifest.shards) else ()

  @property
  def multi_label(self) -> bool:
    return self.manifest.multi_label

  @property
  def sources(self) -> Tuple[str, ...]:
    """The train CSVs' source names (index = a record's `source`)."""
    return self.manifest.sources

  def only_sources(self, names: Sequence[str]) -> "DataInfo":
    """This folder with only the shards of the given sources (all when
    names is empty): train on curated + noisy, validate on curated."""
    names = [n for n in names if n]
    if not names:
      return self
    unknown = sorted(set(names) - set(self.sources))
    if unknown:
      raise InputError(f"sources {unknown} are not in {self.data_dir} "
                       f"(its sources: {list(self.sources)})")
    return DataInfo(self.data_dir, self.manifest.with_shards(
        [s for s in self.manifest.shards if s.source in names]))

  def shards(self, folds: Sequence[int]) -> List[manifest_lib.Shard]:
    return [s for s in self.manifest.shards if s.fold in folds]

  def files(self, folds: Sequence[int]) -> List[str]:
    return [fileio.join(self.data_dir, s.file) for s in self.shards(folds)]

  def all_files(self) -> List[str]:
    return [fileio.join(self.data_dir, s.file) for s in self.manifest.shards]

  def num_records(self, folds: Sequence[int]) -> int:
    return sum(s.records for s in self.shards(folds))

  @property
  def batch_spec(self) -> records.BatchSpec:
    return records.BatchSpec(self.num_mels, self.pca_dim, self.num_classes,
                             self.normalization, self.multi_label,
                             len(self.sources))

  def class_counts(self) -> np.ndarray:
    counts = self.manifest.per_class_counts or {}
    return np.array([counts.get(l, 0) for l in self.labels], np.int64)


def load_data_info(data_dir: str, verify: bool = False) -> DataInfo:
  """Reads data_dir/manifest.json and checks the pipeline can use it: every
  shard there at its size, and with verify its sha256 as the manifest's
  (a flipped byte is named here, not by a reader error mid-run)."""
  try:
    manifest = manifest_lib.Manifest.read(data_dir)
  except manifest_lib.ManifestError as e:
    raise InputError(str(e)) from e
  check_shards(data_dir, manifest, verify)
  return DataInfo(data_dir, manifest)


def check_shards(data_dir: str, manifest: manifest_lib.Manifest,
                 verify: bool = False) -> None:
  """Every shard the manifest lists is there at its size (a stat each) and,
  with verify, has the manifest's sha256 (reads every shard once: about a
  second per GB here)."""
  for shard in manifest.shards:
    path = fileio.join(data_dir, shard.file)
    if not fileio.exists(path):
      raise InputError(f"{path}: shard listed in the manifest is missing; "
                       "re-make the shards (tools/make_tfrecords --resume)")
    size = tf.io.gfile.stat(path).length
    if size != shard.bytes:
      raise InputError(f"{path}: {size} bytes, the manifest says "
                       f"{shard.bytes}: truncated or replaced; re-make "
                       "the shards")
    if verify and shard.sha256 and fileio.sha256(path) != shard.sha256:
      raise InputError(f"{path}: sha256 differs from the manifest's: the "
                       "file is corrupted (flipped bytes) or was replaced; "
                       "re-make the shards")


def explain_data_loss(data_dir: str, manifest: manifest_lib.Manifest,
                      error: Exception):
  """An InputError naming the damaged shard behind a reader's DataLossError
  (which names no file), or the error itself if every shard checks out.
  Shards the manifest gives no checksum for are read record by record
  (each record has its own CRC), so the damaged one is named too."""
  try:
    check_shards(data_dir, manifest, verify=True)
  except InputError as named:
    return named
  compression = "GZIP" if manifest.compression == "gzip" else ""
  for shard in manifest.shards:
    if shard.sha256:
      continue   # checked above
    path = fileio.join(data_dir, shard.file)
    try:
      for _ in tf.data.TFRecordDataset(path, compression):
        pass
    except tf.errors.DataLossError as e:
      lines = (e.message or "").strip().splitlines()
      why = lines[0] if lines else "a record fails its checksum"
      return InputError(f"{path}: damaged ({why}); re-make the shards")
  return error


def select_folds(info: DataInfo, fold, split: str) -> Tuple[int, ...]:
  """Folds of a split: train = all but `fold`, validation = `fold`.

  fold 'all' (or None) trains on every fold and has no validation split.
  Train-only clips (fold -1) are in every train split.
  """
  if fold in (None, "all"):
    return info.folds + info.train_only if split == "train" else ()
  fold = int(fold)
  if fold not in info.folds:
    raise InputError(f"fold {fold} is not in {info.data_dir} (folds "
                     f"{list(info.folds)})")
  if split == "train":
    return tuple(f for f in info.folds if f != fold) + info.train_only
  if split == "validation":
    return (fold,)
  raise InputError(f"split must be train or validation, not {split!r}")


# ---------------------------------------------------------------------------
# Random numbers keyed by (seed, epoch, step).
