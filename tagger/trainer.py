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

Each replica's step takes its slice of a host batch, runs the input
pipeline's augment_batch on its device (placement 'device'), and applies
gradients of the loss summed over its examples divided by the global batch.
"""

import csv
import dataclasses
import io
import json
import os
import time
from typing import Optional

import keras
import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from tagger import augment
from tagger import batches
from tagger import data_info
from tagger import data_service
from tagger import distribute
from tagger import errors
from tagger import fileio
from tagger import input_pipeline as ip
from tagger import metrics
from tagger import model as model_lib
from tagger import model_dir as model_dir_lib
from tagger import params as params_lib
from tagger import plots
from tagger import preemption
from tagger import records
from tagger import run_state
from tagger import schedules
from tagger import settings

PHASES = ("cyclic", "fine_tune_1", "fine_tune_2")


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


def binary_cross_entropy(target: tf.Tensor, probs: tf.Tensor) -> tf.Tensor:
  """[b] mean over classes of the binary cross-entropy of sigmoid outputs
  probs [b, C] (float32, floored at 1e-7 from 0 and 1) against (mixed)
  multi-hot targets [b, C]: the multi-label loss."""
  p = tf.clip_by_value(tf.cast(probs, tf.float32), 1e-7, 1.0 - 1e-7)
  return -tf.reduce_mean(target * tf.math.log(p) +
                         (1.0 - target) * tf.math.log(1.0 - p), axis=1)


# ---------------------------------------------------------------------------
# The fold's run.


class FoldRun:
  """One fold: datasets, model, compiled steps, phases."""

  def __init__(self, config, data_dir: str, model_dir: str,
               strategy: tf.distribute.Strategy, fold):
    self.config = config
    self.model_dir = model_dir
    self.strategy = strategy
    self.chief = distribute.is_chief(strategy)
    self.info = data_info.load_data_info(
        data_dir, verify=bool(config.get("verify_shards", True)))
    self.spec = self.info.batch_spec
    self.multi_label = self.info.multi_label
    self.fold = fold
    self.train_folds = data_info.select_folds(self.info, fold, "train")
    self.val_folds = data_info.select_folds(self.info, fold, "validation")
    self.input = settings.input_config(config)
    if self.input.data_service:
      data_service.check_reachable(self.input.data_service)
      logging.info("training input: the tf.data service at %s",
                   self.input.data_service)
    # The sources each side reads (e.g. train on curated + noisy, validate
    # on curated only), and each source's loss weight.
    self.train_info = self.info.only_sources(
        settings.names(self.input.train_sources))
    self.val_info = self.info.only_sources(
        settings.names(self.input.val_sources))
    self.source_weights = settings.source_weights(config, self.info.sources)
    self.architecture = {**settings.architecture(config),
                         "multi_label": self.multi_label}
    self.augment = settings.augment_config(config)
    try:
      augment.check_image_ops(self.augment.image_ops)
      augment.check_recording_ops(self.augment.recording_ops)
    except ValueError as e:
      raise TrainError(f"config.augment: {e}") from e
    self.stage2 = int(config.stage) == 2
    self.eval_lengths = data_info.eval_lengths(self.info, self.input)
    shortest = min(self.eval_lengths + (data_info.length_range(
        self.info, self.input)[0],))
    backbone = settings.architecture(config)["backbone"]
    try:
      shortest_allowed = model_lib.min_frames(backbone)
    except model_lib.ModelError as e:
      raise TrainError(f"config.model.backbone: {e}") from e
    self._check_feature_set(backbone)
    if shortest < shortest_allowed:
      raise TrainError(
          f"input length {shortest} is below {shortest_allowed} frames, "
          f"the shortest {backbone} can pool; raise config.input."
          "length_range / eval_lengths")
    self.replicas = strategy.num_replicas_in_sync
    self.num_pipelines = getattr(strategy.extended, "_num_workers", 1) or 1
    self.steps_per_epoch = ip.steps_per_epoch(
        self.train_info, self.train_folds, self.input, self.replicas,
        self.num_pipelines)
    if config.max_steps_per_epoch:
      self.steps_per_epoch = min(self.steps_per_epoch,
                                 int(config.max_steps_per_epoch))
    self.weights = (class_weights(self.info) if config.class_weights
                    else np.ones(self.info.num_classes, np.float32))
    self.traces = {"train": 0, "eval": 0}

  def _file(self, *names: str) -> str:
    """A path in this run's model dir (model_dir_lib names its files)."""
    return fileio.join(self.model_dir, *names)

  # -- building ------------------------------------------------------------


  def _check_feature_set(self, backbone: str) -> None:
    """A backbone that hears one front-end only (a pretrained one) refuses
    shards made with another."""
    needed = model_lib.backbone_spec(backbone).features
    have = params_lib.preset_name(params_lib.FeatureParams.from_dict(
        self.info.manifest["feature_params"]))
    if needed and have != needed:
      raise TrainError(
          f"config.model.backbone={backbone} needs shards made with "
          f"make_tfrecords --features={needed}; these have the "
          f"{have or 'custom'} features")
  def build(self):
    cfg = self.config.model
    with self.strategy.scope():
      self.model = model_lib.build_model(
          self.info.num_classes, self.info.pca_dim if self.stage2 else 0,
          num_mels=self.info.num_mels,
          backbone_weights=cfg.backbone_weights,
          bn_momentum=cfg.bn_momentum,
          dropout=float(cfg.get("dropout", 0.0)),
          pca_head_l2=float(cfg.get("pca_head_l2", 0.0)),
          freeze_backbone=bool(cfg.get("freeze_backbone", False)),
          **self.architecture)
      optimizer = keras.optimizers.Adam(learning_rate=1e-4)
      if keras.mixed_precision.global_policy().name == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
      optimizer.build(self.model.trainable_variables)
      self.optimizer = optimizer
      self.class_weight_vector = tf.constant(self.weights)
      self.source_weight_vector = tf.constant(self.source_weights,
                                              tf.float32)
      # 1.0 while the stem and backbone are frozen (model.freeze_epochs).
      self.frozen = tf.Variable(0.0, trainable=False, name="frozen")
    counts = model_lib.parameter_counts(self.model)
    logging.info("model %s: %d parameters (%d trainable)", self.model.name,
                 counts["total"], counts["trainable"])

  def init_from(self) -> list:
    """Layers shared with another model dir: stage 2 from stage 1 of the
    same fold, or fine-tuning from a model trained on other labels (then
    every layer but the head: the stem, backbone and dense layers)."""
    source = self.config.model.init_from
    if not source:
      return []
    source = source.format(fold=self.fold)
    path = (source if source.endswith(".h5") else
            fileio.join(source, model_dir_lib.BEST))
    if not fileio.exists(path):
      raise TrainError(f"init_from: {path} not found (train stage 1 of fold "
                       f"{self.fold} first, or fix --config.model.init_from)")
    # The source network as its model dir recorded it (a bare .h5: a
    # stage-1 network of this config's backbone and this data's labels).
    data_path = fileio.join(os.path.dirname(path), model_dir_lib.DATA)
    if fileio.exists(data_path):
      data = model_dir_lib.read_data(os.path.dirname(path))
      if data.num_mels != self.info.num_mels:
        raise TrainError(f"init_from: {path} was trained on {data.num_mels} "
                         f"mel bands, these shards have {self.info.num_mels}")
      source_model = model_dir_lib.build(data)
      same_labels = list(data.labels) == list(self.info.labels) and \
          data.multi_label == self.multi_label
    else:
      built = settings.architecture(self.config)
      source_model = model_lib.build_model(
          self.info.num_classes, 0, num_mels=self.info.num_mels,
          backbone=built["backbone"], alpha=built["alpha"],
          multi_label=self.multi_label)
      same_labels = True
    model_dir_lib.load_weights(source_model, path)
    copied = model_lib.transfer_weights(
        source_model, self.model,
        skip=() if same_labels else model_lib.HEAD_LAYERS)
    logging.info("initialised %s from %s%s: %s", self.model.name, path,
                 "" if same_labels else " (other labels: a new head)",
                 ", ".join(copied))
    return copied

  def datasets(self, start_epoch: int):
    def train_fn(context):
      return ip.train_dataset(
          self.train_info, self.train_folds, self.input, self.augment,
          start_epoch=start_epoch, input_context=context,
          max_steps_per_epoch=int(self.config.max_steps_per_epoch))
    self.train_data = self.strategy.distribute_datasets_from_function(
        train_fn)
    self.eval_data = None
    if self.val_folds:
      # Evaluation runs on every replica (and worker); every row carries
      # its position, so each clip counts once wherever it ran.
      def eval_fn(context):
        return ip.eval_dataset(self.val_info, self.val_folds, self.input,
                               self.eval_lengths,
                               batch_size=int(self.config.eval_batch_size),
                               seed=self.config.seed, input_context=context)
      self.eval_data = self.strategy.distribute_datasets_from_function(
          eval_fn)

  def compile_steps(self):
    model, optimizer, strategy = self.model, self.optimizer, self.strategy
    global_batch = float(self.input.batch_size)
    device_augment = self.input.placement == "device"
    verified_weight = float(self.config.verified_weight)

    multi_label = self.multi_label
    sources = len(self.source_weights) > 1
    scaled_on_replicas = self.replicas > 1 and isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer)
    frozen = (model_lib.feature_variables(model, model.trainable_variables)
              if int(self.config.model.get("freeze_epochs", 0)) > 0 else None)

    def learn(batch):
      """Loss, gradients and the update of one replica's batch."""
      inputs = model_lib.model_inputs(batch, self.stage2)
      target = batch[batches.TARGET]
      # target: [b, C] (mixed) one-hot, or multi-hot for multi-label data
      weight = tf.linalg.matvec(target, self.class_weight_vector)
      if multi_label:  # the mean of the clip's labels' weights
        weight /= tf.maximum(tf.reduce_sum(target, axis=1), 1e-6)
      weight *= 1.0 + (verified_weight - 1.0) * batch[batches.WEIGHT]
      if sources:
        weight *= tf.linalg.matvec(batch[records.SOURCE],
                                   self.source_weight_vector)
      with tf.GradientTape() as tape:
        probs = model(inputs, training=True)
        if multi_label:
          loss_per_example = binary_cross_entropy(target, probs)
        else:
          loss_per_example = keras.losses.categorical_crossentropy(
              target, probs)
        loss = tf.reduce_sum(loss_per_example * weight) / global_batch
        if model.losses:  # weight penalties (model.pca_head_l2)
          loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        scaled = optimizer.scale_loss(loss)
      grads = tape.gradient(scaled, model.trainable_variables)
      if frozen is not None:  # fine-tuning: no update of stem and backbone
        # tf.where, not a product: an overflowed (inf) gradient under
        # mixed_float16 times 0 would be NaN.
        grads = [tf.where(self.frozen > 0, tf.zeros_like(g), g)
                 if f and g is not None else g
                 for g, f in zip(grads, frozen)]
      if scaled_on_replicas:  # one overflow verdict for all replicas
        grads = distribute.finite_everywhere(grads)
      optimizer.apply(grads, model.trainable_variables)
      return loss

    if self.config.get("jit_compile", False):
      # XLA for each replica's forward, backward and update (not the
      # augmentation: XLA has no stateless gamma for mixup's Beta): one
      # compilation per distinct input length.
      learn = tf.function(learn, jit_compile=True)

    def replica_step(batch):
      if device_augment:
        batch = batches.augment_batch(batch, self.spec, self.augment)
      return learn(batch)

    @tf.function(input_signature=[self.train_data.element_spec,
                                  tf.TensorSpec([], tf.float32)])
    def train_step(batch, lr):
      self.traces["train"] += 1  # Python: runs once per trace
      optimizer.learning_rate = lr
      losses = strategy.run(replica_step, args=(batch,))
      return strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)

    self.train_step = train_step

    # Keras 3 BatchNormalization keeps one copy of its moving statistics per
    # replica, each updated from that replica's slices only (aggregation
    # NONE): the copies drift apart, and a checkpoint would keep replica 0's
    # while evaluation on the replicas used all of them. Every epoch ends
    # with each statistic set to its mean over the replicas (and workers).
    statistics = [v.value for v in model.non_trainable_variables]

    @tf.function
    def sync_statistics():
      local = strategy.run(lambda: [tf.identity(v) for v in statistics])
      for variable, value in zip(statistics, local):
        variable.assign(strategy.reduce(tf.distribute.ReduceOp.MEAN, value,
                                        axis=None))

    self.sync_statistics = (sync_statistics if self.replicas > 1
                            else lambda: None)

    @tf.function
    def local_statistics():
      return strategy.run(lambda: [tf.identity(v) for v in statistics])

    @tf.function
    def set_local_statistics(stacked):
      def assign():
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        for variable, values in zip(statistics, stacked):
          variable.assign(tf.gather(values, replica))
      strategy.run(assign)

    self.local_statistics = local_statistics
    self.set_local_statistics = set_local_statistics
    if self.eval_data is not None:
      def replica_eval(batch):
        if device_augment:
          batch = batches.prepare_eval_batch(batch, self.spec,
                                        self.augment.pad_mode)
        probs = model(model_lib.model_inputs(batch, self.stage2),
                      training=False)
        # probs: [b, C] float32 (the head is float32 under mixed precision)
        if multi_label:
          truth = batch[batches.TARGET]  # [b, C] multi-hot
        else:
          truth = tf.argmax(batch[batches.TARGET], axis=1)[:, None]
        # One gather (several in one function can pair up differently on
        # different devices): [b, C + T + 1] = probs, truth, row.
        return tf.concat([tf.cast(probs, tf.float64),
                          tf.cast(truth, tf.float64),
                          tf.cast(batch[batches.ROW], tf.float64)[:, None]], 1)

      classes = self.info.num_classes

      @tf.function(input_signature=[self.eval_data.element_spec])
      def eval_step(batch):
        self.traces["eval"] += 1
        packed = strategy.gather(strategy.run(replica_eval, args=(batch,)),
                                 axis=0)
        return (tf.cast(packed[:, :classes], tf.float32),
                tf.cast(packed[:, classes:-1], tf.int64),
                tf.cast(packed[:, -1], tf.int64))
      self.eval_step = eval_step

  # -- evaluation ------------------------------------------------------------

  def predict_validation(self):
    """(probabilities [lengths, N, C], labels [N] or, multi-label, truth
    [N, C]) of the validation clips, predicted on every replica (and
    worker), placed by each row's position. Every clip must come back
    exactly once per length."""
    n = self.val_info.num_records(self.val_folds)
    total = len(self.eval_lengths) * n
    classes = self.info.num_classes
    probs = np.zeros((total, classes), np.float32)
    labels = np.full((total, classes if self.multi_label else 1), -1,
                     np.int64)
    seen = np.zeros(total, np.int64)
    for batch in self.eval_data:
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
    return probs.reshape(len(self.eval_lengths), n, -1), labels

  def evaluate(self) -> dict:
    probs, labels = self.predict_validation()
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

  # -- summaries ---------------------------------------------------------------

  def writer(self):
    if not hasattr(self, "_writer"):
      self._writer = (tf.summary.create_file_writer(
          self._file(model_dir_lib.TENSORBOARD)) if self.chief
                      else tf.summary.create_noop_writer())
    return self._writer

  def log_batch_images(self, epoch: int):
    count = int(self.config.tensorboard_images)
    if not count or not self.chief:
      return
    small = dataclasses.replace(self.input, batch_size=max(count, 2),
                                placement="device", pairing_block=64,
                                shuffle_buffer=64)
    batch = next(iter(ip.train_dataset(self.train_info, self.train_folds,
                                       small,
                                       self.augment, start_epoch=epoch,
                                       num_epochs=1)))
    images = batches.augment_batch(batch, self.spec,
                                   self.augment)[records.LOG_MEL]
    # images: [b, M, L, 1]; low frequencies at the bottom.
    with self.writer().as_default():
      tf.summary.image("augmented_log_mel", tf.reverse(images, [1])[:count],
                       step=epoch, max_outputs=count)

  def log_epoch(self, row: dict, epoch: int):
    with self.writer().as_default():
      for key in run_state.HISTORY_KEYS[2:]:
        if row.get(key) is not None:
          tf.summary.scalar(key, row[key], step=epoch)
    self.writer().flush()

  # -- the loop ------------------------------------------------------------

  def _save_state(self, state: run_state.RunState):
    if not self.chief:
      return
    fileio.atomic_write_text(self._file(model_dir_lib.STATE),
                             state.to_json())
    fileio.atomic_write_text(self._file(model_dir_lib.HISTORY),
                             run_state.history_csv(state.history))

  def _checkpoint(self, state: run_state.RunState):
    statistics = self._replica_statistics(state)   # every worker: collective
    if not self.chief:
      return
    name = f"epoch-{state.epoch:05d}" + (
        f"-step-{state.epoch_step:06d}" if state.epoch_step else "") + ".npz"
    path = self._file(model_dir_lib.CHECKPOINTS, name)
    fileio.makedirs(self._file(model_dir_lib.CHECKPOINTS))
    run_state.save_checkpoint(path, self.model, self.optimizer, statistics)
    previous = state.checkpoint
    state.checkpoint = name
    self._save_state(state)
    if previous and previous != name:
      old = self._file(model_dir_lib.CHECKPOINTS, previous)
      if fileio.exists(old):
        tf.io.gfile.remove(old)

  def _check_same_data(self) -> None:
    """A model dir resumed on other shards (another --data_dir) is one
    line, not a shape error deep in Keras."""
    if not fileio.exists(self._file(model_dir_lib.DATA)):
      return
    data = model_dir_lib.read_data(self.model_dir)
    ours = {"labels": list(self.info.labels), "num_mels": self.info.num_mels,
            "pca_dim": self.info.pca_dim if self.stage2 else data.pca_dim}
    theirs = data.data_dir or "see its data.json"
    for key, value in ours.items():
      if getattr(data, key) != value:
        raise TrainError(
            f"{self.model_dir} holds a run on other data ({key} differ from "
            f"{self.info.data_dir}'s; the run's data: {theirs}); resume it "
            "with its own --data_dir, or use a new --model_dir")

  def _replica_statistics(self, state: run_state.RunState):
    """Inside an epoch on several replicas of one worker: each statistic's
    per-replica copies [R, ...] (a resumed run then continues exactly);
    with several workers, their mean (the chief sees only its own)."""
    if not state.epoch_step or self.replicas == 1:
      return None
    if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
      self.sync_statistics()
      return None
    return [np.stack([np.asarray(t) for t in
                      self.strategy.experimental_local_results(values)])
            for values in self.local_statistics()]

  def _load_best(self):
    """The best weights: from memory (identical on every worker), or after
    a restart from the best file."""
    if getattr(self, "best_snapshot", None) is not None:
      self.model.set_weights(self.best_snapshot)
      return
    best = self._file(model_dir_lib.BEST)
    if fileio.exists(best):
      model_dir_lib.load_weights(self.model, best)

  def _phase_lr(self, state: run_state.RunState, step_in_epoch: int) -> float:
    sched = self.config.schedule
    if state.phase == 0:
      step_size = max(1, int(round(sched.cycle_step_epochs *
                                   self.steps_per_epoch)))
      return schedules.triangular_lr(
          state.phase_epoch * self.steps_per_epoch + step_in_epoch,
          step_size, sched.base_lr, sched.max_lr)
    return state.plateau["lr"]

  def _phase_length(self, phase: int) -> int:
    sched = self.config.schedule
    return int(sched.cyclic_epochs if phase == 0 else
               sched.fine_tune_max_epochs)

  def _start_phase(self, state: run_state.RunState):
    """From the best weights with a fresh optimizer (phases 1 and 2)."""
    sched = self.config.schedule
    self._load_best()
    run_state.reset_optimizer(self.optimizer)
    lr = float(sched.fine_tune_lrs[state.phase - 1])
    state.plateau = dataclasses.asdict(schedules.Plateau(
        lr=lr, factor=sched.plateau_factor,
        patience=sched.plateau_patience, min_delta=sched.plateau_min_delta,
        stop_patience=sched.early_stop_patience))
    logging.info("phase %s: from the best weights, LR %g",
                 PHASES[state.phase], lr)

  def run_epoch(self, state: run_state.RunState, iterator,
                stop: Optional[preemption.StopSignals] = None) -> dict:
    """The epoch's remaining steps (from state.epoch_step), then its
    validation; a checkpoint inside it every checkpoint_every_steps, and
    on a stop signal a checkpoint and Preempted."""
    started = time.perf_counter()
    freeze = int(self.config.model.get("freeze_epochs", 0))
    if freeze:
      self.frozen.assign(1.0 if state.epoch < freeze else 0.0)
    losses = list(state.epoch_losses)   # floats of steps before a resume
    every = int(self.config.get("checkpoint_every_steps", 0))
    for j in range(state.epoch_step, self.steps_per_epoch):
      lr = self._phase_lr(state, j)
      losses.append(self.train_step(next(iterator), tf.constant(lr,
                                                                tf.float32)))
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
    self.sync_statistics()
    train_time = time.perf_counter() - started + state.epoch_seconds
    state.epoch_step, state.epoch_losses, state.epoch_seconds = 0, [], 0.0
    row = {"phase": PHASES[state.phase], "epoch": state.epoch,
           "lr": float(f"{self._phase_lr(state, self.steps_per_epoch - 1):.6g}"),
           "train_loss": round(train_loss, 6),
           "examples_per_sec": round(self.steps_per_epoch *
                                     self.input.batch_size / train_time, 1)}
    if self.eval_data is not None:
      result = self.evaluate()
      row.update({k: None if v is None else round(v, 6)
                  for k, v in result.items() if not k.startswith("_")})
    row["seconds"] = round(time.perf_counter() - started, 2)
    if not np.isfinite(train_loss):
      raise TrainError(self._non_finite_message(state, losses, train_loss))
    return row

  def _non_finite_message(self, state: run_state.RunState, losses,
                          train_loss) -> str:
    """What is known when the loss stops being finite."""
    values = [float(l.numpy()) for l in losses]
    first = next(i for i, v in enumerate(values) if not np.isfinite(v))
    policy = keras.mixed_precision.global_policy().name
    scale = run_state.loss_scale(self.optimizer)
    text = (f"training loss became {train_loss} in {self.model_dir}: phase "
            f"{PHASES[state.phase]}, epoch {state.epoch}, first at step "
            f"{first + 1} of {len(values)} (the loss before it: "
            f"{values[first - 1] if first else 'none this epoch'}), LR "
            f"{self._phase_lr(state, first):g}, precision {policy}")
    if scale is not None:
      text += f", loss scale {scale:g}"
      if scale < 1:
        text += " (collapsed: the gradients overflow even unscaled)"
    return text + (". Try a lower LR (--config.schedule.max_lr / "
                   "fine_tune_lrs) or --precision=float32, then re-run to "
                   "resume from the last finished epoch")

  def _agree_stop(self, stop: Optional[preemption.StopSignals]) -> bool:
    """Whether a stop signal arrived (on any worker: all stop at the same
    step)."""
    requested = bool(stop and stop.requested)
    if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
      return self._agree(float(requested)) > 0
    return requested

  def _agree(self, value: float) -> float:
    """The mean of value over all workers: every worker then takes the same
    decisions (best, plateau, stop), so mirrored weights stay in step."""
    if not isinstance(self.strategy,
                      tf.distribute.MultiWorkerMirroredStrategy):
      return value
    per_replica = self.strategy.run(lambda: tf.constant(value, tf.float64))
    return float(self.strategy.reduce(tf.distribute.ReduceOp.MEAN,
                                      per_replica, axis=None))

  def _monitored(self, row: dict) -> float:
    """What picks the best weights and drives plateaus (lower is better):
    config.select_best of the validation, or the train loss without it."""
    select = self.config.get("select_best", "val_loss")
    if select not in ("val_loss", "val_map3", "val_lwlrap"):
      raise TrainError(f"config.select_best={select!r}: use val_loss, "
                       "val_map3 or (multi-label data) val_lwlrap")
    if "val_loss" not in row:
      return row["train_loss"]
    if select != "val_loss" and row.get(select) is None:
      raise TrainError(f"config.select_best={select!r}: this data gives no "
                       f"{select} (multi-label data without single-label "
                       "validation clips, or single-label data without "
                       "lwlrap); use val_loss")
    return -row[select] if select != "val_loss" else row["val_loss"]

  def _end_epoch(self, state: run_state.RunState, row: dict) -> bool:
    """Best weights, plateau counters, checkpoint; True when the phase
    ends."""
    monitored = self._agree(self._monitored(row))
    if monitored < state.best_val_loss:
      state.best_val_loss = monitored
      state.best = {k: row.get(k) for k in ("phase", "epoch", "val_loss",
                                            "val_accuracy", "val_map3",
                                            "val_lwlrap", "train_loss")
                    if k in row or k != "val_lwlrap"}
      self.best_snapshot = self.model.get_weights()  # on every worker
      if self.chief:
        model_dir_lib.save_weights(self.model, self._file(model_dir_lib.BEST))
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

  def measure_train_rate(self, steps: int, warmup: int = 3,
                         lr: float = 1e-4) -> float:
    """Training examples/s over `steps` steps after `warmup` (which pay for
    tracing), from a freshly built model at epoch 0; writes nothing."""
    self.build()
    self.datasets(0)
    self.compile_steps()
    iterator = iter(self.train_data)
    lr = tf.constant(lr, tf.float32)
    for _ in range(warmup):
      self.train_step(next(iterator), lr).numpy()
    start = time.perf_counter()
    for _ in range(steps):
      loss = self.train_step(next(iterator), lr)
    loss.numpy()
    return steps * self.input.batch_size / (time.perf_counter() - start)

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
    config_path = self._file(model_dir_lib.CONFIG)
    config_text = _config_json(self.config)
    state_path = self._file(model_dir_lib.STATE)
    self.build()
    copied = []
    if fileio.exists(state_path):
      if fileio.exists(config_path) and not same_config(
          fileio.read_json(config_path), self.config):
        raise TrainError(
            f"{self.model_dir} holds a run with another config (see "
            f"{config_path}); use a new --model_dir to start over")
      state = run_state.RunState.from_value(fileio.read_json(state_path))
      self._check_same_data()
      if state.done:
        logging.info("%s is finished; nothing to do", self.model_dir)
        return fileio.read_json(self._file(model_dir_lib.SUMMARY))
      if state.checkpoint:
        run_state.restore_checkpoint(
            self._file(model_dir_lib.CHECKPOINTS, state.checkpoint),
            self.model, self.optimizer)
      logging.info("resuming %s: phase %s, epoch %d", self.model_dir,
                   PHASES[state.phase], state.epoch)
    else:
      copied = self.init_from()
      state = run_state.RunState()
      if self.chief:
        fileio.atomic_write_text(config_path, config_text)
        self.write_data_description()
        self._save_state(state)
    self.datasets(state.epoch)
    self.compile_steps()
    if state.checkpoint and state.epoch_step:
      stacked = run_state.replica_statistics(self._file(
          model_dir_lib.CHECKPOINTS, state.checkpoint))
      if stacked and stacked[0].shape[0] == self.replicas:
        self.set_local_statistics([tf.constant(v) for v in stacked])
    iterator = iter(self.train_data)
    for _ in range(state.epoch_step):  # resumed inside an epoch
      next(iterator)   # batches carry their own (epoch, step) seeds
    logging.info("%s, %d steps of %d per epoch, validation at lengths %s; "
                 "XLA %s, input lengths in steps of %d frames",
                 distribute.describe(self.strategy), self.steps_per_epoch,
                 self.input.batch_size, list(self.eval_lengths),
                 "on" if self.config.get("jit_compile", False) else "off",
                 self.input.length_quantum)
    with preemption.StopSignals() as stop:
      return self._loop(state, iterator, copied, stop)

  def _loop(self, state: run_state.RunState, iterator, copied,
            stop: preemption.StopSignals) -> dict:
    while state.phase < len(PHASES):
      if self._phase_length(state.phase) <= 0:
        state.phase, state.phase_epoch = state.phase + 1, 0
        continue
      if state.phase_epoch == 0 and state.epoch_step == 0:
        if state.phase > 0:
          self._start_phase(state)
        self.log_batch_images(state.epoch)
        if self.config.log_pairing:
          self.write_pairing(state.epoch)
      try:
        row = self.run_epoch(state, iterator, stop)
      except tf.errors.DataLossError as e:
        raise data_info.explain_data_loss(
            self.info.data_dir, self.info.manifest, e) from e
      self.log_epoch(row, row["epoch"])
      if self._end_epoch(state, row):
        state.phase, state.phase_epoch = state.phase + 1, 0
      elif self.config.log_pairing:
        self.write_pairing(state.epoch)
      self._checkpoint(state)
    return self.finish(state, copied)

  def write_data_description(self):
    """data.json and pca.npz: a model dir is enough to score and export."""
    model_dir_lib.write_data(self.model_dir, model_dir_lib.data_description(
        self.info, int(self.config.stage), self.eval_lengths,
        self.augment.pad_mode, self.architecture))
    fit = fileio.join(self.info.data_dir, model_dir_lib.PCA_FIT)
    if fileio.exists(fit):
      tf.io.gfile.copy(fit, self._file(model_dir_lib.PCA_FIT),
                       overwrite=True)

  def write_pairing(self, epoch: int):
    """This worker's input pipeline's pairing table of an epoch, laid out
    as training reads it (per-replica batches): epoch-00000.csv from the
    first pipeline, epoch-00000-worker{k}.csv from worker k's."""
    worker = distribute.worker_index(self.strategy)
    context = tf.distribute.InputContext(self.num_pipelines, worker,
                                         self.replicas)
    table = ip.pairing_table(
        self.train_info, self.train_folds, self.input, epoch,
        input_context=context,
        max_steps_per_epoch=int(self.config.max_steps_per_epoch))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["primary", "partner"])
    writer.writerows(table)
    text = buffer.getvalue()
    fileio.makedirs(self._file(model_dir_lib.PAIRING))
    fileio.atomic_write_text(
        self._file(model_dir_lib.PAIRING, f"epoch-{epoch:05d}"
                    f"{f'-worker{worker}' if worker else ''}.csv"), text)

  def finish(self, state: run_state.RunState, copied) -> dict:
    best_path = self._file(model_dir_lib.BEST)
    self._load_best()
    summary = {"fold": str(self.fold), "stage": int(self.config.stage),
               "best": state.best, "epochs": state.epoch,
               "steps": state.step, "best_weights": best_path,
               "parameters": model_lib.parameter_counts(self.model),
               "strategy": distribute.describe(self.strategy),
               "precision": keras.mixed_precision.global_policy().name,
               "precision_reason": distribute.precision_reason(),
               "compile": {"jit_compile": bool(self.config.get(
                   "jit_compile", False)),
                           "length_quantum": int(self.input.length_quantum),
                           "train_traces": int(self.traces["train"])},
               "traces": dict(self.traces),
               "input": (f"tf.data service at {self.input.data_service}"
                         if self.input.data_service else "local")}
    if copied:
      summary["initialised_from"] = {"path": self.config.model.init_from,
                                     "layers": copied}
    if self.eval_data is not None:
      result = self.evaluate()  # on every worker: it runs on all replicas
    if self.eval_data is not None and self.chief:
      summary["best_model_validation"] = {
          k: None if v is None else round(v, 6) for k, v in result.items()
          if not k.startswith("_")}
      title = f"fold {self.fold}, stage {self.config.stage}: best model, "
      if self.multi_label:  # per-class AP: what a confusion cannot show
        ap = metrics.average_precision_per_class(result["_labels"],
                                                 result["_scores"])
        summary["best_model_validation"]["per_class_ap"] = {
            l: None if np.isnan(a) else round(float(a), 4)
            for l, a in zip(self.info.labels, ap)}
        png = plots.per_class_bars(
            ap, self.info.labels, title + f"lwlrap {result['val_lwlrap']:.3f}"
            ", average precision per class")
      else:
        matrix = metrics.confusion(result["_scores"], result["_labels"],
                                   self.info.num_classes)
        png = plots.confusion_matrix(matrix, self.info.labels,
                                     title + f"MAP@3 {result['val_map3']:.3f}")
      name = (model_dir_lib.PER_CLASS_AP if self.multi_label else
              model_dir_lib.CONFUSION)
      fileio.atomic_write_bytes(self._file(name), png)
      with self.writer().as_default():
        tf.summary.image(name.split(".")[0] + "_best",
                         tf.io.decode_png(png)[None], step=state.epoch)
    logging.info("final weights fingerprint %s (task %s)",
                 run_state.weights_fingerprint(self.model),
                 distribute.task_name())
    if self.chief:
      self.writer().flush()
      fileio.write_json(self._file(model_dir_lib.SUMMARY), summary)
      state.done = True
      self._save_state(state)
    return summary


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
