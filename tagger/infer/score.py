"""tools/score's job: the flags as one ScoreJob, checked before any model
is loaded; the models grouped by the features they hear, each group scored
on its records (scorer.py, inputs.py), the groups combined, the outputs
written (outputs.py) and, with answers, the evaluation (evaluation.py) and
its HTML report (report.py)."""

import dataclasses
import os
from typing import List, Optional, Sequence, Tuple

import tensorflow as tf
from absl import logging

from tagger import distribute
from tagger import fileio
from tagger import settings
from tagger.infer import evaluation
from tagger.infer import inputs
from tagger.infer import outputs
from tagger.infer import report
from tagger.infer import report_issues
from tagger.infer import scorer
from tagger.input import batches as batches_lib
from tagger.shards import data_info


@dataclasses.dataclass(frozen=True)
class ScoreJob:
  """What tools/score does, one field per flag: score the test shards
  (data_dir) or raw audio (audio_dir, optionally only audio_csv's rows)
  with model_dirs at lengths x tries, write the submission to output and
  the optional outputs; with labels_csv also evaluate."""
  model_dirs: str
  output: str
  data_dir: str = ""
  audio_dir: str = ""
  audio_csv: str = ""
  lengths: Optional[Sequence[int]] = None
  tries: int = scorer.DEFAULT_TRIES
  batch_size: int = 256
  seed: int = 0
  probs_out: str = ""
  embeddings_out: str = ""
  labels_csv: str = ""
  confusion_png: str = ""
  strategy_name: str = "auto"
  num_workers: int = 0
  progress: bool = True
  tta: str = "random"
  # kaggle2018 (fname,label: the top 3 labels) or kaggle2019 (fname and a
  # probability column per class); auto: kaggle2019 for multi-label models.
  submission_format: str = "auto"
  report_dir: str = ""       # with labels_csv: the HTML evaluation report
  # With audio_dir and stage-1 models: window scores over time (written by
  # the caller, api.frames_of_files; checked here before any scoring).
  frames_out: str = ""
  hop_seconds: float = 0.5
  frames_png_dir: str = ""

  @property
  def data_dirs(self) -> List[str]:
    """The test shard folders (data_dir: one per feature set, commas)."""
    return list(settings.names(self.data_dir))

  @property
  def views(self) -> scorer.Views:
    return scorer.Views(self.lengths, self.tries, self.batch_size, self.seed,
                 self.tta)

  def check(self) -> None:
    """Every flag that can be wrong, before any model is loaded."""
    if self.submission_format not in outputs.SUBMISSION_FORMATS:
      raise scorer.ScoreError(
          f"--submission_format must be one of {outputs.SUBMISSION_FORMATS}"
          f", not {self.submission_format!r}")
    if self.tta not in batches_lib.TTA_MODES:
      raise scorer.ScoreError(f"--tta must be one of {batches_lib.TTA_MODES}"
                              f", not {self.tta!r}")
    if self.report_dir and not self.labels_csv:
      raise scorer.ScoreError("--report_dir needs --labels_csv (the report "
                              "is of an evaluation)")
    if self.batch_size < 1:
      raise scorer.ScoreError(f"--batch_size must be >= 1, not "
                              f"{self.batch_size}")
    if self.tries < 1:
      raise scorer.ScoreError(f"--tries must be >= 1, not {self.tries}")
    if bool(self.data_dir) == bool(self.audio_dir):
      raise scorer.ScoreError("give exactly one of --data_dir (test shards) "
                              "and --audio_dir (raw audio files)")
    for flag, path in (("--labels_csv", self.labels_csv),
                       ("--audio_csv", self.audio_csv)):
      if path and not fileio.exists(path):  # before hours of scoring
        raise scorer.ScoreError(f"{flag}: {path} not found")
    self._check_frames()
    for flag, path in (("--output", self.output),
                       ("--probs_out", self.probs_out),
                       ("--embeddings_out", self.embeddings_out),
                       ("--confusion_png", self.confusion_png),
                       ("--frames_out", self.frames_out)):
      if path:
        outputs.check_writable(flag, path)

  def _check_frames(self) -> None:
    """--frames_out and its flags, before any scoring."""
    hop = self.hop_seconds
    if not self.frames_out:
      if self.frames_png_dir:
        raise scorer.ScoreError("--frames_png_dir needs --frames_out")
      return
    if not self.audio_dir:
      raise scorer.ScoreError("--frames_out needs --audio_dir (frame "
                              "scores are of audio files)")
    if not (isinstance(hop, (int, float)) and hop > 0 and hop < float("inf")):
      raise scorer.ScoreError(f"--hop_seconds must be a positive number of "
                              f"seconds, not {hop}")
    if self.frames_png_dir and fileio.exists(self.frames_png_dir) and \
        not tf.io.gfile.isdir(self.frames_png_dir):
      raise scorer.ScoreError(f"--frames_png_dir {self.frames_png_dir} is a "
                              "file, not a folder")

  @property
  def errors_csv(self) -> str:
    """Where the files that could not be used whole are listed (with
    --audio_dir): beside --output, named after it."""
    return os.path.splitext(self.output)[0] + "_errors.csv"


