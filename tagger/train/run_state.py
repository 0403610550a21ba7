"""What a run keeps between epochs: its loop state, checkpoints (model and
optimizer, atomically), its history table, and optimizer helpers a new
phase or a check needs.
"""

import dataclasses
import hashlib
import json
import math
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from tagger import errors
from tagger import fileio
from tagger.train import schedules

HISTORY_KEYS = ("phase", "epoch", "lr", "train_loss", "val_loss",
                "val_accuracy", "val_map3", "val_lwlrap", "examples_per_sec",
                "seconds")


# The figures of the best epoch a run's summary names.
BEST_KEYS = ("phase", "epoch", "val_loss", "val_accuracy", "val_map3",
             "val_lwlrap", "train_loss")


class CheckpointError(errors.UserError):
  """A checkpoint that does not fit the run; the message says why."""


@dataclasses.dataclass
class RunState:
  """Everything besides weights that a resumed run needs."""
  phase: int = 0
  phase_epoch: int = 0
  epoch: int = 0             # epochs finished over all phases (input seed)
  step: int = 0
  # Inside an epoch (a checkpoint every N steps, or a preemption): steps
  # done in it, their losses, and its training seconds so far.
  epoch_step: int = 0
  epoch_losses: list = dataclasses.field(default_factory=list)
  epoch_seconds: float = 0.0
  plateau: Optional[dict] = None   # fine-tune phases: LR and counters
  best_val_loss: float = math.inf
  best: Optional[dict] = None
  checkpoint: str = ""
  done: bool = False
  history: list = dataclasses.field(default_factory=list)

  def end_epoch(self, row: dict, monitored: float) -> Tuple[bool, bool]:
    """Books a finished epoch (its history row, its monitored validation
    value, lower is better): the best epoch so far, the fine-tune phases'
    plateau counters (schedules.Plateau), the history and the counters.
    Returns (a new best, the plateau says stop)."""
    improved = monitored < self.best_val_loss
    if improved:
      self.best_val_loss = monitored
      self.best = {k: row.get(k) for k in BEST_KEYS
                   if k in row or k != "val_lwlrap"}
    stop = False
    if self.phase > 0:
      plateau = schedules.Plateau(**self.plateau)
      stop = plateau.update(monitored)
      self.plateau = dataclasses.asdict(plateau)
    self.history.append(row)
    self.epoch += 1
    self.phase_epoch += 1
    return improved, stop

  def next_phase(self) -> None:
    self.phase, self.phase_epoch = self.phase + 1, 0

  def to_json(self) -> str:
    value = dataclasses.asdict(self)
    value["best_val_loss"] = (None if math.isinf(self.best_val_loss)
                              else self.best_val_loss)
    return json.dumps(value, indent=1)

  @classmethod
  def from_json(cls, text: str) -> "RunState":
    return cls.from_value(json.loads(text))

  @classmethod
  def from_value(cls, value: dict) -> "RunState":
    value = dict(value)
    if value.get("best_val_loss") is None:
      value["best_val_loss"] = math.inf
    return cls(**value)


def save_checkpoint(path: str, model: keras.Model,
                    optimizer: keras.optimizers.Optimizer,
                    replica_statistics=None) -> None:
  """Weights and optimizer state; replica_statistics (inside an epoch on
  several replicas): each statistic's per-replica copies [R, ...], which
  drift apart until the epoch's end (see Steps.sync_statistics)."""
  arrays = {f"model_{i:04d}": w for i, w in enumerate(model.get_weights())}
  arrays.update({f"opt_{i:04d}": np.asarray(v.numpy())
                 for i, v in enumerate(optimizer.variables)})
  arrays.update({f"replica_{i:04d}": v
                 for i, v in enumerate(replica_statistics or ())})
  fileio.write_npz(path, **arrays)


def replica_statistics(path: str):
  """save_checkpoint's replica_statistics ([] when it has none)."""
  arrays = fileio.read_npz(path)
  return [arrays[k] for k in sorted(arrays) if k.startswith("replica_")]


def restore_checkpoint(path: str, model: keras.Model,
                       optimizer: keras.optimizers.Optimizer) -> None:
  arrays = fileio.read_npz(path)
  model.set_weights([arrays[k] for k in sorted(arrays)
                     if k.startswith("model_")])
  values = [arrays[k] for k in sorted(arrays) if k.startswith("opt_")]
  if len(values) != len(optimizer.variables):
    raise CheckpointError(f"{path}: {len(values)} optimizer values for "
                     f"{len(optimizer.variables)} variables")
  for variable, value in zip(optimizer.variables, values):
    variable.assign(value)


def history_csv(rows) -> str:
  lines = [",".join(HISTORY_KEYS)]
  for row in rows:
    lines.append(",".join("" if row.get(k) is None else str(row[k])
                          for k in HISTORY_KEYS))
  return "\n".join(lines) + "\n"


def reset_optimizer(optimizer) -> None:
  """A fresh Adam for a new phase: its moments and step counter to zero.

  Under mixed_float16 the optimizer is a LossScaleOptimizer around the Adam;
  its loss scale (and that scale's step counter) carry over: zeroing the
  scale would turn every gradient into 0/0. The learning rate is set every
  step, so it is left alone too.
  """
  inner = getattr(optimizer, "inner_optimizer", optimizer)
  for variable in inner.variables:
    if variable.path.rsplit("/", 1)[-1] != "learning_rate":
      variable.assign(tf.zeros(variable.shape, variable.dtype))


def loss_scale(optimizer) -> Optional[float]:
  """The current dynamic loss scale (mixed_float16), else None."""
  scale = getattr(optimizer, "dynamic_scale", None)
  return None if scale is None else float(np.asarray(scale))


def weights_fingerprint(model: keras.Model) -> str:
  """A short hash of every weight: equal on workers whose weights are."""
  digest = hashlib.sha256()
  for w in model.get_weights():
    digest.update(np.ascontiguousarray(w).tobytes())
  return digest.hexdigest()[:16]
