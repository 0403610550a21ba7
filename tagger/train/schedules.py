"""Learning-rate schedules and plateau bookkeeping (the reference's
CyclicLR, ReduceLROnPlateau and EarlyStopping), as plain state that a
resumed run restores."""

import dataclasses
import math


def triangular_lr(step: int, step_size: int, base_lr: float,
                  max_lr: float) -> float:
  """Triangular cyclic LR (Smith 2017; keras-contrib CyclicLR 'triangular'):
  base_lr at step 0, max_lr after step_size steps, base_lr again after
  2 * step_size."""
  cycle = math.floor(1 + step / (2 * step_size))
  x = abs(step / step_size - 2 * cycle + 1)
  return base_lr + (max_lr - base_lr) * max(0.0, 1 - x)


@dataclasses.dataclass
class Plateau:
  """ReduceLROnPlateau + EarlyStopping on one monitored value (lower is
  better), as Keras counts them."""
  lr: float
  factor: float = 0.1
  patience: int = 3
  min_delta: float = 1e-4
  stop_patience: int = 10
  best: float = math.inf       # ReduceLROnPlateau's best (with min_delta)
  wait: int = 0
  stop_best: float = math.inf  # EarlyStopping's best (min_delta 0)
  stop_wait: int = 0

  def update(self, value: float) -> bool:
    """Counts one epoch's value; returns True when training should stop."""
    if value < self.best - self.min_delta:
      self.best, self.wait = value, 0
    else:
      self.wait += 1
      if self.wait >= self.patience:
        self.lr *= self.factor
        self.wait = 0
    if value < self.stop_best:
      self.stop_best, self.stop_wait = value, 0
    else:
      self.stop_wait += 1
    return self.stop_wait >= self.stop_patience
