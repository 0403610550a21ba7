"""manifest.json, a shard folder's description, typed.

A folder with a manifest is finished: it is written last and atomically,
after the labels and every shard. `Manifest` is the one reader and writer
of the file: `Manifest.read` checks the record format and the fields a
reader needs (a folder of an older tagger fails with one line saying what
to re-make), `Manifest.write` writes the JSON the tools have always
written, and the views of the data (`data_info.DataInfo`,
`records.BatchSpec`, a model dir's `DataDescription`) read its typed
fields, never its JSON keys. A finished sharding run makes one
(sharding.finish_run).
"""

import dataclasses
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from tagger import errors
from tagger import fileio
from tagger.shards import records

MANIFEST = records.MANIFEST


class ManifestError(errors.UserError):
  """A shard folder without a usable manifest; the message says why."""


@dataclasses.dataclass(frozen=True)
class Shard:
  """One shard file: its records are all of one fold (train; -1: train-only
  clips, or a test split) and one source."""
  file: str
  fold: int
  source: str
  records: int
  bytes: int
  sha256: str = ""      # "" in folders whose manifest names none

  def to_json(self) -> dict:
    return {"file": self.file, "fold": self.fold, "source": self.source,
            "records": self.records, "bytes": self.bytes,
            "sha256": self.sha256}

  @classmethod
  def from_json(cls, entry: Mapping, default_source: str) -> "Shard":
    return cls(str(entry["file"]), int(entry["fold"]),
               str(entry.get("source", default_source)),
               int(entry["records"]), int(entry["bytes"]),
               str(entry.get("sha256", "")))


@dataclasses.dataclass(frozen=True)
class Pca:
  dim: int
  explained_variance: float
  fit_file: str         # the fit's path (train: relative to the folder)


@dataclasses.dataclass(frozen=True)
class Manifest:
  """Everything a reader of the shards needs to know (JSON: to_json)."""
  split: str                          # train | test
  labels: Tuple[str, ...]             # index = a record's label
  shards: Tuple[Shard, ...]
  feature_params: Mapping             # params.FeatureParams.to_dict()
  num_mels: int
  frames_per_second: float
  normalization: Tuple[float, float]  # (min_db, max_db) of [0, 1] inputs
  pca: Pca
  compression: str = "none"           # none | gzip
  multi_label: bool = False
  sources: Tuple[str, ...] = ("train",)   # index = a record's source
  frames: Mapping = dataclasses.field(default_factory=dict)  # statistics
  crop_range: Optional[Tuple[int, int]] = None  # frames: p25, p75
  num_records: int = 0
  num_empty: int = 0
  num_problems: int = 0
  num_skipped: int = 0
  audio_hours: float = 0.0
  run_time_s: float = 0.0
  extract_realtime_factor: float = 0.0
  input: Mapping = dataclasses.field(default_factory=dict)  # csv, audio_dir
  per_source_counts: Mapping = dataclasses.field(default_factory=dict)
  per_class_counts: Optional[Mapping] = None     # train
  per_fold_counts: Mapping = dataclasses.field(default_factory=dict)
  folds: Optional[Mapping] = None     # train: num_folds, seed, ...
  write_options: Mapping = dataclasses.field(default_factory=dict)
  engine: str = ""
  version: str = ""                   # the tagger that wrote it
  created_unix: int = 0

  @property
  def num_classes(self) -> int:
    return len(self.labels)

  @property
  def audio_dir(self) -> str:
    return str(self.input.get("audio_dir") or "")

  def with_shards(self, shards: Sequence[Shard]) -> "Manifest":
    return dataclasses.replace(self, shards=tuple(shards))

  # -- JSON ------------------------------------------------------------------

  def to_json(self) -> dict:
    return {
        "tool": "tagger.make_tfrecords",
        "version": self.version,
        "record_format": records.RECORD_FORMAT,
        "split": self.split,
        "created_unix": self.created_unix,
        "run_time_s": self.run_time_s,
        "source": dict(self.input),
        "sources": list(self.sources),
        "per_source_counts": dict(self.per_source_counts),
        "multi_label": self.multi_label,
        "num_records": self.num_records,
        "num_empty": self.num_empty,
        "num_problems": self.num_problems,
        "num_skipped": self.num_skipped,
        "audio_hours": self.audio_hours,
        "extract_realtime_factor": self.extract_realtime_factor,
        "labels": list(self.labels),
        "num_classes": self.num_classes,
        "feature_params": dict(self.feature_params),
        "log_mel": {"dtype": "float16", "layout": "[num_frames, num_mels]",
                    "units": "dB", "num_mels": self.num_mels,
                    "frames_per_second": self.frames_per_second},
        "normalization": {"min_db": self.normalization[0],
                          "max_db": self.normalization[1]},
        "frames": dict(self.frames),
        "crop_range": list(self.crop_range) if self.crop_range else None,
        "pca": dataclasses.asdict(self.pca),
        "folds": dict(self.folds) if self.folds is not None else None,
        "per_class_counts": (dict(self.per_class_counts)
                             if self.per_class_counts is not None else None),
        "per_fold_counts": dict(self.per_fold_counts),
        "compression": self.compression,
        "write_options": dict(self.write_options),
        "shards": [s.to_json() for s in self.shards],
        "engine": self.engine,
    }

  @classmethod
  def from_json(cls, doc: Mapping, path: str = MANIFEST) -> "Manifest":
    """Checks the record format and the fields every reader needs; the
    rest have defaults (older folders lack some)."""
    if doc.get("record_format") != records.RECORD_FORMAT:
      raise ManifestError(
          f"{path}: record format {doc.get('record_format', 1)}, this "
          f"tagger reads format {records.RECORD_FORMAT}; re-make the shards "
          "with tools/make_tfrecords --overwrite")
    try:
      sources = tuple(doc.get("sources") or ("train",))
      crop = doc.get("crop_range")
      return cls(
          split=str(doc["split"]), labels=tuple(doc["labels"]),
          shards=tuple(Shard.from_json(s, sources[0]) for s in doc["shards"]),
          feature_params=dict(doc["feature_params"]),
          num_mels=int(doc["log_mel"]["num_mels"]),
          frames_per_second=float(doc["log_mel"]["frames_per_second"]),
          normalization=(float(doc["normalization"]["min_db"]),
                         float(doc["normalization"]["max_db"])),
          pca=Pca(int(doc["pca"]["dim"]),
                  float(doc["pca"].get("explained_variance", 0.0)),
                  str(doc["pca"].get("fit_file", ""))),
          compression=str(doc.get("compression", "none")),
          multi_label=bool(doc.get("multi_label", False)), sources=sources,
          frames=dict(doc.get("frames") or {}),
          crop_range=(int(crop[0]), int(crop[1])) if crop else None,
          num_records=int(doc.get("num_records", 0)),
          num_empty=int(doc.get("num_empty", 0)),
          num_problems=int(doc.get("num_problems", 0)),
          num_skipped=int(doc.get("num_skipped", 0)),
          audio_hours=float(doc.get("audio_hours", 0.0)),
          run_time_s=float(doc.get("run_time_s", 0.0)),
          extract_realtime_factor=float(doc.get("extract_realtime_factor",
                                                0.0)),
          input=dict(doc.get("source") or {}),
          per_source_counts=dict(doc.get("per_source_counts") or {}),
          per_class_counts=doc.get("per_class_counts"),
          per_fold_counts=dict(doc.get("per_fold_counts") or {}),
          folds=doc.get("folds"),
          write_options=dict(doc.get("write_options") or {}),
          engine=str(doc.get("engine", "")),
          version=str(doc.get("version", "")),
          created_unix=int(doc.get("created_unix", 0)))
    except (KeyError, TypeError, ValueError, IndexError) as e:
      raise ManifestError(
          f"{path}: written by tagger {doc.get('version', '?')}, "
          f"unreadable here ({type(e).__name__}: {e}); re-make the shards "
          "with tools/make_tfrecords --overwrite") from None

  @classmethod
  def read(cls, data_dir: str) -> "Manifest":
    """A shard folder's manifest, of a record format this tagger reads."""
    path = fileio.join(data_dir, MANIFEST)
    if not fileio.exists(path):
      raise ManifestError(f"{path} not found: is {data_dir} a folder "
                          "written by tools/make_tfrecords?")
    doc = fileio.read_json(path)   # not JSON: one line (fileio)
    if not isinstance(doc, dict):
      raise ManifestError(f"{path}: not a manifest (a JSON object)")
    return cls.from_json(doc, path)

  def write(self, data_dir: str) -> None:
    """Written last and atomically: its presence marks a finished folder."""
    fileio.write_json(fileio.join(data_dir, MANIFEST), self.to_json())


