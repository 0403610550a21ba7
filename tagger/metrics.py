"""MAP@3, the competition's metric; the one implementation for validation,
scoring and evaluation.

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
