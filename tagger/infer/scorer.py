"""Batched offline test-time augmentation: folds x lengths x tries.

For every clip, each fold model sees it at each length (the training's
validation lengths by default) in `tries` random crops/pads; the class
scores are the mean of all those log-probabilities (a geometric mean of
probabilities), and the top 3 labels are the prediction. Models that hear
different features are scored each on its own records and their scores
combined (combine_scores): the one place models are ensembled offline.

Speed: the host reads each clip once per length and cuts all its tries at
once (`tries` rows per clip in one batch); every model, loaded once, runs on
the same batch under the distribution strategy, in large batches; the host
prepares the next batch while the models run.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from tagger import errors
from tagger import parallel
from tagger.audio import params as params_lib
from tagger.input import batches as batches_lib
from tagger.model import backbones
from tagger.model import model_dir as model_dir_lib
from tagger.model import networks as model_lib
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


# What models scored or served together must share.
SHARED = ("labels", "num_mels", "normalization", "params")


def first_difference(models) -> Optional[Tuple[object, str]]:
  """(the first model that differs from models[0], in which of SHARED),
  or None: the one check of scoring (check_compatible) and serving."""
  first = models[0].data
  for m in models[1:]:
    for key in SHARED:
      if getattr(m.data, key) != getattr(first, key):
        return m, key
  return None


def check_compatible(models: Sequence[LoadedModel], info_labels=None):
  differs = first_difference(models)
  if differs:
    m, key = differs
    raise ScoreError(f"{m.model_dir} and {models[0].model_dir} differ in "
                     f"{key}; score models of one dataset together")
  first = models[0].data
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

  def take(self, rows: Sequence[int]) -> "Scores":
    """The scores of these clips (row indices), in that order."""
    rows = np.asarray(rows, np.int64)
    return dataclasses.replace(
        self, fnames=[self.fnames[i] for i in rows],
        log_probs=self.log_probs[rows], empty=self.empty[rows],
        embeddings=None if self.embeddings is None else self.embeddings[rows])


def _read_headers(dataset: tf.data.Dataset):
  """fname and empty of every record, in order."""
  headers = records.read_headers(dataset)
  return list(headers[records.FNAME]), headers[records.EMPTY]


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
    shortest = max(backbones.min_frames(m.data.arch.backbone)
                   for m in self.models)
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


def shards_of_groups(infos: Sequence[data_info.DataInfo], groups
                     ) -> List[data_info.DataInfo]:
  """Each model group's shard folder: the one folder given, or of several
  (one per feature set) the one whose features the group's models hear."""
  if len(infos) == 1 and len(groups) == 1:
    check_compatible(groups[0], infos[0].labels)
    return list(infos)
  chosen = []
  for group in groups:
    wanted = group[0].data.feature_params
    match = [i for i in infos
             if dict(i.manifest.feature_params) == dict(wanted or {})]
    if not match:
      name = _feature_set_name(wanted)
      folders = ", ".join(i.data_dir for i in infos)
      raise ScoreError(
          f"{group[0].model_dir} hears the '{name}' features and no shard "
          f"folder given ({folders}) holds them: make its shards with "
          f"make_tfrecords --features={name} (test shards: --split=test "
          "--pca_from=<its train shards>) and add the folder to --data_dir "
          "(comma separated)")
    check_compatible(group, match[0].labels)
    chosen.append(match[0])
  return chosen


def _feature_set_name(feature_params: Optional[dict]) -> str:
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

