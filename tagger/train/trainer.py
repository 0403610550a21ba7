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

import dataclasses
import json
import time
from typing import Optional

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from tagger import distribute
from tagger import errors
from tagger import fileio
from tagger import settings
from tagger.audio import params as params_lib
from tagger.input import data_service
from tagger.model import model_dir as model_dir_lib
from tagger.model import networks as model_lib
from tagger.shards import data_info
from tagger.train import fold_data
from tagger.train import preemption
from tagger.train import recorder as recorder_lib
from tagger.train import run_dir as run_dir_lib
from tagger.train import run_state
from tagger.train import schedules
from tagger.train import steps as steps_lib
from tagger.train import validation as validation_lib
from tagger.train import warm_start

PHASES = schedules.PHASES


class TrainError(errors.UserError):
  """A run that cannot start or go on; the message says why."""


# ---------------------------------------------------------------------------
# Configuration.


def _config_json(config) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def same_config(saved: dict, config) -> bool:
  """Is the config of a model dir's config.json (parsed) the run's?
  Settings that a newer tagger added, at their default values, do not
  count: a run started before an upgrade resumes."""
  saved = json.loads(json.dumps(saved))   # a copy
  current = json.loads(_config_json(config))
  defaults = json.loads(_config_json(settings.default_config()))

  def fill(into, new, default):
    for key, value in new.items():
      if key not in into and isinstance(default, dict) and \
          default.get(key) == value:
        into[key] = value
      elif isinstance(value, dict) and isinstance(into.get(key), dict):
        fill(into[key], value, (default or {}).get(key)
             if isinstance(default, dict) else None)
  fill(saved, current, defaults)
  return saved == current


def class_weights(info: data_info.DataInfo) -> np.ndarray:
  """[C] weights proportional to 1 / class count, normalised so that the
  mean weight over the training clips is 1."""
  counts = info.class_counts().astype(np.float64)
  weights = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
  return (weights * counts.sum() / max((weights * counts).sum(), 1e-12)
          ).astype(np.float32)


# ---------------------------------------------------------------------------
# The fold's run.


