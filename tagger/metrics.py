"""MAP@3, the competition's metric (and lwlrap, FSDKaggle2019's, for
multi-label clips); the one implementation for validation, scoring and
evaluation.

Kaggle's definition (ml_metrics.mapk with k=3) for one true label per clip:
a clip scores 1/rank of its label among its first 3 predictions, 0 when the
label is not there; a label predicted twice counts at its first place only;
fewer than 3 predictions are allowed. MAP@3 is the mean over clips.
"""

from typing import Sequence

import numpy as np


def average_precision_at_k(predicted: Sequence, actual, k: int = 3) -> float:
  """AP@k of one clip with one true label `actual`."""
  seen = set()
  for rank, label in enumerate(list(predicted)[:k], start=1):
    if label in seen:
      continue
    if label == actual:
      return 1.0 / rank
    seen.add(label)
  return 0.0


def map_at_k(predicted: Sequence[Sequence], actual: Sequence,
             k: int = 3) -> float:
  """Mean AP@k over clips (lists of predicted labels, true labels)."""
  if len(predicted) != len(actual):
    raise ValueError(f"{len(predicted)} prediction lists for "
                     f"{len(actual)} labels")
  if not len(actual):  # pylint: disable=g-explicit-length-test
    return 0.0
  return float(np.mean([average_precision_at_k(p, a, k)
                        for p, a in zip(predicted, actual)]))


def top_k(scores: np.ndarray, k: int = 3) -> np.ndarray:
  """[N, k] class indices by falling score; ties go to the lower index."""
  scores = np.asarray(scores)
  return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def map_at_3(scores: np.ndarray, labels: np.ndarray) -> float:
  """MAP@3 of class scores [N, C] (probabilities or log-probabilities)
  against label indices [N]."""
  return map_at_k(top_k(scores, 3).tolist(), np.asarray(labels).tolist(), 3)


def accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
  return float(np.mean(top_k(scores, 1)[:, 0] == np.asarray(labels)))


def confusion(scores: np.ndarray, labels: np.ndarray,
              num_classes: int) -> np.ndarray:
  """[true, predicted] counts of the top-1 prediction."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (np.asarray(labels), top_k(scores, 1)[:, 0]), 1)
  return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
  return np.diag(matrix) / np.maximum(matrix.sum(axis=1), 1)


# ---------------------------------------------------------------------------
# Multi-label clips (FSDKaggle2019): lwlrap and per-class AP.


def lwlrap(truth: np.ndarray, scores: np.ndarray):
  """Label-weighted label-ranking average precision (FSDKaggle2019's metric).

  For every true label of every clip: the precision of the clip's ranking
  at that label's rank (true labels ranked at or above it / its rank).
  A class's score is the mean over its true occurrences; lwlrap is the mean
  over all true labels, i.e. the classes' scores weighted by how often they
  occur. Ties rank a true label below the tied others (pessimistic).

  Args:
    truth: [N, C] bool or 0/1, several labels per clip allowed.
    scores: [N, C] class scores.

  Returns:
    (lwlrap, per_class [C] (NaN for a class that never occurs),
    weights [C] (each class's share of the true labels)).
  """
  truth = np.asarray(truth) > 0
  scores = np.asarray(scores, np.float64)
  if truth.shape != scores.shape:
    raise ValueError(f"truth {truth.shape} and scores {scores.shape} differ")
  n, c = truth.shape
  sums = np.zeros(c)
  counts = truth.sum(axis=0).astype(np.float64)
  for i in range(n):
    positives = np.flatnonzero(truth[i])
    if positives.size == 0:
      continue
    mine = scores[i][positives][:, None]
    # mine: [P, 1]. A label's rank counts every class scoring at least as
    # much (itself and ties included); hits count the true ones among them.
    ranks = (scores[i][None, :] >= mine).sum(axis=1)
    hits = (scores[i][positives][None, :] >= mine).sum(axis=1)
    sums[positives] += hits / ranks
  total = counts.sum()
  per_class = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
  weights = counts / max(total, 1)
  return float(sums.sum() / max(total, 1)), per_class, weights


def average_precision_per_class(truth: np.ndarray,
                                scores: np.ndarray) -> np.ndarray:
  """[C] average precision of each class's ranking of the clips
  (NaN for a class with no true clip)."""
  truth = np.asarray(truth) > 0
  scores = np.asarray(scores, np.float64)
  out = np.full(truth.shape[1], np.nan)
  for k in range(truth.shape[1]):
    positives = truth[:, k].sum()
    if positives == 0:
      continue
    order = np.argsort(-scores[:, k], kind="stable")
    hits = truth[order, k]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    out[k] = float((precision * hits).sum() / positives)
  return out


def multi_label_report(probs: np.ndarray, truth: np.ndarray) -> dict:
  """Validation figures of multi-label predictions.

  Args:
    probs: [lengths, N, C] sigmoid outputs at each validation length.
    truth: [N, C] 0/1.

  Returns val_loss (binary cross-entropy, mean over classes, clips and
  lengths), val_lwlrap (of the mean log-probability over lengths),
  val_map3 (MAP@3 of the clips with one label; None without such clips),
  val_accuracy (the top-1 class is one of the clip's labels, every length)
  and _scores [N, C], _labels [N, C] for per-class figures.
  """
  truth = np.asarray(truth) > 0
  p = np.clip(probs, 1e-7, 1.0 - 1e-7)
  loss = float(-(truth * np.log(p) + (~truth) * np.log(1 - p)).mean())
  mean_log = np.log(np.clip(probs, 1e-7, 1.0)).mean(axis=0)
  single = truth.sum(axis=1) == 1
  top = probs.argmax(axis=2)  # [lengths, N]
  hit = np.take_along_axis(truth[None].repeat(len(probs), 0),
                           top[..., None], axis=2)
  return {"val_loss": loss,
          "val_accuracy": float(hit.mean()),
          "val_map3": (map_at_3(mean_log[single],
                                truth[single].argmax(axis=1))
                       if single.any() else None),
          "val_lwlrap": lwlrap(truth, mean_log)[0],
          "_scores": mean_log, "_labels": truth}
