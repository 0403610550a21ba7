"""Steps 1 and 2 of a run: clips decoded and featurised on a worker pool
into staged chunks (output_dir/.staging/, a chunk file written atomically
once all its clips are done), then collected: what each clip's extraction
found decides whether it is written, written flagged or skipped; the train
split fits the PCA and assigns the folds.
"""

import collections
import dataclasses
import math
import os
import time
from typing import Iterator, List, Optional, Sequence

from absl import logging
import numpy as np

from tagger import fileio
from tagger import parallel
from tagger.audio import extract
from tagger.audio import pca as pca_lib
from tagger.audio.params import FeatureParams
from tagger.shards import clip_files
from tagger.shards import folds as folds_lib
from tagger.shards import run_options


def chunk_path(staging: str, chunk: int) -> str:
  return fileio.join(staging, f"chunk-{chunk:05d}.npz")


def has_features(status: int) -> bool:
  """Did extraction compute the clip's features (not: missing, empty or
  undecodable)?"""
  return status not in (extract.EMPTY, extract.FAILED)


def _write_chunk(path: str, results: Sequence[extract.ClipFeatures]) -> None:
  """Summary features only of the clips that have them: a run over
  missing files stages next to nothing."""
  featured = [r for r in results if has_features(r.status)]
  fileio.write_npz(
      path,
      row=np.array([r.row for r in results], np.int64),
      status=np.array([r.status for r in results], np.int8),
      reason=np.array([r.reason for r in results], dtype=str),
      duration_s=np.array([r.duration_s for r in results], np.float64),
      num_frames=np.array([r.log_mel_db.shape[1] for r in results], np.int64),
      log_mel=np.concatenate([r.log_mel_db for r in results], axis=1),
      summary=(np.stack([r.summary for r in featured]) if featured else
               np.zeros((0, extract.SUMMARY_FEATURE_COUNT), np.float32)))


def featurise(rows: Sequence[clip_files.Row], audio_dir: str,
              params: FeatureParams, max_file_mb: float,
              num_workers: int = 0) -> Iterator[extract.ClipFeatures]:
  """Every row's extract.ClipFeatures, in row order, computed on a pool of
  worker processes (num_workers; 0: one per core): the one featuriser of
  make_tfrecords' staging and tools/score's raw audio."""
  if rows:
    extract.warm_up(params)  # before workers: see warm_up
  return parallel.ordered_parallel_map(
      extract.extract_in_worker,
      clip_files.clip_tasks(rows, audio_dir, max_file_mb),
      num_workers or os.cpu_count() or 1, extract.init_worker,
      (params.to_dict(),), size=extract.task_size)


def extract_to_staging(rows: Sequence[clip_files.Row], options: run_options.Options,
                       staging: str) -> float:
  """Featurises every row into staged chunks; returns audio seconds done."""
  chunks = [rows[i:i + options.chunk_size]
            for i in range(0, len(rows), options.chunk_size)]
  todo = [k for k in range(len(chunks))
          if not fileio.exists(chunk_path(staging, k))]
  done_clips = len(rows) - sum(len(chunks[k]) for k in todo)
  if done_clips:
    logging.info("resuming: %d of %d clips already staged", done_clips,
                 len(rows))
  results_iter = featurise([row for k in todo for row in chunks[k]],
                           options.audio_dir, options.params,
                           options.max_file_mb, options.num_workers)
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
      _write_chunk(chunk_path(staging, k), results)
  return audio_seconds


@dataclasses.dataclass
class Staged:
  """Per-clip metadata of the clips to write, in CSV order."""
  rows: List[clip_files.Row]
  chunk: np.ndarray  # [N] chunk index
  offset: np.ndarray  # [N] position within the chunk
  num_frames: np.ndarray  # [N]
  summary: np.ndarray  # [F, 1133]: the clips with features (not empty)
  empty: np.ndarray  # [N] bool
  duration_s: np.ndarray  # [N]


@dataclasses.dataclass
class ClipMeta:
  """What extraction found of one clip, without its log-mel."""
  row: int  # Row.index
  status: int
  reason: str
  num_frames: int
  summary: Optional[np.ndarray]  # [1133]; None: no features
  duration_s: float
  chunk: int = -1  # where its log-mel is staged (local runs)
  offset: int = -1


def clip_meta(result: extract.ClipFeatures) -> ClipMeta:
  return ClipMeta(result.row, result.status, result.reason,
                  int(result.log_mel_db.shape[1]),
                  result.summary if has_features(result.status) else None,
                  float(result.duration_s))


def collect_staged(rows: Sequence[clip_files.Row], options: run_options.Options, staging: str):
  """Reads chunk metadata; decides per clip (decide_clips)."""
  metas = []
  for k in range(math.ceil(len(rows) / options.chunk_size)):
    chunk = fileio.read_npz(chunk_path(staging, k))
    featured = 0
    for j, (row_index, status, reason) in enumerate(
        zip(chunk["row"], chunk["status"], chunk["reason"])):
      summary = None
      if has_features(int(status)):
        summary, featured = chunk["summary"][featured], featured + 1
      metas.append(ClipMeta(
          int(row_index), int(status), str(reason),
          int(chunk["num_frames"][j]), summary,
          float(chunk["duration_s"][j]), k, j))
  return decide_clips(metas, rows, options.split)


def decide_clips(metas: Sequence[ClipMeta], rows: Sequence[clip_files.Row],
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
      problems.append(run_options.Problem(row.fname, row.index, reason, "skipped"))
      continue
    if status == extract.CUT:
      problems.append(run_options.Problem(row.fname, row.index, reason, "written_cut"))
    elif status == extract.TRUNCATED:
      problems.append(run_options.Problem(row.fname, row.index, reason,
                              "written_partial"))
    elif status in (extract.EMPTY, extract.FAILED):
      problems.append(run_options.Problem(row.fname, row.index, reason, "written_empty"))
    keep["rows"].append(row)
    keep["chunk"].append(meta.chunk)
    keep["offset"].append(meta.offset)
    keep["num_frames"].append(meta.num_frames)
    if meta.summary is not None:   # a clip without audio holds none
      keep["summary"].append(meta.summary)
    keep["empty"].append(status in (extract.EMPTY, extract.FAILED))
    keep["duration_s"].append(meta.duration_s)
  if not keep["rows"]:
    return None, problems
  staged = Staged(
      rows=keep["rows"], chunk=np.array(keep["chunk"]),
      offset=np.array(keep["offset"]),
      num_frames=np.array(keep["num_frames"], np.int64),
      summary=(np.stack(keep["summary"]).astype(np.float32, copy=False)
               if keep["summary"] else
               np.zeros((0, extract.SUMMARY_FEATURE_COUNT), np.float32)),
      empty=np.array(keep["empty"], bool),
      duration_s=np.array(keep["duration_s"]))
  return staged, problems


def fit_and_fold(staged: Staged, options: run_options.Options, multi_label: bool,
                 fit, clips_skipped: bool):
  """Train: fits (and saves) the PCA and assigns folds; test: the given
  fit, fold -1. Returns (fit, folds [N], fold plan or None, PCA vectors
  [N, dim], 0 for empty clips: only the clips with audio are projected,
  so a split of missing files costs no summary features)."""
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
  pca_vectors = np.zeros((len(staged.rows), fit.dim), np.float32)
  if len(staged.summary):
    pca_vectors[~staged.empty] = fit.apply(staged.summary)
  return fit, folds, fold_plan, pca_vectors