class FoldRun:
  """One fold: the loop over phases and epochs. Its collaborators: the
  data (`FoldData`: shards, folds, datasets), the network and optimizer,
  the compiled `Steps`, the `Validation`, the `Phases` (LR and lengths),
  the `RunDir` it writes and the `Recorder` that shows it. `prepare(epoch)`
  builds everything in order; `train()` runs (or resumes) to the end."""

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
    validation_lib.check_select_best(config.select_best)
    try:
      self.data = fold_data.FoldData(config, data_dir, fold, strategy)
    except errors.UserError as e:
      raise TrainError(str(e)) from e
    self.info = self.data.info
    self.stage2 = int(config.stage) == 2
    self.architecture = {**settings.architecture(config),
                         "multi_label": self.data.multi_label}
    self._check_backbone()
    self.replicas = strategy.num_replicas_in_sync
    self.phases = schedules.Phases(settings.schedule_config(config),
                                   self.data.steps_per_epoch)
    self.steps = None
    self.service_account = None

  @property
  def steps_per_epoch(self) -> int:
    return self.data.steps_per_epoch

  @property
  def traces(self) -> dict:
    return self.steps.traces if self.steps else {"train": 0, "eval": 0}

  def _check_backbone(self) -> None:
    try:
      model_lib.check_backbone(
          self.model_config.backbone, self.data.shortest_length,
          params_lib.preset_name(params_lib.FeatureParams.from_dict(
              self.info.manifest.feature_params)))
    except model_lib.ModelError as e:
      raise TrainError(str(e)) from e

  # -- building ----------------------------------------------------------------

  def prepare(self, start_epoch: int) -> None:
    """The network and optimizer, the datasets from start_epoch, and the
    compiled steps: what both training and a rate measurement need."""
    self.build()
    self.datasets(start_epoch)
    self.compile_steps()

  def build(self):
    cfg = self.model_config
    with self.strategy.scope():
      self.model = model_lib.build_model(
          model_lib.Architecture(
              self.info.num_classes, self.info.pca_dim if self.stage2 else 0,
              self.info.num_mels, **self.architecture),
          model_lib.TrainOptions(
              cfg.backbone_weights, cfg.bn_momentum, cfg.dropout,
              cfg.pca_head_l2, cfg.freeze_backbone, cfg.freeze_backbone_bn,
              cfg.freeze_backbone_until))
      optimizer = keras.optimizers.Adam(learning_rate=1e-4)
      if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      optimizer.build(self.model.trainable_variables)
      self.optimizer = optimizer
      # 1.0 while the stem and backbone are frozen (model.freeze_epochs).
      self.frozen = tf.Variable(0.0, trainable=False, name="frozen")
    counts = model_lib.parameter_counts(self.model)
    logging.info("model %s: %d parameters (%d trainable)", self.model.name,
                 counts["total"], counts["trainable"])

  def init_from(self) -> list:
    """Layers copied from config.model.init_from (warm_start)."""
    if not self.model_config.init_from:
      return []
    try:
      return warm_start.copy_weights(self.model, self.model_config.init_from,
                                     self.fold, self.info, self.model_config)
    except errors.UserError as e:
      raise TrainError(str(e)) from e

  def datasets(self, start_epoch: int):
    self.train_data, self.eval_data = self.data.datasets(start_epoch)

  def loss(self) -> steps_lib.WeightedLoss:
    return steps_lib.WeightedLoss(
        class_weights=(class_weights(self.info) if self.config.class_weights
                       else np.ones(self.info.num_classes, np.float32)),
        source_weights=np.array(settings.source_weights(
            self.config, self.info.sources), np.float32),
        verified_weight=float(self.config.verified_weight),
        global_batch=self.data.input.batch_size,
        multi_label=self.data.multi_label)

  def compile_steps(self):
    prepare = steps_lib.Prepare(self.data.spec, self.data.augment,
                                self.data.input.placement == "device",
                                self.stage2)
    self.steps = steps_lib.Steps(
        self.model, self.optimizer, self.strategy, prepare, self.loss(),
        freeze=self.frozen if self.model_config.freeze_epochs > 0 else None,
        jit_compile=bool(self.config.jit_compile))
    self.steps.compile_train(self.train_data.element_spec)
    self.validation = None
    if self.eval_data is not None:
      self.steps.compile_eval(self.eval_data.element_spec,
                              self.info.num_classes)
      self.validation = validation_lib.Validation(
          self.eval_data, self.steps.eval_step,
          self.data.num_validation_clips, self.data.eval_lengths,
          self.info.num_classes, self.data.multi_label)

  def predict_validation(self):
    """(probabilities [lengths, N, C], labels [N] or truth [N, C])."""
    return self.validation.predict()

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
    self.build()
    state, copied = self._start_or_resume()
    if state.done:
      logging.info("%s is finished; nothing to do", self.model_dir)
      return fileio.read_json(self.run_dir.file(model_dir_lib.SUMMARY))
    self.datasets(state.epoch)
    self.compile_steps()
    if state.checkpoint and state.epoch_step:
      stacked = run_state.replica_statistics(self.run_dir.checkpoint_path(
          state))
      if stacked and stacked[0].shape[0] == self.replicas:
        self.steps.set_local_statistics([tf.constant(v) for v in stacked])
    iterator = iter(self.train_data)
    for _ in range(state.epoch_step):  # resumed inside an epoch
      next(iterator)   # batches carry their own (epoch, step) seeds
    self.service_account = (data_service.BatchAccount(
        self.steps_per_epoch * self.replicas // self.data.num_pipelines,
        state.epoch + (1 if state.epoch_step else 0),
        self.data.input.data_service, self.data.input.lost_batches_after)
                            if self.data.input.data_service else None)
    logging.info("%s, %d steps of %d per epoch, validation at lengths %s; "
                 "XLA %s, input lengths in steps of %d frames",
                 distribute.describe(self.strategy), self.steps_per_epoch,
                 self.data.input.batch_size, list(self.data.eval_lengths),
                 "on" if self.config.jit_compile else "off",
                 self.data.input.length_quantum)
    with preemption.StopSignals() as stop:
      while state.phase < len(PHASES):
        self._run_phase_epoch(state, iterator, stop)
    return self.finish(state, copied)

  def _start_or_resume(self):
    """(state, layers copied by init_from): a new run writes its config,
    data description and state; a resumed one checks they are this run's
    and restores its checkpoint."""
    config_path = self.run_dir.file(model_dir_lib.CONFIG)
    if not self.run_dir.exists(model_dir_lib.STATE):
      copied = self.init_from()
      state = run_state.RunState()
      if self.chief:
        fileio.atomic_write_text(config_path, _config_json(self.config))
        self.run_dir.write_data_description(
            model_dir_lib.data_description(
                self.info, int(self.config.stage), self.data.eval_lengths,
                self.data.augment.pad_mode, self.architecture),
            self.info.data_dir)
        self.run_dir.save_state(state)
      return state, copied
    if fileio.exists(config_path) and not same_config(
        fileio.read_json(config_path), self.config):
      raise TrainError(
          f"{self.model_dir} holds a run with another config (see "
          f"{config_path}); use a new --model_dir to start over")
    state = self.run_dir.read_state()
    try:
      self.run_dir.check_same_data(self.info, self.stage2)
    except errors.UserError as e:
      raise TrainError(str(e)) from e
    if not state.done:
      if state.checkpoint:
        run_state.restore_checkpoint(self.run_dir.checkpoint_path(state),
                                     self.model, self.optimizer)
      logging.info("resuming %s: phase %s, epoch %d", self.model_dir,
                   PHASES[state.phase], state.epoch)
    return state, []

  def _run_phase_epoch(self, state: run_state.RunState, iterator,
                       stop: preemption.StopSignals) -> None:
    """One epoch of the current phase (starting the phase first), its
    record and checkpoint; moves to the next phase when this one ends."""
    if self._phase_length(state.phase) <= 0:
      state.phase, state.phase_epoch = state.phase + 1, 0
      return
    if state.phase_epoch == 0 and state.epoch_step == 0:
      if state.phase > 0:
        self._start_phase(state)
      self._record_batch_images(state.epoch)
      if self.config.log_pairing:
        self.write_pairing(state.epoch)
    try:
      row = self.run_epoch(state, iterator, stop)
    except tf.errors.DataLossError as e:
      raise data_info.explain_data_loss(
          self.info.data_dir, self.info.manifest, e) from e
    except tf.errors.NotFoundError as e:
      if not self.config.input.data_service:
        raise
      raise data_service.explain_lost_job(self.config.input.data_service,
                                          e) from e
    self.recorder.epoch(row, row["epoch"])
    if self._end_epoch(state, row):
      state.phase, state.phase_epoch = state.phase + 1, 0
    elif self.config.log_pairing:
      self.write_pairing(state.epoch)
    self._checkpoint(state)

  def _phase_lr(self, state: run_state.RunState, step_in_epoch: int) -> float:
    return self.phases.lr(state.phase, state.phase_epoch, step_in_epoch,
                          state.plateau)

  def _phase_length(self, phase: int) -> int:
    return self.phases.length(phase)

  def _start_phase(self, state: run_state.RunState):
    """From the best weights with a fresh optimizer (phases 1 and 2)."""
    self._load_best()
    run_state.reset_optimizer(self.optimizer)
    state.plateau = self.phases.plateau(state.phase)
    logging.info("phase %s: from the best weights, LR %g",
                 PHASES[state.phase], state.plateau["lr"])

  def run_epoch(self, state: run_state.RunState, iterator,
                stop: Optional[preemption.StopSignals] = None) -> dict:
    """The epoch's remaining steps (from state.epoch_step), then its
    validation; a checkpoint inside it every checkpoint_every_steps, and
    on a stop signal a checkpoint and Preempted."""
    started = time.perf_counter()
    freeze = self.model_config.freeze_epochs
    if freeze:
      self.frozen.assign(1.0 if state.epoch < freeze else 0.0)
    losses = list(state.epoch_losses)   # floats of steps before a resume
    every = int(self.config.checkpoint_every_steps)
    data_epochs = []
    for j in range(state.epoch_step, self.steps_per_epoch):
      lr = self._phase_lr(state, j)
      loss, epochs = self.steps.train_step(next(iterator),
                                           tf.constant(lr, tf.float32))
      losses.append(loss)
      data_epochs.append(epochs)
      state.step += 1
      last = j + 1 == self.steps_per_epoch
      signalled = self._agree_stop(stop)
      if not last and (signalled or (every and state.step % every == 0)):
        state.epoch_step = j + 1
        state.epoch_losses = [float(np.asarray(l)) for l in losses]
        state.epoch_seconds += time.perf_counter() - started
        started = time.perf_counter()
        self._checkpoint(state)
        if signalled:
          raise preemption.Preempted(
              f"stopped on {stop.requested} in {self.model_dir} at phase "
              f"{PHASES[state.phase]}, epoch {state.epoch} step "
              f"{j + 1}/{self.steps_per_epoch}: checkpoint written; run "
              "the same command again to resume there")
    train_loss = float(np.mean([float(np.asarray(l)) for l in losses]))
    if self.service_account is not None:   # batches lost with a worker?
      for epochs in data_epochs:
        self.service_account.add(np.asarray(epochs))
      self.service_account.check()
    self.steps.sync_statistics()
    train_time = time.perf_counter() - started + state.epoch_seconds
    state.epoch_step, state.epoch_losses, state.epoch_seconds = 0, [], 0.0
    row = {"phase": PHASES[state.phase], "epoch": state.epoch,
           "lr": float(f"{self._phase_lr(state, self.steps_per_epoch - 1):.6g}"),
           "train_loss": round(train_loss, 6),
           "examples_per_sec": round(self.steps_per_epoch *
                                     self.data.input.batch_size /
                                     train_time, 1)}
    if self.validation is not None:
      result = self.validation.evaluate()
      row.update({k: None if v is None else round(v, 6)
                  for k, v in result.items() if not k.startswith("_")})
    row["seconds"] = round(time.perf_counter() - started, 2)
    if not np.isfinite(train_loss):
      raise TrainError(steps_lib.non_finite_message(
          self.model_dir, state, losses, self.optimizer,
          lambda step: self._phase_lr(state, step)))
    return row

  def _end_epoch(self, state: run_state.RunState, row: dict) -> bool:
    """Best weights, plateau counters, history; True when the phase
    ends."""
    try:
      monitored = self._agree(validation_lib.monitored(
          row, self.config.select_best))
    except errors.UserError as e:
      raise TrainError(str(e)) from e
    if monitored < state.best_val_loss:
      state.best_val_loss = monitored
      state.best = {k: row.get(k) for k in ("phase", "epoch", "val_loss",
                                            "val_accuracy", "val_map3",
                                            "val_lwlrap", "train_loss")
                    if k in row or k != "val_lwlrap"}
      self.best_snapshot = self.model.get_weights()  # on every worker
      self.run_dir.save_best(self.model)
    stop = False
    if state.phase > 0:
      plateau = schedules.Plateau(**state.plateau)
      stop = plateau.update(monitored)
      state.plateau = dataclasses.asdict(plateau)
    state.history.append(row)
    state.epoch += 1
    state.phase_epoch += 1
    logging.info(
        "%s epoch %d/%d (%d): loss %.4f%s, %.0f examples/s, %.1f s",
        row["phase"], state.phase_epoch, self._phase_length(state.phase),
        row["epoch"], row["train_loss"],
        "" if "val_loss" not in row else
        f", val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.3f} "
        f"MAP@3 {_figure(row.get('val_map3'))}" + (
            f" lwlrap {row['val_lwlrap']:.3f}" if "val_lwlrap" in row
            else ""), row["examples_per_sec"],
        row["seconds"])
    return stop or state.phase_epoch >= self._phase_length(state.phase)

  # -- several replicas and workers --------------------------------------------

  def _agree_stop(self, stop: Optional[preemption.StopSignals]) -> bool:
    """Whether a stop signal arrived (on any worker: all stop at the same
    step)."""
    requested = float(bool(stop and stop.requested))
    return distribute.mean_over_workers(self.strategy, requested) > 0

  def _agree(self, value: float) -> float:
    return distribute.mean_over_workers(self.strategy, value)

  def _replica_statistics(self, state: run_state.RunState):
    """Inside an epoch on several replicas of one worker: each statistic's
    per-replica copies [R, ...] (a resumed run then continues exactly);
    with several workers, their mean (the chief sees only its own)."""
    if not state.epoch_step or self.replicas == 1:
      return None
    if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
      self.steps.sync_statistics()
      return None
    return [np.stack([np.asarray(t) for t in
                      self.strategy.experimental_local_results(values)])
            for values in self.steps.local_statistics()]

  # -- what the run writes -----------------------------------------------------

  def _checkpoint(self, state: run_state.RunState):
    statistics = self._replica_statistics(state)   # every worker: collective
    self.run_dir.save_checkpoint(state, self.model, self.optimizer,
                                 statistics)

  def _load_best(self):
    """The best weights: from memory (identical on every worker), or after
    a restart from the best file."""
    if getattr(self, "best_snapshot", None) is not None:
      self.model.set_weights(self.best_snapshot)
      return
    self.run_dir.load_best(self.model)

  def _record_batch_images(self, epoch: int):
    count = int(self.config.tensorboard_images)
    if count and self.chief:
      self.recorder.batch_images(self.data.augmented_sample(epoch, count),
                                 epoch)

  def write_pairing(self, epoch: int):
    self.run_dir.write_pairing(epoch, *self.data.pairing_table(epoch))

  def finish(self, state: run_state.RunState, copied) -> dict:
    self._load_best()
    summary = self._summary(state, copied)
    if self.validation is not None:
      result = self.validation.evaluate()  # every worker: runs on all
      if self.chief:
        validation = {k: None if v is None else round(v, 6)
                      for k, v in result.items() if not k.startswith("_")}
        title = f"fold {self.fold}, stage {self.config.stage}: best model, "
        validation.update(self.recorder.best_model(
            result, self.info.labels, title, self.data.multi_label,
            state.epoch))
        summary["best_model_validation"] = validation
    logging.info("final weights fingerprint %s (task %s)",
                 run_state.weights_fingerprint(self.model),
                 distribute.task_name())
    if self.chief:
      self.recorder.flush()
      fileio.write_json(self.run_dir.file(model_dir_lib.SUMMARY), summary)
      state.done = True
      self.run_dir.save_state(state)
    return summary

  def _summary(self, state: run_state.RunState, copied) -> dict:
    summary = {"fold": str(self.fold), "stage": int(self.config.stage),
               "best": state.best, "epochs": state.epoch,
               "steps": state.step,
               "best_weights": self.run_dir.file(model_dir_lib.BEST),
               "parameters": model_lib.parameter_counts(self.model),
               "strategy": distribute.describe(self.strategy),
               "precision": keras.mixed_precision.global_policy().name,
               "precision_reason": distribute.precision_reason(),
               "compile": {"jit_compile": bool(self.config.jit_compile),
                           "length_quantum": int(
                               self.data.input.length_quantum),
                           "train_traces": int(self.traces["train"])},
               "traces": dict(self.traces),
               "input": (f"tf.data service at {self.data.input.data_service}"
                         if self.data.input.data_service else "local")}
    if copied:
      summary["initialised_from"] = {"path": self.model_config.init_from,
                                     "layers": copied}
    return summary

  def measure_train_rate(self, steps: int, warmup: int = 3,
                         lr: float = 1e-4) -> float:
    """Training examples/s over `steps` steps after `warmup` (which pay for
    tracing), from a freshly built model at epoch 0; writes nothing."""
    self.prepare(0)
    iterator = iter(self.train_data)
    lr = tf.constant(lr, tf.float32)
    for _ in range(warmup):
      self.steps.train_step(next(iterator), lr)[0].numpy()
    start = time.perf_counter()
    for _ in range(steps):
      loss, _ = self.steps.train_step(next(iterator), lr)
    loss.numpy()
    return steps * self.data.input.batch_size / (time.perf_counter() -
                                                 start)


