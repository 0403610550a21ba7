"""A Kaggle-layout dataset (CSV + audio folder) -> TFRecord shards.

The run has three steps, each resumable:
  1. extract: clips are decoded and featurised in worker processes and
     staged in chunks of `chunk_size` CSV rows (output_dir/.staging/). A chunk
     file is written atomically once all its clips are done.
  2. fit: the scaler + PCA is fitted on the staged train summary features
     (or loaded from --pca_from for test), folds are assigned.
  3. write: records are dealt to shards (train: a seeded random order; test:
     CSV order) and each shard is written to a temporary name and renamed.
     Shards are written a group at a time, so memory holds one group of
     shards, never the dataset.
A killed run leaves complete chunks and complete shards only; --resume
redoes neither.
"""

import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import math
import multiprocessing
import os
import sys
import time
import types
from typing import Dict, Iterator, List, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

import tagger
from tagger import errors
from tagger import extract
from tagger import fileio
from tagger import pca as pca_lib
from tagger import records
from tagger.params import FeatureParams

STAGING = ".staging"
MANIFEST = "manifest.json"
LABELS = "labels.txt"
PCA_FILE = "pca.npz"
ERRORS = "errors.csv"
SPLITS = ("train", "test")


class ShardingError(errors.UserError):
  """The run cannot go on: bad CSV, bad options, nothing to write."""


@dataclasses.dataclass(frozen=True)
class Options:
  """What make_tfrecords needs; the tool's flags map onto these one to one."""
  csv: str
  audio_dir: str
  output_dir: str
  split: str = "train"
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
  params: FeatureParams = FeatureParams()


@dataclasses.dataclass
class Row:
  index: int  # 0-based data row in the CSV
  fname: str
  label: str
  manually_verified: int


@dataclasses.dataclass
class Problem:
  fname: str
  row: int
  reason: str
  action: str  # skipped | written_empty | written_partial


# ---------------------------------------------------------------------------
# Reading and checking the CSV.


def read_csv_rows(path: str, split: str) -> List[Row]:
  """Parses a Kaggle CSV: fname[,label][,manually_verified]."""
  if not fileio.exists(path):
    raise ShardingError(f"{path}: CSV file not found")
  try:
    text = fileio.read_bytes(path).decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise ShardingError(f"{path}: not a UTF-8 text CSV ({e})") from e
  reader = csv.DictReader(io.StringIO(text))
  columns = [c.strip() for c in (reader.fieldnames or [])]
  needed = ["fname"] + (["label"] if split == "train" else [])
  missing = [c for c in needed if c not in columns]
  if missing:
    raise ShardingError(
        f"{path}: missing column(s) {missing}; found {columns or 'no header'}"
        f". A {split} CSV needs {needed} (Kaggle layout).")
  reader.fieldnames = columns
  rows = []
  for i, record in enumerate(reader):
    verified = (record.get("manually_verified") or "1").strip()
    rows.append(Row(index=i, fname=(record["fname"] or "").strip(),
                    label=(record.get("label") or "").strip(),
                    manually_verified=1 if verified in ("1", "True", "true")
                    else 0))
  if not rows:
    raise ShardingError(f"{path}: the CSV has a header but no rows")
  return rows


def label_vocabulary(rows: Sequence[Row], labels_file: Optional[str]):
  """Sorted labels of the CSV, or the labels file's lines in order."""
  if labels_file:
    labels = [l.strip() for l in fileio.read_text(labels_file).splitlines()
              if l.strip()]
    if len(set(labels)) != len(labels):
      raise ShardingError(f"{labels_file}: duplicate labels")
    return labels
  return sorted({r.label for r in rows if r.label})


def check_rows(rows: Sequence[Row], split: str, vocabulary: Sequence[str],
               csv_path: str):
  """Splits rows into usable ones and Problems (duplicates, bad labels)."""
  usable, problems, first_row = [], [], {}
  known = set(vocabulary)
  for row in rows:
    where = f"{csv_path} row {row.index + 2}"  # 1-based, after the header
    if not row.fname:
      problems.append(Problem(row.fname, row.index, f"{where}: empty fname",
                              "skipped"))
    elif row.fname in first_row:
      problems.append(Problem(
          row.fname, row.index, f"{where}: duplicate fname {row.fname!r} "
          f"(first at row {first_row[row.fname] + 2}); the first is used",
          "skipped"))
    elif split == "train" and not row.label:
      problems.append(Problem(row.fname, row.index, f"{where}: empty label",
                              "skipped"))
    elif split == "train" and row.label not in known:
      problems.append(Problem(
          row.fname, row.index, f"{where}: label {row.label!r} is not in the "
          "label vocabulary", "skipped"))
    else:
      usable.append(row)
    first_row.setdefault(row.fname, row.index)
  return usable, problems


