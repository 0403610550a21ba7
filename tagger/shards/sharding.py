"""A Kaggle-layout dataset (CSV + audio folder) -> TFRecord shards.

The run has three steps, each resumable:
  1. extract: clips are decoded and featurised in worker processes and
     staged in chunks of `chunk_size` CSV rows (output_dir/.staging/). A chunk
     file is written atomically once all its clips are done.
  2. fit: the scaler + PCA is fitted on the staged train summary features
     (or loaded from --pca_from for test), folds are assigned (folds.py).
  3. write: records are dealt to shards (train: a seeded random order; test:
     CSV order) and each shard is written to a temporary name and renamed.
     Shards are written a group at a time, so memory holds one group of
     shards, never the dataset.
A killed run leaves complete chunks and complete shards only; --resume
redoes neither.
"""

import collections
import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import time
from typing import Dict, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from tagger import errors
from tagger import fileio
from tagger import parallel
from tagger.audio import extract
from tagger.audio import pca as pca_lib
from tagger.audio.params import FeatureParams
from tagger.shards import clip_files
from tagger.shards import folds as folds_lib
from tagger.shards import records
import tagger

STAGING = ".staging"
LABELS = "labels.txt"
ERRORS = "errors.csv"
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


Row = clip_files.Row  # a CSV row (clip_files reads the CSV)


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


def _names(text: str):
  return [x.strip() for x in (text or "").split(",") if x.strip()]


def inputs(options: Options) -> List[Input]:
  """The run's CSVs with their folders and source names (Options.csv,
  .audio_dir, .sources: comma separated)."""
  csvs, dirs = _names(options.csv), _names(options.audio_dir)
  if not csvs:
    raise ShardingError("--csv is empty")
  if len(dirs) not in (1, len(csvs)):
    raise ShardingError(f"--audio_dir lists {len(dirs)} folders for "
                        f"{len(csvs)} CSVs: give one folder, or one per CSV")
  dirs = dirs * len(csvs) if len(dirs) == 1 else dirs
  names = _names(options.sources) or [
      os.path.splitext(os.path.basename(c))[0] for c in csvs]
  if len(names) != len(csvs):
    raise ShardingError(f"--sources lists {len(names)} names for "
                        f"{len(csvs)} CSVs")
  if len(set(names)) != len(names):
    raise ShardingError(f"--sources: names must differ, not {names} (name "
                        "them with --sources=curated,noisy)")
  return [Input(c, d, n) for c, d, n in zip(csvs, dirs, names)]


def read_inputs(runs: Sequence[Input], split: str):
  """(rows of every CSV in turn, with unique indices, their source and
  folder; True when the data is multi-label: a `labels` column or a clip
  with several labels)."""
  rows, multi = [], False
  for source, run in enumerate(runs):
    try:
      table = clip_files.read_csv(run.csv, split)
    except clip_files.CsvError as e:
      raise ShardingError(str(e)) from e
    multi = multi or table.multi_label
    for row in table.rows:
      rows.append(dataclasses.replace(row, index=len(rows), source=source,
                                      audio_dir=run.audio_dir))
  multi = multi or any(len(r.labels) > 1 for r in rows)
  return rows, multi


# ---------------------------------------------------------------------------
# Reading and checking the CSV.


def _bad_label(label: str) -> bool:
  """Control characters (a newline would break labels.txt, line i = label
  i) or blanks around it."""
  return any(ord(c) < 32 or ord(c) == 127 for c in label)


def label_vocabulary(rows: Sequence[Row], labels_file: Optional[str]):
  """Sorted labels of the CSV, or the labels file's lines in order."""
  if labels_file:
    labels = [l.strip() for l in fileio.read_text(labels_file).splitlines()
              if l.strip()]
    if len(set(labels)) != len(labels):
      raise ShardingError(f"{labels_file}: duplicate labels")
    return labels
  return sorted({l for r in rows for l in r.labels if not _bad_label(l)})


