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


PHASES = ("cyclic", "fine_tune_1", "fine_tune_2")


class Phases:
  """The three phases of a run over a ScheduleConfig: phase 0 a triangular
  cyclic LR (base..max, a half cycle every cycle_step_epochs) for
  cyclic_epochs; phases 1 and 2 from the best weights at fine_tune_lrs
  with reduce-on-plateau and early stopping, fine_tune_max_epochs at
  most."""

  def __init__(self, schedule, steps_per_epoch: int):
    self.schedule, self.steps_per_epoch = schedule, steps_per_epoch

  @staticmethod
  def name(phase: int) -> str:
    return PHASES[phase]

  def length(self, phase: int) -> int:
    return int(self.schedule.cyclic_epochs if phase == 0 else
               self.schedule.fine_tune_max_epochs)

  def lr(self, phase: int, phase_epoch: int, step_in_epoch: int,
         plateau: dict) -> float:
    """The LR of a step; fine-tuning phases: their plateau's LR."""
    if phase > 0:
      return plateau["lr"]
    step_size = max(1, int(round(self.schedule.cycle_step_epochs *
                                 self.steps_per_epoch)))
    return triangular_lr(phase_epoch * self.steps_per_epoch + step_in_epoch,
                         step_size, self.schedule.base_lr,
                         self.schedule.max_lr)

  def plateau(self, phase: int) -> dict:
    """A fine-tuning phase's fresh plateau state (its LR first)."""
    s = self.schedule
    return dataclasses.asdict(Plateau(
        lr=float(s.fine_tune_lrs[phase - 1]), factor=s.plateau_factor,
        patience=s.plateau_patience, min_delta=s.plateau_min_delta,
        stop_patience=s.early_stop_patience))