# ---------------------------------------------------------------------------
# Step 1: extract features into staged chunks.


def _clip_tasks(rows: Sequence[Row], audio_dir: str) -> Iterator:
  for row in rows:
    path = fileio.join(audio_dir, row.fname)
    try:
      data = fileio.read_bytes(path)
      yield extract.ClipTask(row=row.index, name=path, data=data)
    except tf.errors.NotFoundError:
      yield extract.ClipTask(row=row.index, name=path, data=None,
                             read_error=f"{path}: audio file not found")
    except (tf.errors.OpError, OSError) as e:
      yield extract.ClipTask(row=row.index, name=path, data=None,
                             read_error=f"{path}: cannot read ({e})")


def ordered_parallel_map(fn, items: Iterator, num_workers: int,
                         initializer, initargs) -> Iterator:
  """fn over items in worker processes, results in input order.

  At most 4 tasks per worker are in flight, so the clips read ahead (and
  their bytes in memory) stay bounded whatever the dataset size.
  """
  initializer(*initargs)  # also in this process, for the inline path
  if num_workers <= 1:
    yield from map(fn, items)
    return
  context = multiprocessing.get_context("spawn")  # TF is not fork-safe
  with _workers_skip_main_module(), concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=context, initializer=initializer,
      initargs=initargs) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= 4 * num_workers:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


@contextlib.contextmanager
def _workers_skip_main_module():
  """Spawned workers re-import the parent's __main__ (a tool, which imports
  TensorFlow: ~600 MB and seconds per worker). They need only fn's module,
  so while the pool starts processes __main__ is a bare module."""
  real_main = sys.modules["__main__"]
  sys.modules["__main__"] = types.ModuleType("__main__")
  try:
    yield
  finally:
    sys.modules["__main__"] = real_main


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


def progress_bar(total: int, initial: int = 0, enabled: bool = True,
                 unit: str = "clip", desc: str = "features"):
  """A tqdm bar with rate and ETA (also used by the scorer)."""
  from tqdm import auto as tqdm  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  # In a log file (CI, nohup) one line every 10 s, not one per update.
  interval = 0.1 if sys.stderr.isatty() else 10.0
  return tqdm.tqdm(total=total, initial=initial, unit=unit,
                   disable=not enabled, smoothing=0.05, dynamic_ncols=True,
                   mininterval=interval, desc=desc)


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
  results_iter = ordered_parallel_map(
      extract.extract_in_worker, _clip_tasks(todo_rows, options.audio_dir),
      num_workers, extract.init_worker, (options.params.to_dict(),))
  audio_seconds = 0.0
  start = time.time()
  with progress_bar(len(rows), done_clips, options.progress) as bar:
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


def collect_staged(rows: Sequence[Row], options: Options, staging: str):
  """Reads chunk metadata; decides per clip: write, write flagged, or skip.

  Returns (Staged, or None when no clip can be written; the Problems).
  """
  by_index = {row.index: row for row in rows}
  keep, problems = collections.defaultdict(list), []
  num_chunks = math.ceil(len(rows) / options.chunk_size)
  for k in range(num_chunks):
    chunk = fileio.read_npz(_chunk_path(staging, k))
    for j, (row_index, status, reason) in enumerate(
        zip(chunk["row"], chunk["status"], chunk["reason"])):
      row = by_index[int(row_index)]
      status = int(status)
      if options.split == "train" and status != extract.OK:
        problems.append(Problem(row.fname, row.index, str(reason), "skipped"))
        continue
      if status == extract.TRUNCATED:
        problems.append(Problem(row.fname, row.index, str(reason),
                                "written_partial"))
      elif status in (extract.EMPTY, extract.FAILED):
        problems.append(Problem(row.fname, row.index, str(reason),
                                "written_empty"))
      keep["rows"].append(row)
      keep["chunk"].append(k)
      keep["offset"].append(j)
      keep["num_frames"].append(int(chunk["num_frames"][j]))
      keep["summary"].append(chunk["summary"][j])
      keep["empty"].append(status in (extract.EMPTY, extract.FAILED))
      keep["duration_s"].append(float(chunk["duration_s"][j]))
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