def check_rows(rows: Sequence[Row], split: str, vocabulary: Sequence[str],
               csv_path: str):
  """Splits rows into usable ones and Problems (duplicates, bad labels)."""
  usable, problems, first_row = [], [], {}
  known = set(vocabulary)
  for row in rows:
    where = row.where if row.csv_path else f"{csv_path} row {row.index + 2}"
    bad = [l for l in row.labels if _bad_label(l)]
    unknown = [l for l in row.labels if l not in known]
    key = (row.audio_dir, row.fname)  # one file once
    if not row.fname:
      problems.append(Problem(row.fname, row.index, f"{where}: empty fname",
                              "skipped"))
    elif key in first_row:
      problems.append(Problem(
          row.fname, row.index, f"{where}: duplicate fname {row.fname!r} "
          f"(first at {first_row[key]}); the first is used", "skipped"))
    elif split == "train" and not row.labels:
      problems.append(Problem(row.fname, row.index, f"{where}: empty label",
                              "skipped"))
    elif split == "train" and bad:
      problems.append(Problem(
          row.fname, row.index, f"{where}: label {bad[0]!r} holds control "
          "characters (a newline, tab, ...); labels must be one line",
          "skipped"))
    elif split == "train" and unknown:
      problems.append(Problem(
          row.fname, row.index, f"{where}: label {unknown[0]!r} is not in "
          "the label vocabulary", "skipped"))
    else:
      usable.append(row)
    first_row.setdefault(key, where)
  return usable, problems


# ---------------------------------------------------------------------------
# Step 1: extract features into staged chunks.


def _chunk_path(staging: str, chunk: int) -> str:
  return fileio.join(staging, f"chunk-{chunk:05d}.npz")


def _write_chunk(path: str, results: Sequence[extract.ClipFeatures]) -> None:
  fileio.write_npz(
      path,
      row=np.array([r.row for r in results], np.int64),
      status=np.array([r.status for r in results], np.int8),
      reason=np.array([r.reason for r in results], dtype=str),
      duration_s=np.array([r.duration_s for r in results], np.float64),
      num_frames=np.array([r.log_mel_db.shape[1] for r in results], np.int64),
      log_mel=np.concatenate([r.log_mel_db for r in results], axis=1),
      summary=np.stack([r.summary for r in results]))


def extract_to_staging(rows: Sequence[Row], options: Options,
                       staging: str) -> float:
  """Featurises every row into staged chunks; returns audio seconds done."""
  chunks = [rows[i:i + options.chunk_size]
            for i in range(0, len(rows), options.chunk_size)]
  todo = [k for k in range(len(chunks))
          if not fileio.exists(_chunk_path(staging, k))]
  done_clips = len(rows) - sum(len(chunks[k]) for k in todo)
  if done_clips:
    logging.info("resuming: %d of %d clips already staged", done_clips,
                 len(rows))
  num_workers = options.num_workers or os.cpu_count() or 1
  todo_rows = [row for k in todo for row in chunks[k]]
  if todo_rows:
    extract.warm_up(options.params)  # before workers: see warm_up
  results_iter = parallel.ordered_parallel_map(
      extract.extract_in_worker,
      clip_files.clip_tasks(todo_rows, options.audio_dir, options.max_file_mb),
      num_workers, extract.init_worker, (options.params.to_dict(),),
      size=extract.task_size)
  audio_seconds = 0.0
  start = time.time()
  with parallel.progress_bar(len(rows), done_clips, options.progress) as bar:
    for k in todo:
      results = []
      for _ in chunks[k]:
        result = next(results_iter)
        results.append(result)
        audio_seconds += result.duration_s
        bar.update(1)
        bar.set_postfix(realtime=f"{audio_seconds / max(1e-9, time.time() - start):.0f}x",
                        refresh=False)
      _write_chunk(_chunk_path(staging, k), results)
  return audio_seconds


# ---------------------------------------------------------------------------
# Step 2: collect what was staged; PCA; folds.


@dataclasses.dataclass
class Staged:
  """Per-clip metadata of the clips to write, in CSV order."""
  rows: List[Row]
  chunk: np.ndarray  # [N] chunk index
  offset: np.ndarray  # [N] position within the chunk
  num_frames: np.ndarray  # [N]
  summary: np.ndarray  # [N, 1133]
  empty: np.ndarray  # [N] bool
  duration_s: np.ndarray  # [N]


@dataclasses.dataclass
class ClipMeta:
  """What extraction found of one clip, without its log-mel."""
  row: int  # Row.index
  status: int
  reason: str
  num_frames: int
  summary: np.ndarray  # [1133]
  duration_s: float
  chunk: int = -1  # where its log-mel is staged (local runs)
  offset: int = -1


def clip_meta(result: extract.ClipFeatures) -> ClipMeta:
  return ClipMeta(result.row, result.status, result.reason,
                  int(result.log_mel_db.shape[1]), result.summary,
                  float(result.duration_s))


