"""Batched offline test-time augmentation: folds x lengths x tries.

For every clip, each fold model sees it at each length (the training's
validation lengths by default) in `tries` random crops/pads; the class
scores are the mean of all those log-probabilities (a geometric mean of
probabilities), and the top 3 labels are the prediction.

Speed: the host reads each clip once per length and cuts all its tries at
once (`tries` rows per clip in one batch); every model, loaded once, runs on
the same batch under the distribution strategy, in large batches; the host
prepares the next batch while the models run.
"""

import csv
import dataclasses
import io
import os
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tagger import distribute
from tagger import errors
from tagger import fileio
from tagger import metrics
from tagger import parallel
from tagger import plots
from tagger.input import batches as batches_lib
from tagger.model import model_dir as model_dir_lib
from tagger.model import networks as model_lib
from tagger.shards import clip_files
from tagger.shards import data_info
from tagger.shards import records

DEFAULT_TRIES = 5


class ScoreError(errors.UserError):
  """Inputs the scorer cannot use; the message says why."""


@dataclasses.dataclass
class LoadedModel:
  model_dir: str
  data: model_dir_lib.DataDescription
  model: keras.Model         # outputs (probabilities, pooled embedding)

  @property
  def stage2(self) -> bool:
    return self.data.stage2


def find_model_dirs(pattern: str) -> List[str]:
  try:
    return model_dir_lib.find(pattern)
  except model_dir_lib.ModelDirError as e:
    raise ScoreError(str(e)) from e


def load_model(model_dir: str) -> LoadedModel:
  """A model dir's network, outputs (probabilities, embedding): the pooled
  features, with the PCA vector where the network concatenates them."""
  data, base = model_dir_lib.load(model_dir)
  return LoadedModel(model_dir, data, model_lib.with_embedding(base))


def check_compatible(models: Sequence[LoadedModel], info_labels=None):
  first = models[0].data
  for m in models[1:]:
    for key in ("labels", "num_mels", "normalization", "params"):
      if getattr(m.data, key) != getattr(first, key):
        raise ScoreError(f"{m.model_dir} and {models[0].model_dir} differ in "
                         f"{key}; score models of one dataset together")
  if info_labels is not None and list(info_labels) != list(first.labels):
    raise ScoreError("the test shards' labels differ from the models' "
                     "(were they made with --pca_from the same train split?)")


@dataclasses.dataclass
class Scores:
  """What scoring produced, per clip in input order."""
  fnames: List[str]
  log_probs: np.ndarray      # [N, C] mean log-probability
  embeddings: Optional[np.ndarray]  # [N, D] mean pooled features
  empty: np.ndarray          # [N] bool: no audio; ranked by class priors
  labels: List[str]
  multi_label: bool = False  # sigmoid models: log_probs per class, each
                             # independent (they do not sum to 1)


def _read_headers(dataset: tf.data.Dataset):
  """fname, empty and num_frames of every record, in order."""
  spec = {k: records.feature_spec(1)[k] for k in
          (records.FNAME, records.EMPTY, records.NUM_FRAMES)}
  names, empty = [], []
  for batch in dataset.batch(1024).map(
      lambda s: tf.io.parse_example(s, spec)).as_numpy_iterator():
    names += [n.decode("utf-8") for n in batch[records.FNAME]]
    empty += (batch[records.EMPTY].astype(bool) |
              (batch[records.NUM_FRAMES] == 0)).tolist()
  return names, np.array(empty, bool)


@dataclasses.dataclass(frozen=True)
class Views:
  """Which views of each clip are scored and averaged: every length (None:
  the model dir's eval lengths) x `tries` windows, seeded random ('random')
  or spread evenly over the clip ('even': what the waveform SavedModel
  does, batches.eval_host_batches); `batch_size` views a step."""
  lengths: Optional[Sequence[int]] = None
  tries: int = DEFAULT_TRIES
  batch_size: int = 256
  seed: int = 0
  tta: str = "random"


