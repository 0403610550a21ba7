"""make_tfrecords as an Apache Beam pipeline (`--runner=`).

The same three steps as the local pool (sharding.py), as a Beam graph:

  rows --Reshuffle--> ExtractClip ---------------------------+
                          |                                   |
                          +-> metadata --ToList--> plan ------+--CoGroupByKey
                               (no log-mels)   (decide, PCA,       |
                                                folds, shards)     v
                                     (shard, position, record) <--Serialize
                                                  |
                                            GroupByKey --> WriteShard

  - ExtractClip reads each clip through TF's file systems and runs the same
    extract.extract_clip as a local worker; a bad clip becomes a failed
    result with its reason, never a failed bundle.
  - The plan runs once, on one worker, over every clip's metadata
    (summary features included, log-mels not): decide_clips, fit_and_fold
    (the PCA fit is saved there) and shard_layout, the local path's own
    functions, so records, shard contents and record order are the local
    path's. It writes what the driver needs for errors.csv and the manifest
    to the staging folder, and emits each record's (shard, position, fold,
    PCA vector).
  - WriteShard writes each shard under a temporary name and renames it; a
    shard already there (a re-run with --resume) is kept.
  - The driver (this process) checks the CSV before the pipeline and writes
    errors.csv, labels.txt and the manifest after it (sharding.make_tfrecords:
    `BeamEngine` is the Beam implementation of its `Engine`).

What differs from the local pool: no progress bar here (runners have their
own: Dataflow's console, Flink's UI), and the unit of --resume is the shard
(extraction is done again; finished shards are kept).
"""

import pickle
import shlex
import time
from typing import Sequence

from absl import logging
import numpy as np

from tagger import fileio
from tagger.audio import extract
from tagger.audio.params import FeatureParams
from tagger.shards import clip_files
from tagger.shards import extraction
from tagger.shards import manifest as manifest_lib
from tagger.shards import sharding
from tagger.shards import writing

PLAN_FILE = "beam-plan.pkl"

try:
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
except ImportError:  # the optional extra is not installed
  beam = None


def check_installed() -> None:
  if beam is None:
    raise sharding.ShardingError(
        "--runner needs Apache Beam: pip install -e '.[beam]' (or leave "
        "--runner empty for the local process pool)")


def pipeline_options(runner: str, beam_options: str,
                     num_workers: int) -> "PipelineOptions":
  """The runner's options. DirectRunner defaults to one process per core
  (multi_processing); anything in beam_options wins."""
  args = [f"--runner={runner}"] + shlex.split(beam_options or "")
  if runner == "DirectRunner" and not any(
      a.startswith("--direct_running_mode") for a in args):
    import os  # pylint: disable=g-import-not-at-top
    args += ["--direct_running_mode=multi_processing",
             f"--direct_num_workers={num_workers or os.cpu_count() or 1}"]
  return PipelineOptions(args)


def runner_of(name: str):
  """The runner for a --runner name. DirectRunner is Beam's Python engine
  (FnApiRunner) itself: Beam 2.77's DirectRunner would first try to
  download the Prism runner from GitHub, and run on it where that works,
  so the same command would run on other engines on other machines."""
  if name == "DirectRunner":
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # pylint: disable=g-import-not-at-top
    return FnApiRunner()
  return name


