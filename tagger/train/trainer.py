"""The distributed, mixed-precision, resumable two-stage trainer.

One fold's run (`train_fold`):
  phase 0  triangular cyclic LR (base..max, step one epoch), up to
           cyclic_epochs epochs;
  phase 1  from the best weights, LR fine_tune_lrs[0] with reduce-on-plateau
           and early stopping;
  phase 2  from the best weights, LR fine_tune_lrs[1], the same way.
The best weights (lowest validation loss over all phases) are kept. After
every epoch the model, the optimizer and this loop's own state (phase, epoch,
LR, plateau counters, history) are saved atomically, so a killed run started
again with the same command goes on from the last finished epoch.

The loop is here; what it uses has a module each: the compiled steps and
the loss (steps.py), validation (validation.py), the model dir as the run
writes it (run_dir.py, with run_state.py's state and checkpoints), and
TensorBoard and pictures (recorder.py).
"""

from typing import Optional

import keras
import ml_collections
import tensorflow as tf
from absl import logging

from tagger import distribute
from tagger import errors
from tagger import fileio
from tagger import settings
from tagger.input import data_service
from tagger.model import architecture as architecture_lib
from tagger.model import model_dir as model_dir_lib
from tagger.model import networks as model_lib
from tagger.shards import data_info
from tagger.train import epoch as epoch_lib
from tagger.train import fold_data
from tagger.train import fold_parts
from tagger.train import preemption
from tagger.train import recorder as recorder_lib
from tagger.train import run_dir as run_dir_lib
from tagger.train import run_state
from tagger.train import schedules
from tagger.train import validation as validation_lib
from tagger.train import warm_start

PHASES = schedules.PHASES


class TrainError(errors.UserError):
  """A run that cannot start or go on; the message says why."""


# ---------------------------------------------------------------------------
# The fold's run.