class Scorer:
  """Models loaded once and one compiled forward pass over all of them:
  host batch -> crop/pad on the device -> mean log-probability (and mean
  pooled features) of every model. Traced once for every batch shape."""

  def __init__(self, models: Sequence[LoadedModel],
               strategy: tf.distribute.Strategy, embeddings: bool = False):
    check_compatible(models)
    self.models = list(models)
    self.strategy = strategy
    self.data = models[0].data
    self.spec = self.data.batch_spec
    self.embeddings = embeddings
    self.traces = 0
    self.forward_batches = 0   # batches the models ran on
    self._forward = None

  def _compile(self, element_spec):
    spec, strategy, embeddings = self.spec, self.strategy, self.embeddings
    pad_mode = self.data.pad_mode
    models = [(m.model, m.stage2) for m in self.models]

    @tf.function(input_signature=[element_spec])
    def forward(batch):
      self.traces += 1
      def replica(b):
        model_batch = batches_lib.prepare_eval_batch(b, spec, pad_mode)
        log_probs, pooled = [], []
        for model, pca in models:
          probs, features = model(model_lib.model_inputs(model_batch, pca),
                                  training=False)
          log_probs.append(model_lib.log_probabilities(probs))
          if embeddings:
            pooled.append(tf.cast(features, tf.float32))
        mean_log = tf.add_n(log_probs) / len(log_probs)
        if not embeddings:
          mean_pooled = tf.zeros([tf.shape(mean_log)[0], 0])
        else:   # [B, D], or [B, sum D] for backbones of different widths
          mean_pooled = model_lib.ensemble_pooled(pooled)
        return mean_log, mean_pooled
      per_replica = strategy.run(replica, args=(batch,))
      return (strategy.gather(per_replica[0], axis=0),
              strategy.gather(per_replica[1], axis=0))
    return forward

  def score(self, serialized: tf.data.Dataset, views: Views = Views(),
            progress: bool = True) -> "Scores":
    """Every clip x length x try; rows in the input order."""
    data, tries = self.data, views.tries
    lengths = [int(x) for x in (views.lengths or data.eval_lengths)]
    shortest = max(model_lib.min_frames(m.data.architecture.get(
        "backbone", "mobilenet_v2")) for m in self.models)
    if min(lengths) < shortest:
      raise ScoreError(f"lengths must be >= {shortest} frames (the "
                       "models' backbones pool nothing shorter)")
    fnames, empty = _read_headers(serialized)
    n, c = len(fnames), len(data.labels)
    clips_per_batch = max(1, views.batch_size // tries)
    total = np.zeros((n, c), np.float64)
    pooled_sum = None
    bar = parallel.progress_bar(n * len(lengths), enabled=progress,
                                unit="clip", desc="scoring (x lengths)")
    # Every clip x try at the first length, then the next, ...: one
    # pipeline, so the host cuts the next batch while the models run.
    batches = self.strategy.experimental_distribute_dataset(
        batches_lib.eval_host_batches(
            serialized, self.spec, lengths, clips_per_batch=clips_per_batch,
            repeats=tries, seed=views.seed, tta=views.tta).prefetch(2))
    if self._forward is None:
      self._forward = self._compile(batches.element_spec)
    per_length = -(-n // clips_per_batch)
    # A batch of clips without audio is not run (each gets the class
    # priors below): 200,000 rows of missing files cost no network time.
    silent = [bool(empty[s:s + clips_per_batch].all())
              for s in range(0, n, clips_per_batch)]
    for k, batch in enumerate(batches):
      start = (k % per_length) * clips_per_batch
      if silent[k % per_length]:
        bar.update(min(clips_per_batch, n - start))
        continue
      log_probs, pooled = self._forward(batch)
      self.forward_batches += 1
      log_probs = log_probs.numpy().reshape(-1, tries, c).sum(axis=1)
      count = log_probs.shape[0]
      total[start:start + count] += log_probs
      if self.embeddings:
        pooled = pooled.numpy().reshape(count, tries, -1).sum(axis=1)
        if pooled_sum is None:
          pooled_sum = np.zeros((n, pooled.shape[1]), np.float64)
        pooled_sum[start:start + count] += pooled
      bar.update(count)
    bar.close()
    views = len(lengths) * tries
    log_probs = total / views
    counts = np.asarray(data.class_counts, np.float64)
    log_probs[empty] = np.log(np.maximum(counts, 1e-3) / max(counts.sum(), 1))
    emb = None
    if pooled_sum is not None:
      emb = (pooled_sum / views).astype(np.float32)
      emb[empty] = 0.0
    return Scores(fnames, log_probs, emb, empty, list(data.labels),
                  data.multi_label)


def score_records(serialized: tf.data.Dataset, models: Sequence[LoadedModel],
                  strategy: tf.distribute.Strategy, views: Views = Views(), *,
                  embeddings: bool = False, progress: bool = True
                  ) -> "Scores":
  """Scores a dataset of serialized records (test shards, or records made
  from raw audio) with every model at every view."""
  return Scorer(models, strategy, embeddings).score(serialized, views,
                                                    progress)


# ---------------------------------------------------------------------------
# Inputs: test shards, or raw audio.


def shard_records(data_dir: str) -> tf.data.Dataset:
  """The records of a shard folder (test split) in CSV order."""
  info = data_info.load_data_info(data_dir, verify=True)
  files = info.all_files()
  return tf.data.TFRecordDataset(files, info.compression, buffer_size=8 << 20)


def audio_records(audio_dir: str, model_dir: str, num_workers: int = 0,
                  csv_path: str = "", max_file_mb: float =
                  clip_files.MAX_FILE_MB,
                  progress: bool = True) -> tf.data.Dataset:
  """Records made in memory from raw audio files with the feature code of
  the shards: the files of csv_path's fname column, or every file in
  audio_dir (sorted). Each file is judged as make_tfrecords judges it
  (the same reader and checks); a file that cannot be used becomes an
  empty record, a truncated or cut one is scored from what decoded, and
  each is reported with the file and the reason."""
  from tagger.audio import extract  # pylint: disable=g-import-not-at-top
  from tagger.audio import pca as pca_lib  # pylint: disable=g-import-not-at-top
  from tagger.audio.params import FeatureParams  # pylint: disable=g-import-not-at-top
  data = model_dir_lib.read_data(model_dir)
  params = FeatureParams.from_dict(data.feature_params)
  fit = pca_lib.PcaFit.load(fileio.join(model_dir, model_dir_lib.PCA_FIT))
  try:
    names = clip_files.names_to_score(audio_dir, csv_path)
  except clip_files.CsvError as e:
    raise ScoreError(str(e)) from e
  rows = [clip_files.Row(i, name, "", 1) for i, name in enumerate(names)]
  extract.warm_up(params)
  results = parallel.ordered_parallel_map(
      extract.extract_in_worker,
      clip_files.clip_tasks(rows, audio_dir, max_file_mb),
      num_workers or os.cpu_count() or 1, extract.init_worker,
      (params.to_dict(),), size=extract.task_size)
  serialized = []
  bar = parallel.progress_bar(len(rows), unit="file", enabled=progress)
  for row, result in zip(rows, results):
    bar.update(1)
    mel = result.log_mel_db
    if result.status in (extract.TRUNCATED, extract.CUT):
      logging.warning("%s (scored from the audio that decoded)",
                      result.reason)
    elif result.status != extract.OK:
      logging.warning("%s (scored from class frequencies)", result.reason)
      mel = mel[:, :0]
    pca = fit.apply(result.summary[None])[0] if mel.shape[1] else np.zeros(
        fit.dim, np.float32)
    serialized.append(records.serialize_example(
        fname=row.fname, label=-1, label_name="", fold=-1,
        manually_verified=1, log_mel_db=mel, pca=pca))
  bar.close()
  return tf.data.Dataset.from_tensor_slices(serialized)


# ---------------------------------------------------------------------------
# Outputs.


def submission_csv(scores: Scores) -> str:
  """fname,label with the top 3 labels, space separated (Kaggle format),
  quoted where a name or label needs it."""
  top = metrics.top_k(scores.log_probs, 3)
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["fname", "label"])
  labels = [fileio.spreadsheet_safe(l) for l in scores.labels]
  for name, row in zip(scores.fnames, top):
    writer.writerow([fileio.spreadsheet_safe(name),
                     " ".join(labels[i] for i in row)])
  return buffer.getvalue()


SUBMISSION_FORMATS = ("auto", "kaggle2018", "kaggle2019")


def probabilities_csv(scores: Scores) -> str:
  """fname and a probability column per class: FSDKaggle2019's submission.
  Single-label models' probabilities sum to 1 over the classes;
  multi-label (sigmoid) models' are each class's own."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["fname"] + [fileio.spreadsheet_safe(l)
                                for l in scores.labels])
  probs = np.exp(scores.log_probs)
  if not scores.multi_label:
    probs /= probs.sum(axis=1, keepdims=True)
  for name, row in zip(scores.fnames, probs):
    writer.writerow([fileio.spreadsheet_safe(name)] +
                    [f"{p:.6g}" for p in row])
  return buffer.getvalue()


def read_labels_csv(path: str) -> Dict[str, Tuple[str, ...]]:
  """fname -> its labels, from fname,label (one label) or fname,labels
  (comma separated, FSDKaggle2019)."""
  reader = csv.DictReader(io.StringIO(fileio.read_text(path)))
  columns = set(reader.fieldnames or [])
  if "fname" not in columns or not {"label", "labels"} & columns:
    raise ScoreError(f"{path}: needs the columns fname,label or "
                     "fname,labels")
  if "labels" in columns:
    return {r["fname"]: clip_files.split_labels(r["labels"]) for r in reader}
  return {r["fname"]: (r["label"],) for r in reader}


def label_sets(truth: Dict[str, object]) -> Dict[str, Tuple[str, ...]]:
  """Answers as label tuples: a str is one label, a sequence several."""
  return {f: (t,) if isinstance(t, str) else tuple(t)
          for f, t in truth.items()}


def evaluate(scores: Scores, truth: Dict[str, Tuple[str, ...]]) -> dict:
  """MAP@3, top-1 accuracy, per-class accuracy and the confusion matrix of
  the clips that have a known label; for multi-label answers or models,
  lwlrap and per-class AP (evaluate_multi_label). truth: fname -> its
  labels (read_labels_csv; a str is one label)."""
  truth = label_sets(truth)
  if scores.multi_label or any(len(t) > 1 for t in truth.values()):
    return evaluate_multi_label(scores, truth)
  truth = {f: t[0] if t else "" for f, t in truth.items()}
  index = {l: i for i, l in enumerate(scores.labels)}
  rows = [i for i, f in enumerate(scores.fnames) if truth.get(f) in index]
  unknown = sorted({truth[f] for f in scores.fnames
                    if f in truth and truth[f] not in index})
  missing = sum(f not in truth for f in scores.fnames)
  labels = np.array([index[truth[scores.fnames[i]]] for i in rows])
  s = scores.log_probs[rows]
  matrix = metrics.confusion(s, labels, len(scores.labels))
  return {"clips": len(rows), "map3": metrics.map_at_3(s, labels),
          "accuracy": metrics.accuracy(s, labels),
          "per_class_accuracy": dict(zip(
              scores.labels, metrics.per_class_accuracy(matrix).round(4)
              .tolist())),
          "confusion": matrix, "unknown_labels": unknown,
          "without_label": missing}


def evaluate_multi_label(scores: Scores,
                         truth: Dict[str, Tuple[str, ...]]) -> dict:
  """lwlrap, per-class AP, MAP@3 and top-1 accuracy of the clips with one
  label (None without such clips), and the top-1 class's share among a
  clip's labels, over the clips whose labels are all known."""
  index = {l: i for i, l in enumerate(scores.labels)}
  known = lambda t: bool(t) and all(l in index for l in t)
  rows = [i for i, f in enumerate(scores.fnames) if known(truth.get(f))]
  unknown = sorted({l for f in scores.fnames for l in truth.get(f, ())
                    if l not in index})
  missing = sum(f not in truth for f in scores.fnames)
  hot = np.zeros((len(rows), len(scores.labels)), bool)
  for j, i in enumerate(rows):
    hot[j, [index[l] for l in truth[scores.fnames[i]]]] = True
  s = scores.log_probs[rows]
  single = hot.sum(axis=1) == 1
  ap = metrics.average_precision_per_class(hot, s)
  top1 = metrics.top_k(s, 1)[:, 0]
  return {"clips": len(rows), "multi_label": True,
          "lwlrap": metrics.lwlrap(hot, s)[0],
          "map3": (metrics.map_at_3(s[single], hot[single].argmax(axis=1))
                   if single.any() else None),
          "accuracy": (metrics.accuracy(s[single], hot[single].argmax(axis=1))
                       if single.any() else None),
          "single_label_clips": int(single.sum()),
          "top1_in_labels": float(hot[np.arange(len(rows)), top1].mean())
                            if rows else 0.0,
          "per_class_ap": {l: None if np.isnan(a) else round(float(a), 4)
                           for l, a in zip(scores.labels, ap)},
          "_ap": ap, "unknown_labels": unknown, "without_label": missing}


def check_writable(flag: str, path: str) -> None:
  """The output's folder exists (made if need be) and takes a file."""
  folder = os.path.dirname(path)
  try:
    if folder and "://" not in folder:  # object stores have no folders
      fileio.makedirs(folder)
    probe = fileio.temp_name(path)
    fileio.atomic_write_text(probe, "write check\n")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    raise ScoreError(f"{flag}: cannot write {path} "
                     f"({getattr(e, 'message', None) or e})") from e


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
  tries: int = DEFAULT_TRIES
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

  @property
  def data_dirs(self) -> List[str]:
    """The test shard folders (data_dir: one per feature set, commas)."""
    return [d.strip() for d in self.data_dir.split(",") if d.strip()]

  @property
  def views(self) -> Views:
    return Views(self.lengths, self.tries, self.batch_size, self.seed,
                 self.tta)

  def check(self) -> None:
    """Every flag that can be wrong, before any model is loaded."""
    if self.submission_format not in SUBMISSION_FORMATS:
      raise ScoreError(f"--submission_format must be one of "
                       f"{SUBMISSION_FORMATS}, not {self.submission_format!r}")
    if self.tta not in batches_lib.TTA_MODES:
      raise ScoreError(f"--tta must be one of {batches_lib.TTA_MODES}, not "
                       f"{self.tta!r}")
    if self.report_dir and not self.labels_csv:
      raise ScoreError("--report_dir needs --labels_csv (the report is of "
                       "an evaluation)")
    if bool(self.data_dir) == bool(self.audio_dir):
      raise ScoreError("give exactly one of --data_dir (test shards) and "
                       "--audio_dir (raw audio files)")
    for flag, path in (("--labels_csv", self.labels_csv),
                       ("--audio_csv", self.audio_csv)):
      if path and not fileio.exists(path):  # before hours of scoring
        raise ScoreError(f"{flag}: {path} not found")
    for flag, path in (("--output", self.output),
                       ("--probs_out", self.probs_out),
                       ("--embeddings_out", self.embeddings_out),
                       ("--confusion_png", self.confusion_png)):
      if path:
        check_writable(flag, path)


def score(job: ScoreJob) -> dict:
  """Runs a ScoreJob; returns what it wrote and, with labels, the
  evaluation. Models that hear different features (feature_groups) are
  scored each on its own shards (data_dir: a comma list, one folder per
  feature set) or features of the audio, and combined."""
  job.check()
  strategy = distribute.make_strategy(job.strategy_name)
  dirs = find_model_dirs(job.model_dirs)
  logging.info("scoring with %d model(s): %s", len(dirs), ", ".join(dirs))
  with strategy.scope():
    models = [load_model(d) for d in dirs]
  groups = feature_groups(models)
  embeddings = bool(job.embeddings_out or job.report_dir)
  parts = []
  for group, shards in zip(groups, _shards_of_groups(job, groups)):
    if shards:
      serialized = shard_records(shards.data_dir)
    else:
      serialized = audio_records(job.audio_dir, group[0].model_dir,
                                 job.num_workers, job.audio_csv,
                                 progress=job.progress)
    try:
      parts.append(score_records(serialized, group, strategy, job.views,
                                 embeddings=embeddings,
                                 progress=job.progress))
    except tf.errors.DataLossError as e:
      if not shards:
        raise
      raise data_info.explain_data_loss(shards.data_dir, shards.manifest,
                                        e) from e
  scores = combine_scores(parts, [len(g) for g in groups])
  result = write_outputs(job, scores)
  result.update({"models": dirs, "tries": job.tries, "tta": job.tta,
                 "lengths": [int(x) for x in (job.lengths or
                                              models[0].data.eval_lengths)]})
  if job.labels_csv:
    result["evaluation"] = evaluate_with_picture(job, scores)
  if job.report_dir:
    result["report"] = write_report(job, scores, result,
                                    training_clips(groups[0], strategy,
                                                   job.views))
  return result


def feature_groups(models: Sequence[LoadedModel]
                   ) -> List[List[LoadedModel]]:
  """The models by the features they hear (feature set, bands and dB
  bounds), in the order given; every model must know the same labels."""
  groups: Dict[str, List[LoadedModel]] = {}
  for m in models:
    if list(m.data.labels) != list(models[0].data.labels):
      raise ScoreError(f"{m.model_dir} and {models[0].model_dir} differ in "
                       "labels; score models of one dataset together")
    key = repr((sorted((m.data.feature_params or {}).items()),
                m.data.num_mels, sorted(m.data.normalization.items())))
    groups.setdefault(key, []).append(m)   # equal keys: compatible
  return list(groups.values())


def _shards_of_groups(job: ScoreJob, groups) -> List[Optional["data_info.DataInfo"]]:
  """Each group's test shards (None for each with --audio_dir): the one
  --data_dir folder, or of several the one whose features the group's
  models hear."""
  if not job.data_dir:
    return [None] * len(groups)
  infos = [data_info.load_data_info(d) for d in job.data_dirs]
  if len(infos) == 1 and len(groups) == 1:
    check_compatible(groups[0], infos[0].labels)
    return infos
  chosen = []
  for group in groups:
    wanted = group[0].data.feature_params
    match = [i for i in infos
             if dict(i.manifest.feature_params) == dict(wanted or {})]
    if not match:
      name = _feature_set_name(wanted)
      raise ScoreError(
          f"{group[0].model_dir} hears the '{name}' features and no "
          f"--data_dir folder ({job.data_dir}) holds them: make its test "
          f"shards with make_tfrecords --features={name} --split=test "
          "--pca_from=<its train shards> and add the folder to --data_dir "
          "(comma separated)")
    check_compatible(group, match[0].labels)
    chosen.append(match[0])
  return chosen


def _feature_set_name(feature_params: Optional[dict]) -> str:
  from tagger.audio import params as params_lib  # pylint: disable=g-import-not-at-top
  if not feature_params:
    return "reference"
  return params_lib.preset_name(
      params_lib.FeatureParams.from_dict(feature_params)) or "custom"


def combine_scores(parts: Sequence["Scores"],
                   weights: Sequence[int]) -> "Scores":
  """Scores of model groups over the same clips -> one: the mean
  log-probability weighted by each group's model count (every model
  counts once, as within a group), in the first part's clip order. The
  embeddings are the first group's (the report's neighbours are found
  with its models)."""
  first = parts[0]
  if len(parts) == 1:
    return first
  total = np.zeros_like(first.log_probs)
  for part, weight in zip(parts, weights):
    if sorted(part.fnames) != sorted(first.fnames):
      raise ScoreError("the test shards of the feature sets hold different "
                       "clips: make them from the same CSV")
    order = {f: i for i, f in enumerate(part.fnames)}
    total += weight * part.log_probs[[order[f] for f in first.fnames]]
  return dataclasses.replace(first, log_probs=total / sum(weights))


def training_clips(models: Sequence[LoadedModel],
                   strategy: tf.distribute.Strategy, views: Views):
  """report.TrainingClips: the models' training shards (the first model
  dir's data.json names them) embedded by the same models, one try at
  each length; None where the shards are not at hand (a model dir moved
  to another machine)."""
  from tagger.infer import report as report_lib  # pylint: disable=g-import-not-at-top
  data_dir = models[0].data.data_dir
  try:
    info = data_info.load_data_info(data_dir)
  except (data_info.InputError, tf.errors.OpError) as e:
    logging.info("report: no nearest training clips (%s)", e)
    return None
  serialized = tf.data.TFRecordDataset(info.all_files(), info.compression)
  scores = Scorer(models, strategy, embeddings=True).score(
      serialized, dataclasses.replace(views, tries=1), progress=False)
  spec = {k: records.feature_spec(1)[k] for k in
          (records.LABEL_NAME, records.MANUALLY_VERIFIED)}
  labels, verified = [], []
  for batch in serialized.batch(1024).map(
      lambda s: tf.io.parse_example(s, spec)).as_numpy_iterator():
    labels += [n.decode("utf-8") for n in batch[records.LABEL_NAME]]
    verified += batch[records.MANUALLY_VERIFIED].astype(bool).tolist()
  keep = ~scores.empty
  audio_dir = info.manifest.audio_dir
  return report_lib.TrainingClips(
      [n for n, k in zip(scores.fnames, keep) if k],
      [l for l, k in zip(labels, keep) if k], np.array(verified)[keep],
      scores.embeddings[keep],
      audio_dir if fileio.exists(audio_dir or "/nonexistent") else "")


def _version_and_commit() -> str:
  """tagger's version, and the commit of its checkout where it runs from
  one (else: the version alone)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import tagger  # pylint: disable=g-import-not-at-top
  try:
    commit = subprocess.run(
        ["git", "-C", os.path.dirname(os.path.abspath(tagger.__file__)),
         "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    commit = ""
  return tagger.__version__ + (f" (commit {commit})" if commit else "")


def write_report(job: ScoreJob, scores: Scores, result: dict,
                 training=None) -> str:
  """The evaluation as an HTML page (report.py); its path. training:
  report.TrainingClips, for each worst clip's nearest training clips."""
  from tagger.infer import report as report_lib  # pylint: disable=g-import-not-at-top
  evaluation = result["evaluation"]
  figure = ({"lwlrap": f"{evaluation['lwlrap']:.4f}"} if scores.multi_label
            else {"MAP@3": f"{evaluation['map3']:.4f}"})
  headline = {"title": "tagger evaluation: " + os.path.basename(
      job.labels_csv), **figure,
              "top-1 accuracy": (f"{evaluation['accuracy']:.4f}"
                                 if "accuracy" in evaluation else ""),
              "clips": result["clips"], "without audio": result["empty"],
              "models": ", ".join(result["models"]),
              "TTA": f"{job.tta}, lengths {result['lengths']} x "
                     f"{job.tries} tries",
              "data": job.data_dir or job.audio_dir,
              "labels": job.labels_csv,
              "configs": ", ".join(fileio.join(d, model_dir_lib.CONFIG)
                                   for d in result["models"]),
              "tagger": _version_and_commit()}
  audio_dir = job.audio_dir
  if job.data_dir:   # the shards' own audio folder, where it is at hand
    audio_dir = data_info.load_data_info(job.data_dirs[0]).manifest.audio_dir
  path = report_lib.ReportWriter(job.report_dir, audio_dir,
                                 training=training).write(
      scores, read_labels_csv(job.labels_csv), headline,
      report_lib.read_verified(job.labels_csv))
  logging.info("report: %s", path)
  return path


def write_outputs(job: ScoreJob, scores: Scores) -> dict:
  """The submission, and the probabilities and embeddings where asked."""
  fmt = job.submission_format
  if fmt == "auto":
    fmt = "kaggle2019" if scores.multi_label else "kaggle2018"
  fileio.atomic_write_text(job.output, probabilities_csv(scores) if
                           fmt == "kaggle2019" else submission_csv(scores))
  if scores.empty.any():
    logging.warning("%d clip(s) had no audio and are ranked by the training "
                    "class frequencies: %s", scores.empty.sum(),
                    ", ".join(np.array(scores.fnames)[scores.empty][:10]))
  escaped = [n for n in scores.fnames if fileio.spreadsheet_safe(n) != n]
  if escaped:
    logging.warning("%d name(s) begin as a spreadsheet formula would and are "
                    "written with a leading ' so that no spreadsheet runs "
                    "them: %s", len(escaped), ", ".join(escaped[:5]))
  if job.probs_out:
    fileio.atomic_write_text(job.probs_out, probabilities_csv(scores))
  if job.embeddings_out:
    buffer = io.BytesIO()
    np.savez(buffer, fname=np.array(scores.fnames),
             embedding=scores.embeddings)
    fileio.atomic_write_bytes(job.embeddings_out, buffer.getvalue())
  return {"clips": len(scores.fnames), "submission_format": fmt,
          "empty": int(scores.empty.sum()), "output": job.output}


def evaluate_with_picture(job: ScoreJob, scores: Scores) -> dict:
  """The evaluation against labels_csv, and its PNG (a confusion matrix,
  or average precision per class for multi-label models)."""
  report = evaluate(scores, read_labels_csv(job.labels_csv))
  if report.get("multi_label"):
    png = plots.per_class_bars(
        report.pop("_ap"), scores.labels,
        f"lwlrap {report['lwlrap']:.3f} over {report['clips']} clips: "
        "average precision per class")
    suffix = "_per_class_ap.png"
  else:
    png = plots.confusion_matrix(report.pop("confusion"), scores.labels,
                                 f"MAP@3 {report['map3']:.3f} over "
                                 f"{report['clips']} clips")
    suffix = "_confusion.png"
  confusion_png = job.confusion_png or os.path.splitext(job.output)[0] + suffix
  fileio.atomic_write_bytes(confusion_png, png)
  report["confusion_png"] = confusion_png
  return report
