"""What a make_tfrecords run is asked to do: its options, its CSVs with
their audio folders and source names, and the fingerprints that decide
what a resumed run may reuse.
"""

import dataclasses
import hashlib
import json
import os
from typing import List, Optional

from tagger import errors
from tagger import settings
from tagger.audio.params import FeatureParams
from tagger.shards import clip_files
import tagger


SPLITS = ("train", "test")


class ShardingError(errors.UserError):
  """The run cannot go on: bad CSV, bad options, nothing to write."""


@dataclasses.dataclass(frozen=True)
class Options:
  """What make_tfrecords needs; the tool's flags map onto these one to one.

  csv and audio_dir may list several CSVs, comma separated, with one audio
  folder each (or one for all): e.g. FSDKaggle2019's curated and noisy
  sets, whose clips keep their source (`sources`: names, default the CSV
  file names without .csv) and go into one shard set.
  """
  csv: str
  audio_dir: str
  output_dir: str
  split: str = "train"
  sources: str = ""  # comma separated, one per CSV
  pca_from: Optional[str] = None
  labels_file: Optional[str] = None
  num_workers: int = 0  # 0: all cores
  shard_mb: float = 32.0
  min_shards: int = 8
  compression: str = "none"  # none | gzip
  num_folds: int = 10
  fold_seed: int = 20180629
  pca_components: int = 350
  resume: bool = False
  overwrite: bool = False
  chunk_size: int = 64
  keep_staging: bool = False
  progress: bool = True
  max_file_mb: float = clip_files.MAX_FILE_MB
  params: FeatureParams = FeatureParams()
  runner: str = ""  # "": the local process pool; else a Beam runner
  beam_options: str = ""  # the runner's pipeline options (command line)


@dataclasses.dataclass
class Problem:
  fname: str
  row: int  # Row.index
  reason: str
  action: str  # skipped | written_empty | written_partial


@dataclasses.dataclass(frozen=True)
class Input:
  """One CSV of the run, its audio folder and its source name."""
  csv: str
  audio_dir: str
  source: str


def inputs(options: Options) -> List[Input]:
  """The run's CSVs with their folders and source names (Options.csv,
  .audio_dir, .sources: comma separated)."""
  csvs, dirs = settings.names(options.csv), settings.names(options.audio_dir)
  if not csvs:
    raise ShardingError("--csv is empty")
  if len(dirs) not in (1, len(csvs)):
    raise ShardingError(f"--audio_dir lists {len(dirs)} folders for "
                        f"{len(csvs)} CSVs: give one folder, or one per CSV")
  dirs = dirs * len(csvs) if len(dirs) == 1 else dirs
  names = settings.names(options.sources) or [
      os.path.splitext(os.path.basename(c))[0] for c in csvs]
  if len(names) != len(csvs):
    raise ShardingError(f"--sources lists {len(names)} names for "
                        f"{len(csvs)} CSVs")
  if len(set(names)) != len(names):
    raise ShardingError(f"--sources: names must differ, not {names} (name "
                        "them with --sources=curated,noisy)")
  return [Input(c, d, n) for c, d, n in zip(csvs, dirs, names)]


# Options used only after the features are staged: changing them on
# --resume re-does the folds, the PCA fit and the shards, not the features.
WRITE_OPTIONS = ("num_folds", "fold_seed", "pca_components", "shard_mb",
                 "min_shards", "compression", "sources")


def fingerprint(options: Options, csv_bytes: bytes,
                 stage: str = "write") -> str:
  """What a resumed run must share with the run it resumes (stage
  'extract': to reuse staged features; 'write': to keep written shards)."""
  keyed = dataclasses.asdict(options)
  for transient in ("num_workers", "resume", "overwrite", "keep_staging",
                    "progress", "runner", "beam_options"):
    keyed.pop(transient)
  if stage == "extract":  # what the staged features depend on
    for later in WRITE_OPTIONS:
      keyed.pop(later)
  keyed["csv_sha256"] = hashlib.sha256(csv_bytes).hexdigest()
  keyed["version"] = tagger.__version__
  return hashlib.sha256(json.dumps(keyed, sort_keys=True,
                                   default=str).encode()).hexdigest()


def write_options(options: Options) -> dict:
  """The options a finished folder was written with that --resume cannot
  change without re-writing it (recorded in the manifest)."""
  return {k: getattr(options, k) for k in WRITE_OPTIONS}
