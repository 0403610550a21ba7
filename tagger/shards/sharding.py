"""A Kaggle-layout dataset (CSV + audio folder) -> TFRecord shards: the run.

`make_tfrecords` checks the CSVs and the options (run_options, csv_rows),
locks the output folder (output_folder) and hands the checked `Run` to an
engine, which runs the three steps and returns a `RunResult`:
  1. extract: clips decoded and featurised, staged in chunks
     (extraction.py);
  2. fit: the scaler + PCA fitted on the staged train summary features (or
     loaded from --pca_from for test), folds assigned (folds.py);
  3. write: records dealt to shards and written (writing.py).
The labels and the manifest (manifest.py) are written last, here, whatever
the engine: a folder with a manifest is complete. A killed run leaves
complete chunks and complete shards only; --resume redoes neither.

Two engines implement `Engine`: `LocalEngine` (a process pool, this
module) and beam_sharding.BeamEngine (any Apache Beam runner).
"""

import collections
import dataclasses
import json
import time
from typing import List, Optional

from absl import logging
import numpy as np
import tensorflow as tf

import tagger
from tagger import fileio
from tagger.audio import pca as pca_lib
from tagger.audio.params import FeatureParams
from tagger.shards import clip_files
from tagger.shards import csv_rows
from tagger.shards import extraction
from tagger.shards import folds as folds_lib
from tagger.shards import manifest as manifest_lib
from tagger.shards import output_folder
from tagger.shards import run_options
from tagger.shards import writing

# The run's options and its error, as callers of make_tfrecords name them.
Options = run_options.Options
ShardingError = run_options.ShardingError


@dataclasses.dataclass
class Run:
  """A checked run: what an engine needs to do its steps."""
  options: Options            # a test split's: the train split's features
  inputs: List[run_options.Input]
  rows: List[clip_files.Row]  # every CSV row (errors.csv names their lines)
  usable: List[clip_files.Row]  # the rows to extract
  vocabulary: List[str]
  problems: List[run_options.Problem]  # the rows'; engines add the clips'
  fit: Optional[pca_lib.PcaFit]  # test: the train split's; train: None
  multi_label: bool
  started: float              # time.time() at the start

  @property
  def write_options(self) -> dict:
    return run_options.write_options(self.options)

  def report_problems(self, staged: Optional[extraction.Staged],
                      clip_problems: List[run_options.Problem]
                      ) -> extraction.Staged:
    """Logs the clips' problems, adds them to the run's and writes
    errors.csv; refuses a run where no clip can be written."""
    for p in clip_problems:
      logging.warning("%s [%s]", p.reason, p.action)
    self.problems += clip_problems
    errors_path = fileio.join(self.options.output_dir, output_folder.ERRORS)
    fileio.atomic_write_text(errors_path,
                             csv_rows.errors_csv(self.problems, self.rows))
    if staged is None:
      raise ShardingError(f"no clip of {self.options.csv} could be "
                          f"written; the reasons are above and in "
                          f"{errors_path}")
    return staged


@dataclasses.dataclass
class RunResult:
  """What an engine's steps produced: the input of the manifest."""
  staged: extraction.Staged
  folds: np.ndarray              # [N] fold of each staged clip (-1: none)
  fold_plan: Optional[folds_lib.FoldPlan]  # train
  fit: pca_lib.PcaFit
  names: List[str]               # shard file names
  shards: list                   # [shards] staged indices in each
  shard_keys: list               # [shards] (fold, source) of each
  audio_seconds: float           # audio the extraction decoded
  extract_time: float            # its wall seconds


class Engine:
  """Runs a checked run's three steps into a staging folder; the run's
  output folder is locked and readied (its finished or interrupted state
  settled) before `execute` is called."""
  name = "engine"

  def check(self, options: Options) -> None:
    """Before any work: can this engine run these options?"""

  def execute(self, run: Run, staging: str) -> RunResult:
    raise NotImplementedError