class FoldRun:
  """One fold: the loop over phases and epochs. Its collaborators: the
  data (`FoldData`: shards, folds, datasets), the `Network`, the compiled
  `Parts` (steps and validation), the `Phases` (LR and lengths), the
  `RunState` it books epochs in, the `RunDir` it writes and the `Recorder`
  that shows it. The network is built here; `prepare(epoch)` compiles the
  parts from an epoch; `train()` runs (or resumes) to the end."""

  def __init__(self, config, data_dir: str, model_dir: str,
               strategy: tf.distribute.Strategy, fold):
    self.config = config
    self.model_dir = model_dir
    self.strategy = strategy
    self.fold = fold
    self.chief = distribute.is_chief(strategy)
    self.run_dir = run_dir_lib.RunDir(model_dir, self.chief)
    self.recorder = recorder_lib.Recorder(model_dir, self.chief)
    self.model_config = settings.model_config(config)
    try:
      self.data = fold_data.FoldData(config, data_dir, fold, strategy)
    except errors.UserError as e:
      raise TrainError(str(e)) from e
    self.info = self.data.info
    self.run_config = self.data.run   # the config's top level, typed
    self.arch = architecture_lib.architecture_of(
        self.model_config, self.info, self.run_config.stage2)
    try:
      fold_parts.check_backbone(self.model_config, self.data)
    except model_lib.ModelError as e:
      raise TrainError(str(e)) from e
    self.phases = schedules.Phases(settings.schedule_config(config),
                                   self.data.steps_per_epoch)
    self.network = fold_parts.build_network(self.arch, self.model_config,
                                            strategy)
    self.parts: Optional[fold_parts.Parts] = None       # prepare()
    self.best_snapshot: Optional[list] = None   # the best epoch's weights

  @property
  def model(self) -> keras.Model:
    return self.network.model

  @property
  def optimizer(self) -> keras.optimizers.Optimizer:
    return self.network.optimizer

  @property
  def traces(self) -> dict:
    return (self.parts.steps.traces if self.parts
            else {"train": 0, "eval": 0})

  # -- building ----------------------------------------------------------------

  def prepare(self, start_epoch: int) -> fold_parts.Parts:
    """The datasets from start_epoch and the compiled steps
    (fold_parts.compile_parts)."""
    self.parts = fold_parts.compile_parts(
        self.network, self.data, self.strategy, start_epoch,
        freezes=self.model_config.freeze_epochs > 0)
    return self.parts

  def init_from(self) -> list:
    """Layers copied from config.model.init_from (warm_start)."""
    if not self.model_config.init_from:
      return []
    try:
      return warm_start.copy_weights(self.model, self.model_config.init_from,
                                     self.fold, self.info, self.model_config)
    except errors.UserError as e:
      raise TrainError(str(e)) from e

  def predict_validation(self):
    """(probabilities [lengths, N, C], labels [N] or truth [N, C])."""
    return self.parts.validation.predict()

  # -- the loop ----------------------------------------------------------------

  def train(self) -> dict:
    if fileio.exists(self.model_dir) and not tf.io.gfile.isdir(
        self.model_dir):
      raise TrainError(f"--model_dir {self.model_dir} is a file, not a "
                       "folder")
    fileio.makedirs(self.model_dir)
    if self.chief:   # one live run per model dir
      fileio.lock_dir(self.model_dir, "tools/train", "--model_dir")
    try:
      return self._train()
    finally:
      fileio.release_dir(self.model_dir)

  def _train(self) -> dict:
    state, copied = self._start_or_resume()
    if state.done:
      logging.info("%s is finished; nothing to do", self.model_dir)
      return self.run_dir.summary()
    parts = self.prepare(state.epoch)
    if state.checkpoint and state.epoch_step:
      stacked = run_state.replica_statistics(self.run_dir.checkpoint_path(
          state))
      if stacked and stacked[0].shape[0] == self.data.replicas:
        parts.steps.set_local_statistics([tf.constant(v) for v in stacked])
    iterator = iter(parts.train_data)
    for _ in range(state.epoch_step):  # resumed inside an epoch
      next(iterator)   # batches carry their own (epoch, step) seeds
    epoch = epoch_lib.Epoch(
        parts, self.phases, self.data.steps_per_epoch,
        self.data.input.batch_size,
        self.run_config.checkpoint_every_steps, self._checkpoint,
        self.model_dir, self.data.service_account(state.epoch + (
            1 if state.epoch_step else 0)))
    logging.info("%s", self.data.describe())
    with preemption.StopSignals() as stop:
      while state.phase < len(PHASES):
        self._run_phase_epoch(epoch, state, iterator, stop)
    return self.finish(state, copied)

  def _start_or_resume(self):
    """(state, layers copied by init_from): a new run writes its config,
    data description and state; a resumed one checks they are this run's
    and restores its checkpoint."""
    if not self.run_dir.exists(model_dir_lib.STATE):
      copied = self.init_from()
      return self.run_dir.start(
          fold_parts.config_json(self.config), model_dir_lib.data_description(
              self.info, self.run_config.stage, self.data.eval_lengths,
              self.data.augment.pad_mode, self.arch),
          self.info.data_dir), copied
    try:
      state = self.run_dir.resume(
          lambda saved: fold_parts.same_config(saved, self.config),
          self.info, self.run_config.stage2)
    except errors.UserError as e:
      raise TrainError(str(e)) from e
    if not state.done:
      if state.checkpoint:
        run_state.restore_checkpoint(self.run_dir.checkpoint_path(state),
                                     self.model, self.optimizer)
      logging.info("resuming %s: phase %s, epoch %d", self.model_dir,
                   PHASES[state.phase], state.epoch)
    return state, []

  def _run_phase_epoch(self, epoch: epoch_lib.Epoch,
                       state: run_state.RunState, iterator,
                       stop: preemption.StopSignals) -> None:
    """One epoch of the current phase (starting the phase first), its
    record and checkpoint; moves to the next phase when this one ends."""
    if self.phases.length(state.phase) <= 0:
      state.next_phase()
      return
    if state.phase_epoch == 0 and state.epoch_step == 0:
      if state.phase > 0:
        self._start_phase(state)
      self._record_batch_images(state.epoch)
      if self.run_config.log_pairing:
        self.write_pairing(state.epoch)
    freeze = self.model_config.freeze_epochs
    if freeze:
      self.network.frozen.assign(1.0 if state.epoch < freeze else 0.0)
    try:
      row = epoch.run(state, iterator, stop)
    except epoch_lib.NonFiniteLoss as e:
      raise TrainError(str(e)) from e
    except tf.errors.DataLossError as e:
      raise data_info.explain_data_loss(
          self.info.data_dir, self.info.manifest, e) from e
    except tf.errors.NotFoundError as e:
      if not self.data.input.data_service:
        raise
      raise data_service.explain_lost_job(self.data.input.data_service,
                                          e) from e
    self.recorder.epoch(row, row["epoch"])
    if self._end_epoch(state, row):
      state.next_phase()
    elif self.run_config.log_pairing:
      self.write_pairing(state.epoch)
    self._checkpoint(state)

  def _start_phase(self, state: run_state.RunState):
    """From the best weights with a fresh optimizer (phases 1 and 2)."""
    self._load_best()
    run_state.reset_optimizer(self.optimizer)
    state.plateau = self.phases.plateau(state.phase)
    logging.info("phase %s: from the best weights, LR %g",
                 PHASES[state.phase], state.plateau["lr"])

  def _end_epoch(self, state: run_state.RunState, row: dict) -> bool:
    """Books the epoch in the state (a new best is saved), logs it; True
    when the phase ends."""
    try:
      monitored = distribute.mean_over_workers(
          self.strategy, validation_lib.monitored(row,
                                                  self.run_config.select_best))
    except errors.UserError as e:
      raise TrainError(str(e)) from e
    improved, stop = state.end_epoch(row, monitored)
    if improved:
      self.best_snapshot = self.model.get_weights()  # on every worker
      self.run_dir.save_best(self.model)
    logging.info("%s", epoch_lib.describe(row, state.phase_epoch,
                                          self.phases.length(state.phase)))
    return stop or state.phase_epoch >= self.phases.length(state.phase)

  # -- several replicas and workers --------------------------------------------

  def _checkpoint(self, state: run_state.RunState):
    # Every worker: gathering the statistics may be a collective.
    statistics = self.parts.steps.checkpoint_statistics(state.epoch_step > 0)
    self.run_dir.save_checkpoint(state, self.model, self.optimizer,
                                 statistics)

  def _load_best(self):
    """The best weights: from memory (identical on every worker), or after
    a restart from the best file."""
    if self.best_snapshot is not None:
      self.model.set_weights(self.best_snapshot)
      return
    self.run_dir.load_best(self.model)

  def _record_batch_images(self, epoch: int):
    count = self.run_config.tensorboard_images
    if count and self.chief:
      self.recorder.batch_images(self.data.augmented_sample(epoch, count),
                                 epoch)

  def write_pairing(self, epoch: int):
    self.run_dir.write_pairing(epoch, *self.data.pairing_table(epoch))

  def finish(self, state: run_state.RunState, copied) -> dict:
    """The best weights back, their validation (with the recorder's
    pictures), the summary."""
    self._load_best()
    summary = fold_summary(self, state, copied)
    if self.parts.validation is not None:
      result = self.parts.validation.evaluate()  # every worker: runs on all
      if self.chief:
        validation = validation_lib.rounded(result)
        title = (f"fold {self.fold}, stage {self.run_config.stage}: best "
                 "model, ")
        validation.update(self.recorder.best_model(
            result, self.info.labels, title, self.data.multi_label,
            state.epoch))
        summary["best_model_validation"] = validation
    logging.info("final weights fingerprint %s (task %s)",
                 run_state.weights_fingerprint(self.model),
                 distribute.task_name())
    if self.chief:
      self.recorder.flush()
    self.run_dir.finish(state, summary)
    return summary