def assign_folds(labels: Sequence[str], num_folds: int, seed: int):
  """Stratified folds over clips in CSV order, as the reference [N] int."""
  from sklearn.model_selection import StratifiedKFold  # pylint: disable=g-import-not-at-top
  labels = np.asarray(labels)
  if len(labels) < num_folds:
    raise ShardingError(f"only {len(labels)} train clips for {num_folds} "
                        "folds; lower --num_folds")
  folds = np.full(len(labels), -1, np.int64)
  splitter = StratifiedKFold(n_splits=num_folds, shuffle=True,
                             random_state=seed)
  for fold, (_, val) in enumerate(splitter.split(np.zeros(len(labels)),
                                                 labels)):
    folds[val] = fold
  return folds


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
  return [s for s in np.split(np.arange(len(record_bytes)), cuts)]


def plan_fold_shards(record_bytes: np.ndarray, folds: np.ndarray,
                     split: str, options: Options):
  """(record indices, fold) of every shard; train shards hold one fold each.

  One fold per train shard lets a reader pick a fold's records by file, so
  the input pipeline never parses a record only to drop it.
  """
  fold_values = sorted(set(folds.tolist())) if split == "train" else [-1]
  per_fold_min = math.ceil(options.min_shards / len(fold_values))
  plan = []
  for fold in fold_values:
    members = np.flatnonzero(folds == fold) if split == "train" else \
        np.arange(len(folds))
    order = record_order(members, split, options.fold_seed + fold + 1)
    for part in plan_shards(record_bytes[order], options.shard_mb,
                            per_fold_min):
      plan.append((order[part], fold))
  return plan


def shard_name(split: str, index: int, count: int) -> str:
  return f"{split}-{index:05d}-of-{count:05d}.tfrecord"