if beam is not None:

  class ExtractClip(beam.DoFn):
    """Row -> (row index, ClipFeatures): read, decode, trim, features."""

    def __init__(self, params: dict, max_file_mb: float):
      self._params_dict = params
      self._max_file_mb = max_file_mb
      self._params = None

    def setup(self):
      # One BLAS thread, as in a local worker: the features are then the
      # local path's to the bit.
      extract.init_worker(self._params_dict)
      self._params = FeatureParams.from_dict(self._params_dict)
      extract.warm_up(self._params)

    def process(self, row):
      task = next(clip_files.clip_tasks([row], row.audio_dir,
                                        self._max_file_mb))
      try:
        result = extract.extract_clip(task, self._params)
      except Exception as e:  # pylint: disable=broad-except
        # Reported and skipped like any bad clip; the bundle goes on.
        result = extract.failed(
            task, extract.FAILED, f"{task.name}: {type(e).__name__}: {e}",
            0.0, self._params)
      yield row.index, result

  class Plan(beam.DoFn):
    """Every clip's metadata -> the run's decisions (once, on one worker);
    emits (row index, (shard file, position, fold, PCA vector, empty))."""

    def __init__(self, options, rows, fit, multi_label, staging):
      self._options, self._rows, self._fit = options, rows, fit
      self._multi_label, self._staging = multi_label, staging

    def process(self, metas):
      options = self._options
      order = {row.index: k for k, row in enumerate(self._rows)}
      metas = sorted(metas, key=lambda m: order[m.row])
      audio_seconds = float(sum(m.duration_s for m in metas))
      staged, clip_problems = extraction.decide_clips(metas, self._rows,
                                                    options.split)
      plan = {"clip_problems": clip_problems, "audio_seconds": audio_seconds}
      if staged is not None:
        fit, folds, fold_plan, pca_vectors = extraction.fit_and_fold(
            staged, options, self._multi_label, self._fit,
            bool(clip_problems))
        names, shards, keys = writing.shard_layout(
            staged, pca_vectors.shape[1], folds, options)
        staged.summary = np.zeros((0, 0), np.float32)   # not needed now
        plan.update(staged=staged, folds=folds, fold_plan=fold_plan,
                    names=names, shards=shards, keys=keys)
      fileio.atomic_write_bytes(fileio.join(self._staging, PLAN_FILE),
                                pickle.dumps(plan))
      if staged is None:
        return
      for name, members in zip(names, shards):
        for position, n in enumerate(members):
          yield (staged.rows[n].index,
                 (name, position, int(folds[n]), pca_vectors[n],
                  bool(staged.empty[n])))

  class Serialize(beam.DoFn):
    """(row index, {results: [features], placements: [placement]}) ->
    (shard file, (position, record)); a clip without a placement was
    skipped (errors.csv)."""

    def __init__(self, rows, vocabulary, split):
      self._rows = {row.index: row for row in rows}
      self._label_index = {l: i for i, l in enumerate(vocabulary)}
      self._split = split

    def process(self, joined):
      row_index, joined = joined
      placements = list(joined["placements"])
      if not placements:
        return
      (result,), (place,) = list(joined["results"]), placements
      name, position, fold, pca_vector, empty = place
      yield name, (position, writing.serialize_clip(
          self._rows[row_index], result.log_mel_db, empty, fold, pca_vector,
          self._label_index, self._split))

  class WriteShard(beam.DoFn):
    """(shard file, [(position, record)]) -> the shard, records in plan
    order; an existing file (a re-run) is kept."""

    def __init__(self, output_dir, compression):
      self._output_dir, self._compression = output_dir, compression

    def process(self, grouped):
      name, records_ = grouped
      path = fileio.join(self._output_dir, name)
      if not fileio.exists(path):
        writing.write_shard_file(
            path, [r for _, r in sorted(records_, key=lambda x: x[0])],
            self._compression)
      yield name


def build_pipeline(p, options, usable: Sequence, vocabulary, fit,
                   multi_label: bool, staging: str):
  """The graph on pipeline p (see the module docstring)."""
  results = (p | "Rows" >> beam.Create(list(usable))
             | "Spread" >> beam.Reshuffle()
             | "Extract" >> beam.ParDo(ExtractClip(options.params.to_dict(),
                                                   options.max_file_mb)))
  placements = (results
                | "Metadata" >> beam.Map(lambda kv: extraction.clip_meta(kv[1]))
                | "AllMetadata" >> beam.combiners.ToList()
                | "Plan" >> beam.ParDo(Plan(options, list(usable), fit,
                                            multi_label, staging)))
  return ({"results": results, "placements": placements}
          | "Join" >> beam.CoGroupByKey()
          | "Serialize" >> beam.ParDo(Serialize(usable, vocabulary,
                                                options.split))
          | "ByShard" >> beam.GroupByKey()
          | "WriteShard" >> beam.ParDo(WriteShard(options.output_dir,
                                                  options.compression)))


def make_tfrecords(options) -> manifest_lib.Manifest:
  """sharding.make_tfrecords on options.runner (or the local pool when it
  is empty); returns the manifest."""
  return sharding.make_tfrecords(
      options, BeamEngine() if options.runner else None)


class BeamEngine(sharding.Engine):
  """The run's steps as a pipeline on options.runner."""

  def __init__(self):
    self._runner = ""

  @property
  def name(self) -> str:
    return f"beam:{self._runner}"

  def check(self, options) -> None:
    check_installed()  # before any work
    self._runner = options.runner

  def execute(self, run: sharding.Run, staging: str) -> sharding.RunResult:
    options, fit = run.options, run.fit
    logging.info("running %d clips on Beam's %s", len(run.usable),
                 options.runner)
    with beam.Pipeline(runner=runner_of(options.runner),
                       options=pipeline_options(options.runner,
                                                options.beam_options,
                                                options.num_workers)) as p:
      build_pipeline(p, options, run.usable, run.vocabulary, fit,
                     run.multi_label, staging)
    extract_time = time.time() - run.started
    plan = pickle.loads(fileio.read_bytes(fileio.join(staging, PLAN_FILE)))
    staged = run.report_problems(plan.get("staged"), plan["clip_problems"])
    if options.split == "train":
      from tagger.audio import pca as pca_lib  # pylint: disable=g-import-not-at-top
      fit = pca_lib.PcaFit.load(fileio.join(options.output_dir,
                                            pca_lib.FIT_FILE))
    return sharding.RunResult(
        staged, plan["folds"], plan["fold_plan"], fit, plan["names"],
        plan["shards"], plan["keys"], plan["audio_seconds"], extract_time)