def frame_statistics(num_frames: np.ndarray) -> Dict[str, float]:
  """Statistics of the written clips' lengths in frames (empty ones
  aside)."""
  frames = num_frames[num_frames > 0]
  if frames.size == 0:
    return {}
  p25, p50, p75 = np.percentile(frames, [25, 50, 75])
  return {"min": int(frames.min()), "p25": float(p25), "median": float(p50),
          "p75": float(p75), "max": int(frames.max()),
          "mean": float(frames.mean())}


def describe(manifest: Manifest, output_dir: str, errors_file: str) -> str:
  """A short human summary of a finished run."""
  lines = [
      f"{manifest.split}: {manifest.num_records} records in "
      f"{len(manifest.shards)} shards in {output_dir} "
      f"({sum(s.bytes for s in manifest.shards) / 2**20:.1f} MiB, "
      f"{manifest.audio_hours * 60:.1f} min of audio, "
      f"{manifest.run_time_s:.0f} s, features at "
      f"{manifest.extract_realtime_factor:g}x real time)",
      f"  classes: {manifest.num_classes}, PCA: {manifest.pca.dim} "
      f"dims ({100 * manifest.pca.explained_variance:.1f}% of variance)",
  ]
  if manifest.crop_range:
    lines.append(f"  frames: 25th-75th percentile "
                 f"{list(manifest.crop_range)} "
                 f"(median {manifest.frames['median']:.0f})")
  if manifest.num_empty:
    lines.append(f"  {manifest.num_empty} empty clip(s) written flagged "
                 "(the scorer still gives them a row)")
  if manifest.num_problems:
    lines.append(f"  {manifest.num_problems} problem(s), "
                 f"{manifest.num_skipped} clip(s) skipped: see "
                 f"{fileio.join(output_dir, errors_file)}")
  return "\n".join(lines)
