"""Out-of-fold scores: every training clip scored by the model that
validated it (the fold that held it out), with test-time augmentation as
tools/score does. Training every fold (--config.fold=all) writes them to
the model dir as OUT_OF_FOLD, fold by fold: a killed run goes on at the
first fold not in the file. label_issues.py reads them."""

import dataclasses
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from tagger import fileio
from tagger import settings
from tagger.infer import logistic_member
from tagger.infer import scorer
from tagger.shards import data_info
from tagger.shards import records

OUT_OF_FOLD = "out_of_fold.npz"


@dataclasses.dataclass
class OutOfFold:
  """Scores [N, C] of the training clips, each by the model that never
  trained on it, beside what the records say of each clip."""
  fnames: np.ndarray           # [N] str
  folds: np.ndarray            # [N] int: the fold that held the clip out
  labels: np.ndarray           # [N] int given label (-1: multi-label data)
  label_sets: List[tuple]      # [N] multi-label data: each clip's labels
  verified: np.ndarray         # [N] bool manually_verified
  empty: np.ndarray            # [N] bool: no audio (scored by priors)
  log_probs: np.ndarray        # [N, C] mean log-probability (as tools/score)
  classes: List[str]
  multi_label: bool

  @property
  def probs(self) -> np.ndarray:
    """[N, C] probabilities: softmax rows sum to 1; sigmoid classes each
    in [0, 1]."""
    probs = np.exp(self.log_probs)
    if not self.multi_label:
      probs /= probs.sum(axis=1, keepdims=True)
    return probs

  def save(self, path: str) -> None:
    hot = np.zeros(self.log_probs.shape, np.uint8)
    for i, labels in enumerate(self.label_sets):
      hot[i, list(labels)] = 1
    fileio.write_npz(
        path, fname=self.fnames.astype(str), fold=self.folds,
        label=self.labels, labels_hot=hot, verified=self.verified,
        empty=self.empty, log_probs=self.log_probs,
        classes=np.array(self.classes, str),
        multi_label=np.array(self.multi_label))

  @classmethod
  def load(cls, path: str) -> "OutOfFold":
    d = fileio.read_npz(path)
    return cls(d["fname"].astype(object), d["fold"], d["label"],
               [tuple(np.flatnonzero(row).tolist()) for row in
                d["labels_hot"]], d["verified"].astype(bool),
               d["empty"].astype(bool), d["log_probs"],
               d["classes"].tolist(), bool(d["multi_label"]))

  @classmethod
  def concat(cls, parts: Sequence["OutOfFold"]) -> "OutOfFold":
    first = parts[0]
    return cls(np.concatenate([p.fnames for p in parts]),
               np.concatenate([p.folds for p in parts]),
               np.concatenate([p.labels for p in parts]),
               [s for p in parts for s in p.label_sets],
               np.concatenate([p.verified for p in parts]),
               np.concatenate([p.empty for p in parts]),
               np.concatenate([p.log_probs for p in parts]),
               first.classes, first.multi_label)


def fold_dir(model_dir: str, fold: int) -> str:
  """Where --config.fold=all trains fold k."""
  return fileio.join(model_dir, f"fold{fold}")


def write(model_dir: str, data_dir: str, strategy: tf.distribute.Strategy,
          views: scorer.Views = scorer.Views(), progress: bool = True
          ) -> OutOfFold:
  """model_dir/OUT_OF_FOLD for every fold of data_dir's train shards (a
  comma list: one folder per feature set the models hear), each fold's
  clips scored by model_dir/fold{k}; folds already in the file are kept.
  Returns the whole table."""
  infos = [data_info.load_data_info(d) for d in settings.names(data_dir)]
  path = fileio.join(model_dir, OUT_OF_FOLD)
  done = OutOfFold.load(path) if fileio.exists(path) else None
  parts = [done] if done is not None else []
  for k in infos[0].folds:
    if done is not None and k in set(done.folds.tolist()):
      continue
    logging.info("out-of-fold scores: fold %d of %s", k, infos[0].folds)
    parts.append(score_fold(fold_dir(model_dir, k), infos, k, strategy,
                            views, progress))
    OutOfFold.concat(parts).save(path)   # atomically, after each fold
  return OutOfFold.load(path)


def score_fold(fold_model_dir: str, infos: Sequence[data_info.DataInfo],
               fold: int, strategy: tf.distribute.Strategy,
               views: scorer.Views, progress: bool) -> OutOfFold:
  """The clips of one fold scored by its model dir (a recipe dir: its
  chosen members, each group on the shards of the features it hears). A
  logistic member's head was refitted on every clip, its held-out fit's
  scores (logistic_member.HELD_OUT) stand for it."""
  first = infos[0]
  headers = records.read_headers(tf.data.TFRecordDataset(
      first.files([fold]), first.compression))
  fnames = list(headers[records.FNAME])
  dirs = scorer.find_model_dirs(fold_model_dir)
  held = [d for d in dirs
          if fileio.exists(fileio.join(d, logistic_member.HELD_OUT))]
  parts, weights = [], []
  for d in held:
    parts.append(logistic_member.held_out_log_probs(d, fnames)[0])
    weights.append(1)
  with strategy.scope():
    models = [scorer.load_model(d) for d in dirs if d not in held]
  groups = scorer.feature_groups(models) if models else []
  for group, info in zip(groups, scorer.shards_of_groups(infos, groups)):
    serialized = tf.data.TFRecordDataset(info.files([fold]),
                                         info.compression)
    scores = scorer.score_records(serialized, group, strategy, views,
                                  progress=progress)
    order = {f: i for i, f in enumerate(scores.fnames)}
    parts.append(scores.log_probs[[order[f] for f in fnames]])
    weights.append(len(group))
  log_probs = sum(w * p for w, p in zip(weights, parts)) / sum(weights)
  multi = first.multi_label
  return OutOfFold(
      headers[records.FNAME], np.full(len(fnames), fold, np.int64),
      headers[records.LABEL] if not multi else np.full(len(fnames), -1),
      list(headers[records.LABELS]),
      headers[records.MANUALLY_VERIFIED].astype(bool),
      headers[records.EMPTY], log_probs, list(first.labels), multi)


def read(model_dir: str) -> Optional[OutOfFold]:
  path = fileio.join(model_dir, OUT_OF_FOLD)
  return OutOfFold.load(path) if fileio.exists(path) else None