class LocalEngine(Engine):
  """The steps on a local process pool (options.num_workers)."""
  name = "local pool"

  def check(self, options: Options) -> None:
    if options.runner:
      raise ShardingError(f"--runner={options.runner} runs on Apache Beam: "
                          "call beam_sharding.make_tfrecords")

  def execute(self, run: Run, staging: str) -> RunResult:
    options = run.options
    audio_seconds = extraction.extract_to_staging(run.usable, options,
                                                  staging)
    extract_time = time.time() - run.started
    staged, clip_problems = extraction.collect_staged(run.usable, options,
                                                      staging)
    staged = run.report_problems(staged, clip_problems)
    fit, folds, fold_plan, pca_vectors = extraction.fit_and_fold(
        staged, options, run.multi_label, run.fit, bool(clip_problems))
    names, shards, keys = writing.write_shards(
        staged, pca_vectors, folds, run.vocabulary, options, staging)
    return RunResult(staged, folds, fold_plan, fit, names, shards, keys,
                     audio_seconds, extract_time)


def make_tfrecords(options: Options, engine: Optional[Engine] = None
                   ) -> manifest_lib.Manifest:
  """Runs the three steps on engine (default: the local pool); returns the
  manifest written to output_dir."""
  engine = engine or LocalEngine()
  engine.check(options)
  run = check_run(options)
  output_folder.check_output_dir(options.output_dir)
  output_folder.lock_output_dir(options.output_dir)
  try:
    finished = finished_run(run.options)
    if finished is not None:
      return finished
    staging = output_folder.prepare_output_dir(run.options, fingerprints(run))
    result = engine.execute(run, staging)
    manifest = finish_run(run, result, engine.name)
    if not options.keep_staging:
      fileio.remove_tree(staging)
    return manifest
  finally:
    output_folder.release_output_dir(options.output_dir)


def check_run(options: Options) -> Run:
  """The options and the CSVs checked, before any audio is read."""
  started = time.time()
  if options.split not in run_options.SPLITS:
    raise ShardingError(f"--split must be one of {run_options.SPLITS}, "
                        f"not {options.split!r}")
  if options.compression not in ("none", "gzip"):
    raise ShardingError("--compression must be none or gzip")
  runs = run_options.inputs(options)
  for run in runs:
    if not fileio.exists(run.audio_dir):
      raise ShardingError(f"{run.audio_dir}: audio directory not found")
  fit, multi_label = None, False
  if options.split == "test":
    params, vocabulary, fit, multi_label = _resolve_test_inputs(options)
    options = dataclasses.replace(options, params=params)
  rows, csv_multi = csv_rows.read_inputs(runs, options.split)
  if options.split == "train":
    vocabulary = csv_rows.label_vocabulary(rows, options.labels_file)
    multi_label = csv_multi
  usable, problems = csv_rows.check_rows(rows, options.split, vocabulary,
                                         options.csv)
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
  return Run(options, runs, rows, usable, list(vocabulary), problems, fit,
             multi_label, started)


def _resolve_test_inputs(options: Options):
  """For a test split: the train manifest's params, labels and PCA fit."""
  if not options.pca_from:
    raise ShardingError("--split=test needs --pca_from=<train output_dir> "
                        "(its PCA fit and feature parameters are reused)")
  try:
    train = manifest_lib.Manifest.read(options.pca_from)
  except manifest_lib.ManifestError as e:
    raise ShardingError(f"--pca_from: {e} (shard the train split first "
                        "and point --pca_from at its output_dir)") from e
  params = FeatureParams.from_dict(train.feature_params)
  fit = pca_lib.PcaFit.load(fileio.join(options.pca_from, pca_lib.FIT_FILE))
  return params, list(train.labels), fit, train.multi_label


def fingerprints(run: Run) -> dict:
  """What a resumed run must share with the run it resumes."""
  csv_bytes = b"".join(fileio.read_bytes(i.csv) for i in run.inputs)
  return {stage: run_options.fingerprint(run.options, csv_bytes, stage)
          for stage in ("extract", "write")}


def finished_run(options: Options) -> Optional[manifest_lib.Manifest]:
  """The manifest of a finished folder that --resume finds (None: no such
  folder, or not --resume). Asked for other fold, PCA or shard options than
  it was written with, it refuses with one line rather than keep the old
  ones without a word (manifests before tagger 0.10 record none)."""
  path = fileio.join(options.output_dir, manifest_lib.MANIFEST)
  if not options.resume or options.overwrite or not fileio.exists(path):
    return None
  manifest = manifest_lib.Manifest.read(options.output_dir)
  written = manifest.write_options
  if written:
    asked = json.loads(json.dumps(run_options.write_options(options)))
    differ = [f"--{k}={written[k]} (asked: {asked[k]})" for k in asked
              if k in written and written[k] != asked[k]]
    if differ:
      raise ShardingError(
          f"{options.output_dir} is finished and was written with "
          f"{', '.join(differ)}; pass --overwrite to write it again with "
          "the new options")
  logging.info("%s is already complete; nothing to resume", path)
  return manifest