def collect_staged(rows: Sequence[Row], options: Options, staging: str):
  """Reads chunk metadata; decides per clip (decide_clips)."""
  metas = []
  for k in range(math.ceil(len(rows) / options.chunk_size)):
    chunk = fileio.read_npz(_chunk_path(staging, k))
    for j, (row_index, status, reason) in enumerate(
        zip(chunk["row"], chunk["status"], chunk["reason"])):
      metas.append(ClipMeta(
          int(row_index), int(status), str(reason),
          int(chunk["num_frames"][j]), chunk["summary"][j],
          float(chunk["duration_s"][j]), k, j))
  return decide_clips(metas, rows, options.split)


def decide_clips(metas: Sequence[ClipMeta], rows: Sequence[Row],
                 split: str):
  """Per clip: write, write flagged, or skip (with a Problem saying why).

  metas: one per row, in the rows' order. Returns (Staged, or None when no
  clip can be written; the Problems).
  """
  by_index = {row.index: row for row in rows}
  keep, problems = collections.defaultdict(list), []
  for meta in metas:
    row = by_index[meta.row]
    status, reason = meta.status, meta.reason
    if split == "train" and status not in extract.USABLE:
      problems.append(Problem(row.fname, row.index, reason, "skipped"))
      continue
    if status == extract.CUT:
      problems.append(Problem(row.fname, row.index, reason, "written_cut"))
    elif status == extract.TRUNCATED:
      problems.append(Problem(row.fname, row.index, reason,
                              "written_partial"))
    elif status in (extract.EMPTY, extract.FAILED):
      problems.append(Problem(row.fname, row.index, reason, "written_empty"))
    keep["rows"].append(row)
    keep["chunk"].append(meta.chunk)
    keep["offset"].append(meta.offset)
    keep["num_frames"].append(meta.num_frames)
    keep["summary"].append(meta.summary)
    keep["empty"].append(status in (extract.EMPTY, extract.FAILED))
    keep["duration_s"].append(meta.duration_s)
  if not keep["rows"]:
    return None, problems
  staged = Staged(
      rows=keep["rows"], chunk=np.array(keep["chunk"]),
      offset=np.array(keep["offset"]),
      num_frames=np.array(keep["num_frames"], np.int64),
      summary=np.stack(keep["summary"]).astype(np.float32),
      empty=np.array(keep["empty"], bool),
      duration_s=np.array(keep["duration_s"]))
  return staged, problems


def fit_and_fold(staged: Staged, options: Options, multi_label: bool,
                 fit, clips_skipped: bool):
  """Train: fits (and saves) the PCA and assigns folds; test: the given
  fit, fold -1. Returns (fit, folds [N], fold plan or None, PCA vectors
  [N, dim], 0 for empty clips)."""
  if options.split == "train":
    fit = pca_lib.fit_pca(staged.summary, options.pca_components)
    fit.save(fileio.join(options.output_dir, pca_lib.FIT_FILE))
    if multi_label:
      folds, fold_plan = folds_lib.assign_multilabel_folds(
          [r.labels for r in staged.rows], options.num_folds,
          options.fold_seed)
    else:
      folds, fold_plan = folds_lib.assign_folds(
          [r.label for r in staged.rows], options.num_folds,
          options.fold_seed)
    if clips_skipped:  # clips were skipped: the classes may allow fewer
      for note in fold_plan.warnings():
        logging.warning("%s", note)
  else:
    folds, fold_plan = np.full(len(staged.rows), -1, np.int64), None
  pca_vectors = fit.apply(staged.summary)
  pca_vectors[staged.empty] = 0.0
  return fit, folds, fold_plan, pca_vectors


# ---------------------------------------------------------------------------
# Step 3: deal records to shards and write them.


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
                     split: str, options: Options,
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


def shard_layout(staged: Staged, pca_dim: int, folds: np.ndarray,
                 options: Options):
  """(file names, record indices of each shard, (fold, source) of each)."""
  record_bytes = (staged.num_frames * options.params.mel_bands * 2 +
                  pca_dim * 4 + 256)
  sources = np.array([r.source for r in staged.rows], np.int64)
  plan = plan_fold_shards(record_bytes, folds, options.split, options,
                          sources)
  names = [shard_name(options.split, i, len(plan)) for i in range(len(plan))]
  return (names, [members for members, _, _ in plan],
          [(fold, source) for _, fold, source in plan])