def score(job: ScoreJob) -> dict:
  """Runs a ScoreJob; returns what it wrote and, with labels, the
  evaluation (run: the scores too)."""
  return run(job)[1]


def run(job: ScoreJob) -> Tuple[scorer.Scores, dict]:
  """Runs a ScoreJob: (the scores, what it wrote and, with labels, the
  evaluation). Models that hear different features (feature_groups) are
  scored each on its own shards (data_dir: a comma list, one folder per
  feature set) or features of the audio, and combined."""
  job.check()
  strategy = distribute.make_strategy(job.strategy_name)
  dirs = scorer.find_model_dirs(job.model_dirs)
  logging.info("scoring with %d model(s): %s", len(dirs), ", ".join(dirs))
  with strategy.scope():
    models = [scorer.load_model(d) for d in dirs]
  staged = [m.model_dir for m in models if m.stage2]
  if job.frames_out and staged:
    raise scorer.ScoreError(f"--frames_out takes stage-1 models; "
                            f"{staged[0]} is a stage-2 model")
  groups = scorer.feature_groups(models)
  embeddings = bool(job.embeddings_out or job.report_dir)
  parts, problems = [], None
  for group, shards in zip(groups, _shards_of_groups(job, groups)):
    if shards:
      serialized = inputs.shard_records(shards.data_dir)
    else:
      serialized, found = inputs.audio_records(
          job.audio_dir, group[0].model_dir, job.num_workers, job.audio_csv,
          progress=job.progress)
      problems = found if problems is None else problems  # same files
    try:
      parts.append(scorer.score_records(serialized, group, strategy,
                                        job.views, embeddings=embeddings,
                                        progress=job.progress))
    except tf.errors.DataLossError as e:
      if not shards:
        raise
      raise data_info.explain_data_loss(shards.data_dir, shards.manifest,
                                        e) from e
  scores = scorer.combine_scores(parts, [len(g) for g in groups])
  result = _write_scores(job, scores, problems)
  result.update({"models": dirs, "tries": job.tries, "tta": job.tta,
                 "lengths": [int(x) for x in (job.lengths or
                                              models[0].data.eval_lengths)]})
  if job.labels_csv:
    figures = evaluation.evaluate(
        scores, evaluation.read_labels_csv(job.labels_csv))
    figures["confusion_png"] = outputs.write_evaluation_png(
        figures, scores, job.confusion_png or outputs.evaluation_png_path(
            job.output, bool(figures.get("multi_label"))))
    result["evaluation"] = figures
  if job.report_dir:
    training = report.training_clips(groups[0], strategy, job.views)
    result["report"] = report.write_report(
        job, scores, result, training,
        report_issues.section_maker(job.model_dirs, training))
  return scores, result


def _write_scores(job: ScoreJob, scores: scorer.Scores,
                  problems: Optional[list]) -> dict:
  """The submission and the optional outputs; with audio files
  (problems: inputs.FileProblem of each file not used whole) also the
  errors CSV, the unusable files' rows left empty, and ScoreError when
  no file could be used."""
  unscored = {p.fname for p in problems or () if not p.scored}
  result = outputs.write_outputs(scores, job.output, job.submission_format,
                                 job.probs_out, job.embeddings_out,
                                 unscored=unscored)
  if problems is None:
    return result
  result["problems"] = problems
  result["errors_csv"] = outputs.write_errors(job.errors_csv, problems)
  if len(unscored) == len(scores.fnames):
    raise scorer.ScoreError(f"none of the {len(unscored)} file(s) could be "
                            f"scored; {job.errors_csv} says why for each")
  return result


def _shards_of_groups(job: ScoreJob, groups
                      ) -> List[Optional[data_info.DataInfo]]:
  """Each group's test shards (None for each with --audio_dir)."""
  if not job.data_dir:
    return [None] * len(groups)
  return scorer.shards_of_groups(
      [data_info.load_data_info(d) for d in job.data_dirs], groups)