def fold_summary(run: FoldRun, state: run_state.RunState, copied) -> dict:
  """summary.json of a finished fold (without its best model's
  validation): best epoch, counts, precision, compilation, input."""
  data = run.data
  summary = {"fold": str(run.fold), "stage": run.run_config.stage,
             "best": state.best, "epochs": state.epoch,
             "steps": state.step,
             "best_weights": run.run_dir.file(model_dir_lib.BEST),
             "parameters": model_lib.parameter_counts(run.model),
             "strategy": distribute.describe(run.strategy),
             "precision": keras.mixed_precision.global_policy().name,
             "precision_reason": distribute.precision_reason(),
             "compile": {"jit_compile": run.run_config.jit_compile,
                         "length_quantum": int(data.input.length_quantum),
                         "train_traces": int(run.traces["train"])},
             "traces": dict(run.traces),
             "input": (f"tf.data service at {data.input.data_service}"
                       if data.input.data_service else "local")}
  if copied:
    summary["initialised_from"] = {"path": run.model_config.init_from,
                                   "layers": copied}
  return summary


# ---------------------------------------------------------------------------
# Entry point for tools/train.


def setup(config, strategy_name: str = "", precision_name: str = ""):
  """Strategy first (multi-worker must start before other TF work), then
  precision, seeds and determinism."""
  run = settings.run_config(config)
  strategy = distribute.make_strategy(strategy_name or run.strategy)
  distribute.set_precision(*distribute.choose_precision(
      precision_name or run.precision))
  if run.deterministic:
    tf.config.experimental.enable_op_determinism()
  return strategy


def train(config: ml_collections.ConfigDict, data_dir: str, model_dir: str,
          strategy: tf.distribute.Strategy) -> dict:
  """Trains config.fold ('k'; 'none': every clip, no validation). 'all'
  (every fold in turn, then the out-of-fold scores) is tools/train's:
  recipe.train_command."""
  run = settings.run_config(config)
  fold = run.fold
  if fold == "all":
    raise TrainError("fold 'all' trains every fold in turn: run it with "
                     "tools/train (recipe.train_command)")
  keras.utils.set_random_seed(run.seed)  # initial weights
  # ...but no TF global seed: tf.data ops take tensor seeds (per epoch),
  # which a global seed breaks; everything random here is seeded itself.
  tf.random.set_seed(None)
  return FoldRun(config, data_dir, model_dir, strategy,
                 None if fold == "none" else int(fold)).train()


def describe_summary(summary: dict) -> str:
  """One line per fold: best epoch and validation figures."""
  if "best" not in summary:  # several folds
    return "\n".join(describe_summary(s) for s in summary.values())
  best = summary.get("best") or {}
  val = summary.get("best_model_validation") or {}
  lwlrap = (f", lwlrap {val['val_lwlrap']:.3f}" if "val_lwlrap" in val
            else "")
  return (f"fold {summary['fold']} stage {summary['stage']}: best epoch "
          f"{best.get('epoch')} ({best.get('phase')}), val loss "
          f"{val.get('val_loss', float('nan')):.4f}, MAP@3 "
          f"{epoch_lib.figure(val.get('val_map3', float('nan')))}{lwlrap}, "
          f"accuracy "
          f"{val.get('val_accuracy', float('nan')):.3f} -> "
          f"{summary['best_weights']}")