def serialize_clip(row: Row, log_mel: np.ndarray, empty: bool, fold: int,
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


def write_shards(staged: Staged, pca_vectors: np.ndarray, folds: np.ndarray,
                 vocabulary: Sequence[str], options: Options, staging: str):
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
      chunk = fileio.read_npz(_chunk_path(staging, k))
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
      logging.info("wrote %s (%d records)", names[i], len(shards[i]))
  return names, shards, keys


# ---------------------------------------------------------------------------
# The run.


# Options used only after the features are staged: changing them on
# --resume re-does the folds, the PCA fit and the shards, not the features.
WRITE_OPTIONS = ("num_folds", "fold_seed", "pca_components", "shard_mb",
                 "min_shards", "compression", "sources")


def _fingerprint(options: Options, csv_bytes: bytes,
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


def _owned_outputs(output_dir: str, split: str) -> List[str]:
  return [n for n in fileio.listdir(output_dir)
          if n.startswith(f"{split}-") or n in (
              records.MANIFEST, LABELS, pca_lib.FIT_FILE, ERRORS, STAGING,
              STAGING + "/")]


def prepare_output_dir(options: Options, fingerprints: Dict[str, str]) -> str:
  """Checks what a previous run left; returns the staging directory."""
  out = options.output_dir
  staging = fileio.join(out, STAGING)
  if options.overwrite:
    for name in _owned_outputs(out, options.split):
      path = fileio.join(out, name.rstrip("/"))
      if tf.io.gfile.isdir(path):
        fileio.remove_tree(path)
      else:
        tf.io.gfile.remove(path)
  elif fileio.exists(fileio.join(out, records.MANIFEST)) and not options.resume:
    raise ShardingError(f"{out} already holds a finished "
                        f"{records.MANIFEST}; pass --overwrite to write it "
                        "again")
  elif fileio.exists(staging) and not options.resume:
    raise ShardingError(f"{out} holds an interrupted run; pass --resume to "
                        "finish it or --overwrite to start again")
  plan_path = fileio.join(staging, "plan.json")
  if fileio.exists(plan_path):
    before = fileio.read_json(plan_path)
    if before.get("extract") != fingerprints["extract"]:
      raise ShardingError(
          f"{out}: cannot resume, the CSV, the feature parameters or the "
          "options differ from the interrupted run's; pass --overwrite to "
          "start again")
    if before.get("write") != fingerprints["write"]:
      shards = [n for n in fileio.listdir(out)
                if n.startswith(f"{options.split}-")]
      for name in shards:  # written under other folds / PCA / sizes
        tf.io.gfile.remove(fileio.join(out, name))
      logging.info("resuming with other fold, PCA or shard options: the "
                   "staged features are reused, %d shard(s) are re-made",
                   len(shards))
  fileio.makedirs(staging)
  fileio.remove_temp_files(staging)
  fileio.remove_temp_files(out)
  fileio.write_json(plan_path, fingerprints)
  return staging


def check_output_dir(path: str) -> None:
  """The output folder can be made and written, before any work."""
  if fileio.exists(path) and not tf.io.gfile.isdir(path):
    raise ShardingError(f"--output_dir {path} is a file, not a folder")
  try:
    fileio.makedirs(path)
    probe = fileio.temp_name(fileio.join(path, ".write-check"))
    fileio.atomic_write_text(probe, "write check\n")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    raise ShardingError(f"--output_dir {path} cannot be written "
                        f"({getattr(e, 'message', None) or e})") from e


def lock_output_dir(path: str) -> None:
  """One live run per output folder (fileio.lock_dir)."""
  try:
    fileio.lock_dir(path, "make_tfrecords", "--output_dir")
  except fileio.InUseError as e:
    raise ShardingError(str(e)) from None


def release_output_dir(path: str) -> None:
  fileio.release_dir(path)


def _resolve_test_inputs(options: Options):
  """For a test split: the train manifest's params, labels and PCA fit."""
  if not options.pca_from:
    raise ShardingError("--split=test needs --pca_from=<train output_dir> "
                        "(its PCA fit and feature parameters are reused)")
  try:
    train = records.read_manifest(options.pca_from)
  except records.ManifestError as e:
    raise ShardingError(f"--pca_from: {e} (shard the train split first "
                        "and point --pca_from at its output_dir)") from e
  params = FeatureParams.from_dict(train["feature_params"])
  fit = pca_lib.PcaFit.load(fileio.join(options.pca_from, pca_lib.FIT_FILE))
  return params, train["labels"], fit, bool(train.get("multi_label"))


def _frame_stats(num_frames: np.ndarray) -> Dict[str, float]:
  frames = num_frames[num_frames > 0]
  if frames.size == 0:
    return {}
  p25, p50, p75 = np.percentile(frames, [25, 50, 75])
  return {"min": int(frames.min()), "p25": float(p25), "median": float(p50),
          "p75": float(p75), "max": int(frames.max()),
          "mean": float(frames.mean())}


def _errors_csv(problems: Sequence[Problem], rows: Sequence[Row]) -> str:
  """errors.csv: csv_row is the line in the clip's own CSV (header: 1)."""
  by_index = {r.index: r for r in rows}
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["fname", "csv_row", "action", "reason", "csv"])
  for p in sorted(problems, key=lambda p: p.row):
    row = by_index.get(p.row)
    writer.writerow([fileio.spreadsheet_safe(x) for x in (
        p.fname, str(row.line if row else p.row + 2), p.action, p.reason,
        row.csv_path if row else "")])
  return buffer.getvalue()


def make_tfrecords(options: Options, engine=None) -> dict:
  """Runs the three steps; returns the manifest written to output_dir.

  engine: what runs them once the CSV is checked and the output folder
  locked (default: the local process pool; beam_sharding.make_tfrecords
  passes its pipeline)."""
  started = time.time()
  if options.split not in SPLITS:
    raise ShardingError(f"--split must be one of {SPLITS}, not "
                        f"{options.split!r}")
  if options.compression not in ("none", "gzip"):
    raise ShardingError("--compression must be none or gzip")
  if options.runner and engine is None:
    raise ShardingError(f"--runner={options.runner} runs on Apache Beam: "
                        "call beam_sharding.make_tfrecords")
  runs = inputs(options)
  for run in runs:
    if not fileio.exists(run.audio_dir):
      raise ShardingError(f"{run.audio_dir}: audio directory not found")
  fit, multi_label = None, False
  if options.split == "test":
    params, vocabulary, fit, multi_label = _resolve_test_inputs(options)
    options = dataclasses.replace(options, params=params)
  rows, csv_multi = read_inputs(runs, options.split)
  if options.split == "train":
    vocabulary = label_vocabulary(rows, options.labels_file)
    multi_label = csv_multi
  usable, problems = check_rows(rows, options.split, vocabulary, options.csv)
  for p in problems:
    logging.warning("%s", p.reason)
  spaced = [l for l in vocabulary if " " in l]
  if spaced and not multi_label:
    logging.warning("%d label(s) hold spaces, which the Kaggle submission "
                    "format (labels separated by spaces) cannot tell apart: "
                    "%s; --probs_out of tools/score is unambiguous",
                    len(spaced), folds_lib.some(spaced))
  if options.split == "train":  # from the CSV, before any audio is read
    fold_plan = folds_lib.plan_folds([l for r in usable for l in r.labels],
                                     options.num_folds)
    for note in fold_plan.warnings():
      logging.warning("%s (from the CSV)", note)
  context = RunContext(runs, rows, multi_label)
  check_output_dir(options.output_dir)
  lock_output_dir(options.output_dir)
  try:
    return (engine or _make_tfrecords_locked)(
        options, started, vocabulary, usable, problems, fit, context)
  finally:
    release_output_dir(options.output_dir)


@dataclasses.dataclass
class RunContext:
  """What the run read of its inputs, for the steps after extraction."""
  inputs: List[Input]
  rows: List[Row]           # every CSV row (errors.csv names their lines)
  multi_label: bool


def _make_tfrecords_locked(options: Options, started: float, vocabulary,
                           usable: List[Row], problems: List[Problem],
                           fit, context: RunContext) -> dict:
  finished = finished_run(options)
  if finished is not None:
    return finished
  staging = prepare_run(options, context)
  audio_seconds = extract_to_staging(usable, options, staging)
  extract_time = time.time() - started
  staged, clip_problems = collect_staged(usable, options, staging)
  staged = report_problems(options, staged, clip_problems, problems, context)
  fit, folds, fold_plan, pca_vectors = fit_and_fold(
      staged, options, context.multi_label, fit, bool(clip_problems))
  names, shards, shard_keys = write_shards(staged, pca_vectors, folds,
                                           vocabulary, options, staging)
  manifest = finish_run(options, RunResult(
      staged=staged, folds=folds, fold_plan=fold_plan, vocabulary=vocabulary,
      fit=fit, names=names, shards=shards, shard_keys=shard_keys,
      problems=problems, started=started, audio_seconds=audio_seconds,
      extract_time=extract_time), context)
  if not options.keep_staging:
    fileio.remove_tree(staging)
  return manifest


def write_options(options: Options) -> dict:
  """The options a finished folder was written with that --resume cannot
  change without re-writing it (recorded in the manifest)."""
  return {k: getattr(options, k) for k in WRITE_OPTIONS}


def finished_run(options: Options) -> Optional[dict]:
  """The manifest of a finished folder that --resume finds (None: no such
  folder, or not --resume). Asked for other fold, PCA or shard options than
  it was written with, it refuses with one line rather than keep the old
  ones without a word (manifests before tagger 0.10 record none)."""
  path = fileio.join(options.output_dir, records.MANIFEST)
  if not options.resume or options.overwrite or not fileio.exists(path):
    return None
  manifest = fileio.read_json(path)
  written = manifest.get("write_options")
  if written:
    asked = json.loads(json.dumps(write_options(options)))
    differ = [f"--{k}={written[k]} (asked: {asked[k]})" for k in asked
              if k in written and written[k] != asked[k]]
    if differ:
      raise ShardingError(
          f"{options.output_dir} is finished and was written with "
          f"{', '.join(differ)}; pass --overwrite to write it again with "
          "the new options")
  logging.info("%s is already complete; nothing to resume", path)
  return manifest


def prepare_run(options: Options, context: RunContext) -> str:
  """Fingerprints the run and readies output_dir; returns the staging
  folder."""
  csv_bytes = b"".join(fileio.read_bytes(run.csv) for run in context.inputs)
  return prepare_output_dir(options, {
      "extract": _fingerprint(options, csv_bytes, "extract"),
      "write": _fingerprint(options, csv_bytes, "write")})


def report_problems(options: Options, staged, clip_problems, problems,
                    context: RunContext):
  """Logs the clips' problems, adds them to `problems` and writes
  errors.csv; refuses a run where no clip can be written."""
  for p in clip_problems:
    logging.warning("%s [%s]", p.reason, p.action)
  problems += clip_problems
  errors_path = fileio.join(options.output_dir, ERRORS)
  fileio.atomic_write_text(errors_path, _errors_csv(problems, context.rows))
  if staged is None:
    raise ShardingError(f"no clip of {options.csv} could be written; the "
                        f"reasons are above and in {errors_path}")
  return staged


@dataclasses.dataclass
class RunResult:
  """What a run's steps produced, whichever engine ran them: the input of
  its manifest."""
  staged: "Staged"
  folds: np.ndarray              # [N] fold of each staged clip (-1: none)
  fold_plan: object              # folds.FoldPlan (train) or None
  vocabulary: List[str]
  fit: object                    # pca.PcaFit
  names: List[str]               # shard file names
  shards: list                   # [shards] staged indices in each
  shard_keys: list               # [shards] (fold, source) of each
  problems: List[Problem]
  started: float                 # time.time() at the start
  audio_seconds: float           # audio the extraction decoded
  extract_time: float            # its wall seconds


def finish_run(options: Options, result: RunResult, context: "RunContext",
               engine: str = "local pool") -> dict:
  """labels.txt and the manifest, written last: a folder with a manifest
  is complete."""
  fileio.atomic_write_text(fileio.join(options.output_dir, LABELS),
                           "\n".join(result.vocabulary) + "\n")
  manifest = build_manifest(options, result, context)
  manifest["engine"] = engine
  records.write_manifest(options.output_dir, manifest)
  return manifest


def build_manifest(options: Options, result: RunResult,
                   context: RunContext) -> dict:
  """Everything a reader of the shards needs to know, as JSON."""
  staged, folds, vocabulary, fit = (result.staged, result.folds,
                                    result.vocabulary, result.fit)
  problems, fold_plan, started = (result.problems, result.fold_plan,
                                  result.started)
  labels_written = [l for r, e in zip(staged.rows, staged.empty) if not e
                    for l in r.labels]
  source_names = [run.source for run in context.inputs]
  per_source = collections.Counter(source_names[r.source]
                                   for r in staged.rows)
  per_class = collections.Counter(labels_written) if options.split == "train" \
      else {}
  per_fold = collections.Counter(int(f) for f in folds if f >= 0)
  frames = _frame_stats(staged.num_frames)
  shard_entries = []
  for name, members, (fold, source) in zip(result.names, result.shards,
                                           result.shard_keys):
    path = fileio.join(options.output_dir, name)
    shard_entries.append({"file": name, "fold": int(fold),
                          "source": source_names[source],
                          "records": int(len(members)),
                          "bytes": int(tf.io.gfile.stat(path).length),
                          "sha256": fileio.sha256(path)})
  params = options.params
  return {
      "tool": "tagger.make_tfrecords",
      "version": tagger.__version__,
      "record_format": records.RECORD_FORMAT,
      "split": options.split,
      "created_unix": int(time.time()),
      "run_time_s": round(time.time() - started, 2),
      "source": {"csv": options.csv, "audio_dir": options.audio_dir,
                 "pca_from": options.pca_from},
      "sources": source_names,
      "per_source_counts": {n: per_source.get(n, 0) for n in source_names},
      "multi_label": bool(context.multi_label),
      "num_records": int(len(staged.rows)),
      "num_empty": int(staged.empty.sum()),
      "num_problems": len(problems),
      "num_skipped": sum(p.action == "skipped" for p in problems),
      "audio_hours": round(float(staged.duration_s.sum()) / 3600, 4),
      "extract_realtime_factor": round(result.audio_seconds / max(
          result.extract_time, 1e-9), 1),
      "labels": list(vocabulary),
      "num_classes": len(vocabulary),
      "feature_params": params.to_dict(),
      "log_mel": {"dtype": "float16", "layout": "[num_frames, num_mels]",
                  "units": "dB", "num_mels": params.mel_bands,
                  "frames_per_second": params.mel_frames_per_second},
      "normalization": {"min_db": params.norm_min_db,
                        "max_db": params.norm_max_db},
      "frames": frames,
      "crop_range": ([int(round(frames["p25"])), int(round(frames["p75"]))]
                     if frames else None),
      "pca": {"dim": fit.dim,
              "explained_variance": round(float(
                  fit.explained_variance_ratio.sum()), 4),
              "fit_file": (pca_lib.FIT_FILE if options.split == "train" else
                           fileio.join(options.pca_from, pca_lib.FIT_FILE))},
      "folds": ({"num_folds": fold_plan.num_folds,
                 "requested": fold_plan.requested, "seed": options.fold_seed,
                 "train_only_clips": int(np.sum(folds < 0)),
                 "train_only_labels": fold_plan.train_only}
                if options.split == "train" else None),
      "per_class_counts": {l: per_class.get(l, 0) for l in vocabulary}
                          if options.split == "train" else None,
      "per_fold_counts": {str(k): per_fold[k] for k in sorted(per_fold)},
      "compression": options.compression,
      "write_options": write_options(options),
      "shards": shard_entries,
  }


def describe(manifest: dict, output_dir: str) -> str:
  """A short human summary of a finished run."""
  lines = [
      f"{manifest['split']}: {manifest['num_records']} records in "
      f"{len(manifest['shards'])} shards in {output_dir} "
      f"({sum(s['bytes'] for s in manifest['shards']) / 2**20:.1f} MiB, "
      f"{manifest['audio_hours'] * 60:.1f} min of audio, "
      f"{manifest['run_time_s']:.0f} s, features at "
      f"{manifest['extract_realtime_factor']:g}x real time)",
      f"  classes: {manifest['num_classes']}, PCA: {manifest['pca']['dim']} "
      f"dims ({100 * manifest['pca']['explained_variance']:.1f}% of "
      "variance)",
  ]
  if manifest["crop_range"]:
    lines.append(f"  frames: 25th-75th percentile {manifest['crop_range']} "
                 f"(median {manifest['frames']['median']:.0f})")
  if manifest["num_empty"]:
    lines.append(f"  {manifest['num_empty']} empty clip(s) written flagged "
                 "(the scorer still gives them a row)")
  if manifest["num_problems"]:
    lines.append(f"  {manifest['num_problems']} problem(s), "
                 f"{manifest['num_skipped']} clip(s) skipped: see "
                 f"{fileio.join(output_dir, ERRORS)}")
  return "\n".join(lines)