# ---------------------------------------------------------------------------
# Entry point for tools/train.


def setup(config, strategy_name: str = "", precision_name: str = ""):
  """Strategy first (multi-worker must start before other TF work), then
  precision, seeds and determinism."""
  strategy = distribute.make_strategy(strategy_name or config.strategy)
  distribute.set_precision(*distribute.choose_precision(
      precision_name or config.precision))
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  return strategy


def train(config: ml_collections.ConfigDict, data_dir: str, model_dir: str,
          strategy: tf.distribute.Strategy) -> dict:
  """Trains config.fold ('k'; 'all': every fold in turn into
  model_dir/fold{k}; 'none': every clip, no validation)."""
  fold = str(config.fold)
  if fold == "all":
    info = data_info.load_data_info(data_dir)
    if not info.folds:
      raise TrainError(f"{data_dir} has no fold to validate (every class has "
                       "one clip); train on everything with --config.fold="
                       "none")
    results = {}
    for k in info.folds:
      fold_config = ml_collections.ConfigDict(config.to_dict())
      fold_config.fold = str(k)
      results[str(k)] = train(fold_config, data_dir,
                              fileio.join(model_dir, f"fold{k}"), strategy)
    return results
  keras.utils.set_random_seed(int(config.seed))  # initial weights
  # ...but no TF global seed: tf.data ops take tensor seeds (per epoch),
  # which a global seed breaks; everything random here is seeded itself.
  tf.random.set_seed(None)
  run = FoldRun(config, data_dir, model_dir, strategy,
                None if fold == "none" else int(fold))
  return run.train()


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
          f"{_figure(val.get('val_map3', float('nan')))}{lwlrap}, accuracy "
          f"{val.get('val_accuracy', float('nan')):.3f} -> "
          f"{summary['best_weights']}")


def _figure(value) -> str:
  """A metric for a log line: 3 places, or 'n/a' when there is none."""
  return "n/a" if value is None else f"{value:.3f}"
