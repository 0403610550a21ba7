"""Validation of a run: the validation clips predicted on every replica (and
worker) at every evaluation length, their figures, and the one number that
picks the best weights."""

from typing import Callable, Sequence

import numpy as np

from tagger import errors
from tagger import metrics



class Validation:
  """The fold's validation: data (a distributed dataset of eval batches,
  every row carrying its position) and eval_step (Steps.eval_step)."""

  def __init__(self, data, eval_step: Callable, num_clips: int,
               lengths: Sequence[int], num_classes: int, multi_label: bool):
    self.data, self.eval_step = data, eval_step
    self.num_clips, self.lengths = num_clips, tuple(lengths)
    self.num_classes, self.multi_label = num_classes, multi_label

  def predict(self):
    """(probabilities [lengths, N, C], labels [N] or, multi-label, truth
    [N, C]), placed by each row's position. Every clip must come back
    exactly once per length."""
    n, classes = self.num_clips, self.num_classes
    total = len(self.lengths) * n
    probs = np.zeros((total, classes), np.float32)
    labels = np.full((total, classes if self.multi_label else 1), -1,
                     np.int64)
    seen = np.zeros(total, np.int64)
    for batch in self.data:
      p, label, row = (x.numpy() for x in self.eval_step(batch))
      real = row >= 0
      p, label, row = p[real], label[real], row[real]
      probs[row], labels[row] = p, label
      np.add.at(seen, row, 1)
    if not np.all(seen == 1):
      raise RuntimeError(  # a bug, not bad input: keep the traceback
          f"evaluation saw {np.sum(seen == 0)} validation rows never and "
          f"{np.sum(seen > 1)} more than once (of {total})")
    labels = labels[:n] if self.multi_label else labels[:n, 0]
    return probs.reshape(len(self.lengths), n, -1), labels

  def evaluate(self) -> dict:
    """val_loss, val_accuracy and val_map3 (multi-label: the multi-label
    report), and `_scores` / `_labels` for pictures."""
    probs, labels = self.predict()
    if self.multi_label:
      return metrics.multi_label_report(probs, labels)
    clipped = np.clip(probs, 1e-7, 1.0)
    loss = float(-np.log(np.take_along_axis(
        clipped, labels[None, :, None], axis=2)).mean())
    mean_log = np.log(clipped).mean(axis=0)  # over lengths: geometric mean
    return {"val_loss": loss,
            "val_accuracy": metrics.accuracy(probs.reshape(
                -1, probs.shape[2]), np.tile(labels, len(probs))),
            "val_map3": metrics.map_at_3(mean_log, labels),
            "_scores": mean_log, "_labels": labels}


def monitored(row: dict, select: str) -> float:
  """What picks the best weights and drives plateaus (lower is better):
  `select` (settings.SELECT_BEST, checked by RunConfig) of the
  validation, or the train loss without one."""
  if "val_loss" not in row:
    return row["train_loss"]
  if select != "val_loss" and row.get(select) is None:
    raise errors.UserError(
        f"config.select_best={select!r}: this data gives no {select} "
        "(multi-label data without single-label validation clips, or "
        "single-label data without lwlrap); use val_loss")
  return -row[select] if select != "val_loss" else row["val_loss"]


def rounded(result: dict) -> dict:
  """A validation result as a history row holds it: 6 places, without
  the private (underscored) entries."""
  return {k: None if v is None else round(v, 6)
          for k, v in result.items() if not k.startswith("_")}