def write_shards(staged: Staged, pca_vectors: np.ndarray, folds: np.ndarray,
                 vocabulary: Sequence[str], options: Options, staging: str):
  """Writes every shard that is not there yet; returns shard file names."""
  record_bytes = (staged.num_frames * options.params.mel_bands * 2 +
                  pca_vectors.shape[1] * 4 + 256)
  plan = plan_fold_shards(record_bytes, folds, options.split, options)
  shards = [members for members, _ in plan]
  names = [shard_name(options.split, i, len(shards))
           for i in range(len(shards))]
  todo = [i for i, name in enumerate(names)
          if not fileio.exists(fileio.join(options.output_dir, name))]
  # Hold at most ~512 MB of shards at once; each group reads every chunk once.
  per_group = max(1, int(512 // max(options.shard_mb, 1)))
  label_index = {label: i for i, label in enumerate(vocabulary)}
  writer_options = tf.io.TFRecordOptions(
      compression_type="GZIP" if options.compression == "gzip" else "")
  for start in range(0, len(todo), per_group):
    group = todo[start:start + per_group]
    records_of_chunk = collections.defaultdict(list)
    for i in group:
      for n in shards[i]:
        records_of_chunk[int(staged.chunk[n])].append(n)
    is_train = options.split == "train"
    serialized = {}
    for k in sorted(records_of_chunk):
      chunk = fileio.read_npz(_chunk_path(staging, k))
      starts = np.concatenate([[0], np.cumsum(chunk["num_frames"])])
      for n in records_of_chunk[k]:
        j = staged.offset[n]
        row = staged.rows[n]
        log_mel = chunk["log_mel"][:, starts[j]:starts[j + 1]]
        if staged.empty[n]:
          log_mel = log_mel[:, :0]
        serialized[n] = records.serialize_example(
            fname=row.fname,
            label=label_index[row.label] if is_train else -1,
            label_name=row.label if is_train else "",
            fold=int(folds[n]), manually_verified=row.manually_verified,
            log_mel_db=log_mel, pca=pca_vectors[n])
    for i in group:
      path = fileio.join(options.output_dir, names[i])
      tmp = fileio.temp_name(path)
      with tf.io.TFRecordWriter(tmp, writer_options) as writer:
        for n in shards[i]:
          writer.write(serialized[n])
      tf.io.gfile.rename(tmp, path, overwrite=True)
      logging.info("wrote %s (%d records)", names[i], len(shards[i]))
  return names, shards, [fold for _, fold in plan]


def sha256_of(path: str) -> str:
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    while True:
      block = f.read(1 << 22)
      if not block:
        break
      digest.update(block)
  return digest.hexdigest()


# ---------------------------------------------------------------------------
# The run.


def _fingerprint(options: Options, csv_bytes: bytes) -> str:
  """What a resumed run must share with the run it resumes."""
  keyed = dataclasses.asdict(options)
  for transient in ("num_workers", "resume", "overwrite", "keep_staging",
                    "progress"):
    keyed.pop(transient)
  keyed["csv_sha256"] = hashlib.sha256(csv_bytes).hexdigest()
  keyed["version"] = tagger.__version__
  return hashlib.sha256(json.dumps(keyed, sort_keys=True,
                                   default=str).encode()).hexdigest()


def _owned_outputs(output_dir: str, split: str) -> List[str]:
  return [n for n in fileio.listdir(output_dir)
          if n.startswith(f"{split}-") or n in (
              MANIFEST, LABELS, PCA_FILE, ERRORS, STAGING, STAGING + "/")]


def prepare_output_dir(options: Options, fingerprint: str) -> str:
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
  elif fileio.exists(fileio.join(out, MANIFEST)) and not options.resume:
    raise ShardingError(f"{out} already holds a finished {MANIFEST}; pass "
                        "--overwrite to write it again")
  elif fileio.exists(staging) and not options.resume:
    raise ShardingError(f"{out} holds an interrupted run; pass --resume to "
                        "finish it or --overwrite to start again")
  plan_path = fileio.join(staging, "plan.json")
  if fileio.exists(plan_path):
    if fileio.read_json(plan_path)["fingerprint"] != fingerprint:
      raise ShardingError(
          f"{out}: cannot resume, the inputs or options differ from the "
          "interrupted run's; pass --overwrite to start again")
  fileio.makedirs(staging)
  fileio.remove_temp_files(staging)
  fileio.remove_temp_files(out)
  fileio.write_json(plan_path, {"fingerprint": fingerprint})
  return staging


def _resolve_test_inputs(options: Options):
  """For a test split: the train manifest's params, labels and PCA fit."""
  if not options.pca_from:
    raise ShardingError("--split=test needs --pca_from=<train output_dir> "
                        "(its PCA fit and feature parameters are reused)")
  manifest_path = fileio.join(options.pca_from, MANIFEST)
  if not fileio.exists(manifest_path):
    raise ShardingError(f"{manifest_path} not found: shard the train split "
                        "first and point --pca_from at its output_dir")
  train = fileio.read_json(manifest_path)
  params = FeatureParams.from_dict(train["feature_params"])
  fit = pca_lib.PcaFit.load(fileio.join(options.pca_from, PCA_FILE))
  return params, train["labels"], fit


def _frame_stats(num_frames: np.ndarray) -> Dict[str, float]:
  frames = num_frames[num_frames > 0]
  if frames.size == 0:
    return {}
  p25, p50, p75 = np.percentile(frames, [25, 50, 75])
  return {"min": int(frames.min()), "p25": float(p25), "median": float(p50),
          "p75": float(p75), "max": int(frames.max()),
          "mean": float(frames.mean())}


def _errors_csv(problems: Sequence[Problem]) -> str:
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["fname", "csv_row", "action", "reason"])
  for p in sorted(problems, key=lambda p: p.row):
    writer.writerow([p.fname, p.row + 2, p.action, p.reason])
  return buffer.getvalue()


def make_tfrecords(options: Options) -> dict:
  """Runs the three steps; returns the manifest written to output_dir."""
  started = time.time()
  if options.split not in SPLITS:
    raise ShardingError(f"--split must be one of {SPLITS}, not "
                        f"{options.split!r}")
  if options.compression not in ("none", "gzip"):
    raise ShardingError("--compression must be none or gzip")
  if not fileio.exists(options.audio_dir):
    raise ShardingError(f"{options.audio_dir}: audio directory not found")
  fit = None
  if options.split == "test":
    params, vocabulary, fit = _resolve_test_inputs(options)
    options = dataclasses.replace(options, params=params)
  rows = read_csv_rows(options.csv, options.split)
  if options.split == "train":
    vocabulary = label_vocabulary(rows, options.labels_file)
  usable, problems = check_rows(rows, options.split, vocabulary, options.csv)
  for p in problems:
    logging.warning("%s", p.reason)
  fileio.makedirs(options.output_dir)
  manifest_path = fileio.join(options.output_dir, MANIFEST)
  if options.resume and not options.overwrite and fileio.exists(
      manifest_path):
    logging.info("%s is already complete; nothing to resume", manifest_path)
    return fileio.read_json(manifest_path)
  staging = prepare_output_dir(
      options, _fingerprint(options, fileio.read_bytes(options.csv)))

  audio_seconds = extract_to_staging(usable, options, staging)
  extract_time = time.time() - started
  staged, clip_problems = collect_staged(usable, options, staging)
  for p in clip_problems:
    logging.warning("%s [%s]", p.reason, p.action)
  problems += clip_problems
  errors_path = fileio.join(options.output_dir, ERRORS)
  fileio.atomic_write_text(errors_path, _errors_csv(problems))
  if staged is None:
    raise ShardingError(f"no clip of {options.csv} could be written; the "
                        f"reasons are above and in {errors_path}")

  if options.split == "train":
    fit = pca_lib.fit_pca(staged.summary, options.pca_components)
    fit.save(fileio.join(options.output_dir, PCA_FILE))
    folds = assign_folds([r.label for r in staged.rows], options.num_folds,
                         options.fold_seed)
  else:
    folds = np.full(len(staged.rows), -1, np.int64)
  pca_vectors = fit.apply(staged.summary)
  pca_vectors[staged.empty] = 0.0

  names, shards, shard_folds = write_shards(staged, pca_vectors, folds,
                                            vocabulary, options, staging)
  fileio.atomic_write_text(fileio.join(options.output_dir, LABELS),
                           "\n".join(vocabulary) + "\n")
  manifest = build_manifest(options, staged, folds, vocabulary, fit, names,
                            shards, shard_folds, problems, started, audio_seconds,
                            extract_time)
  fileio.write_json(fileio.join(options.output_dir, MANIFEST), manifest)
  if not options.keep_staging:
    fileio.remove_tree(staging)
  return manifest


def build_manifest(options, staged, folds, vocabulary, fit, names, shards,
                   shard_folds, problems, started, audio_seconds, extract_time) -> dict:
  """Everything a reader of the shards needs to know, as JSON."""
  labels_written = [r.label for r, e in zip(staged.rows, staged.empty)
                    if not e]
  per_class = collections.Counter(labels_written) if options.split == "train" \
      else {}
  per_fold = collections.Counter(int(f) for f in folds if f >= 0)
  frames = _frame_stats(staged.num_frames)
  shard_entries = []
  for name, members, fold in zip(names, shards, shard_folds):
    path = fileio.join(options.output_dir, name)
    shard_entries.append({"file": name, "fold": int(fold),
                          "records": int(len(members)),
                          "bytes": int(tf.io.gfile.stat(path).length),
                          "sha256": sha256_of(path)})
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
      "num_records": int(len(staged.rows)),
      "num_empty": int(staged.empty.sum()),
      "num_problems": len(problems),
      "num_skipped": sum(p.action == "skipped" for p in problems),
      "audio_hours": round(float(staged.duration_s.sum()) / 3600, 4),
      "extract_realtime_factor": round(audio_seconds / max(extract_time,
                                                           1e-9), 1),
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
              "fit_file": (PCA_FILE if options.split == "train" else
                           fileio.join(options.pca_from, PCA_FILE))},
      "folds": ({"num_folds": options.num_folds, "seed": options.fold_seed}
                if options.split == "train" else None),
      "per_class_counts": {l: per_class.get(l, 0) for l in vocabulary}
                          if options.split == "train" else None,
      "per_fold_counts": {str(k): per_fold[k] for k in sorted(per_fold)},
      "compression": options.compression,
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