def finish_run(run: Run, result: RunResult, engine: str
               ) -> manifest_lib.Manifest:
  """labels.txt and the manifest, written last: a folder with a manifest
  is complete."""
  out = run.options.output_dir
  fileio.atomic_write_text(fileio.join(out, output_folder.LABELS),
                           "\n".join(run.vocabulary) + "\n")
  manifest = _manifest(run, result, engine)
  manifest.write(out)
  if run.options.split == "train" and len(run.vocabulary) < 2:
    logging.warning("%s holds one class (%s): a tagger trained on it gives "
                    "every clip that label (and MAP@3 1.000); add clips of "
                    "other classes", out, ", ".join(run.vocabulary))
  return manifest


def _manifest(run: Run, result: RunResult, engine: str
              ) -> manifest_lib.Manifest:
  """The manifest of a finished run: the shard files are stat-ed and
  hashed here."""
  options, staged, folds = run.options, result.staged, result.folds
  train = options.split == "train"
  labels_written = [l for r, e in zip(staged.rows, staged.empty) if not e
                    for l in r.labels]
  source_names = [i.source for i in run.inputs]
  per_source = collections.Counter(source_names[r.source]
                                   for r in staged.rows)
  per_class = collections.Counter(labels_written)
  per_fold = collections.Counter(int(f) for f in folds if f >= 0)
  shards = []
  for name, members, (fold, source) in zip(result.names, result.shards,
                                           result.shard_keys):
    path = fileio.join(options.output_dir, name)
    shards.append(manifest_lib.Shard(
        name, int(fold), source_names[source], len(members),
        int(tf.io.gfile.stat(path).length), fileio.sha256(path)))
  frames = manifest_lib.frame_statistics(staged.num_frames)
  params, fit, plan = options.params, result.fit, result.fold_plan
  return manifest_lib.Manifest(
      split=options.split, labels=tuple(run.vocabulary), shards=tuple(shards),
      feature_params=params.to_dict(), num_mels=params.mel_bands,
      frames_per_second=params.mel_frames_per_second,
      normalization=(params.norm_min_db, params.norm_max_db),
      pca=manifest_lib.Pca(
          fit.dim, round(float(fit.explained_variance_ratio.sum()), 4),
          pca_lib.FIT_FILE if train else
          fileio.join(options.pca_from, pca_lib.FIT_FILE)),
      compression=options.compression, multi_label=bool(run.multi_label),
      sources=tuple(source_names), frames=frames,
      crop_range=((int(round(frames["p25"])), int(round(frames["p75"])))
                  if frames else None),
      num_records=len(staged.rows), num_empty=int(staged.empty.sum()),
      num_problems=len(run.problems),
      num_skipped=sum(p.action == "skipped" for p in run.problems),
      audio_hours=round(float(staged.duration_s.sum()) / 3600, 4),
      run_time_s=round(time.time() - run.started, 2),
      extract_realtime_factor=round(result.audio_seconds / max(
          result.extract_time, 1e-9), 1),
      input={"csv": options.csv, "audio_dir": options.audio_dir,
             "pca_from": options.pca_from},
      per_source_counts={n: per_source.get(n, 0) for n in source_names},
      per_class_counts=({l: per_class.get(l, 0) for l in run.vocabulary}
                        if train else None),
      per_fold_counts={str(k): per_fold[k] for k in sorted(per_fold)},
      folds=({"num_folds": plan.num_folds, "requested": plan.requested,
              "seed": options.fold_seed,
              "train_only_clips": int(np.sum(folds < 0)),
              "train_only_labels": plan.train_only} if train else None),
      write_options=run.write_options, engine=engine,
      version=tagger.__version__, created_unix=int(time.time()))


def describe(manifest: manifest_lib.Manifest, output_dir: str) -> str:
  """A short human summary of a finished run."""
  return manifest_lib.describe(manifest, output_dir, output_folder.ERRORS)
