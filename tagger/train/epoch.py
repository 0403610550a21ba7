"""One epoch of a fold's run: its steps from where the run state stands (a
checkpoint inside it every checkpoint_every steps; on a stop signal a
checkpoint and Preempted), the batch accounting of a tf.data service, and
the validation: the epoch's history row."""

import dataclasses
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from tagger import distribute
from tagger import errors
from tagger.input import data_service
from tagger.train import fold_parts
from tagger.train import preemption
from tagger.train import run_state
from tagger.train import schedules
from tagger.train import steps as steps_lib
from tagger.train import validation as validation_lib

PHASES = schedules.PHASES


class NonFiniteLoss(errors.UserError):
  """An epoch whose training loss is not finite; the message says what is
  known and what to try."""


def describe(row: dict, phase_epoch: int, phase_length: int) -> str:
  """An epoch's log line: phase, loss, validation figures, speed."""
  validation = "" if "val_loss" not in row else (
      f", val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} "
      f"MAP@3 {figure(row.get('val_map3'))}" + (
          f" lwlrap {row['val_lwlrap']:.3f}" if "val_lwlrap" in row
          else ""))
  return (f"{row['phase']} epoch {phase_epoch}/{phase_length} "
          f"({row['epoch']}): loss {row['train_loss']:.4f}{validation}, "
          f"{row['examples_per_sec']:.0f} examples/s, "
          f"{row['seconds']:.1f} s")


def figure(value) -> str:
  """A metric for a log line: 3 places, or 'n/a' when there is none."""
  return "n/a" if value is None else f"{value:.3f}"


@dataclasses.dataclass(frozen=True)
class Epoch:
  """How a run's epochs go: its compiled parts, LR schedule and sizes;
  `save` writes a checkpoint of a state (every worker calls it: it may
  gather replica statistics); model_dir names the run in messages."""
  parts: fold_parts.Parts
  phases: schedules.Phases
  steps_per_epoch: int
  batch_size: int
  checkpoint_every: int
  save: Callable[[run_state.RunState], None]
  model_dir: str
  service_account: Optional[data_service.BatchAccount] = None

  def lr(self, state: run_state.RunState, step_in_epoch: int) -> float:
    return self.phases.lr(state.phase, state.phase_epoch, step_in_epoch,
                          state.plateau)

  def run(self, state: run_state.RunState, iterator,
          stop: Optional[preemption.StopSignals] = None) -> dict:
    """The epoch's remaining steps (from state.epoch_step), then its
    validation: its history row."""
    losses, data_epochs, started = self._steps(state, iterator, stop)
    train_loss = float(np.mean([float(np.asarray(l)) for l in losses]))
    if self.service_account is not None:   # batches lost with a worker?
      for epochs in data_epochs:
        self.service_account.add(np.asarray(epochs))
      self.service_account.check()
    steps = self.parts.steps
    steps.sync_statistics()
    train_time = time.perf_counter() - started + state.epoch_seconds
    state.epoch_step, state.epoch_losses, state.epoch_seconds = 0, [], 0.0
    row = {"phase": PHASES[state.phase], "epoch": state.epoch,
           "lr": float(f"{self.lr(state, self.steps_per_epoch - 1):.6g}"),
           "train_loss": round(train_loss, 6),
           "examples_per_sec": round(self.steps_per_epoch * self.batch_size /
                                     train_time, 1)}
    if self.parts.validation is not None:
      row.update(validation_lib.rounded(self.parts.validation.evaluate()))
    row["seconds"] = round(time.perf_counter() - started, 2)
    if not np.isfinite(train_loss):
      raise NonFiniteLoss(steps_lib.non_finite_message(
          self.model_dir, state, losses, steps.optimizer,
          lambda step: self.lr(state, step)))
    return row

  def _steps(self, state: run_state.RunState, iterator,
             stop: Optional[preemption.StopSignals]):
    """(losses, data epochs, when the time since the last checkpoint
    started) of the epoch's steps from state.epoch_step, with the
    checkpoints inside it; state.epoch_seconds gathers the time before
    each."""
    started = time.perf_counter()
    losses = list(state.epoch_losses)   # floats of steps before a resume
    every, data_epochs = self.checkpoint_every, []
    strategy = self.parts.steps.strategy
    for j in range(state.epoch_step, self.steps_per_epoch):
      loss, epochs = self.parts.steps.train_step(
          next(iterator), tf.constant(self.lr(state, j), tf.float32))
      losses.append(loss)
      data_epochs.append(epochs)
      state.step += 1
      last = j + 1 == self.steps_per_epoch
      # A signal on any worker: all stop at the same step.
      signalled = distribute.mean_over_workers(
          strategy, float(bool(stop and stop.requested))) > 0
      if not last and (signalled or (every and state.step % every == 0)):
        state.epoch_step = j + 1
        state.epoch_losses = [float(np.asarray(l)) for l in losses]
        state.epoch_seconds += time.perf_counter() - started
        started = time.perf_counter()
        self.save(state)
        if signalled:
          raise preemption.Preempted(
              f"stopped on {stop.requested} in {self.model_dir} at phase "
              f"{PHASES[state.phase]}, epoch {state.epoch} step "
              f"{j + 1}/{self.steps_per_epoch}: checkpoint written; run "
              "the same command again to resume there")
    return losses, data_epochs, started
