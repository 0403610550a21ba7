"""The compiled functions of a run: the weighted loss, the training step over
the replicas, the validation step, and the replicas' BatchNorm statistics.

Each replica's step takes its slice of a host batch, runs the input
pipeline's augment_batch on its device (placement 'device'), and applies
gradients of the loss summed over its examples divided by the global batch.
"""

import dataclasses
from typing import Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from tagger import distribute
from tagger import settings
from tagger.input import batches
from tagger.model import networks as model_lib
from tagger.shards import records
from tagger.train import run_state
from tagger.train import schedules


def binary_cross_entropy(target: tf.Tensor, probs: tf.Tensor) -> tf.Tensor:
  """[b] mean over classes of the binary cross-entropy of sigmoid outputs
  probs [b, C] (float32, floored at 1e-7 from 0 and 1) against (mixed)
  multi-hot targets [b, C]: the multi-label loss."""
  p = tf.clip_by_value(tf.cast(probs, tf.float32), 1e-7, 1.0 - 1e-7)
  return -tf.reduce_mean(target * tf.math.log(p) +
                         (1.0 - target) * tf.math.log(1.0 - p), axis=1)


@dataclasses.dataclass(frozen=True)
class WeightedLoss:
  """The loss of one replica's batch: cross-entropy (categorical, or binary
  per class for multi-label data) of each example, weighted by its classes'
  weights, by verified_weight on manually verified rows, by its source's
  weight and by its label fix's weight, summed and divided by the global
  batch."""
  class_weights: np.ndarray      # [C]
  source_weights: np.ndarray     # [S]; one source: unweighted
  verified_weight: float
  global_batch: int
  multi_label: bool

  def example_weights(self, batch: Dict[str, tf.Tensor]) -> tf.Tensor:
    target = batch[batches.TARGET]
    # target: [b, C] (mixed) one-hot, or multi-hot for multi-label data
    weight = tf.linalg.matvec(target, tf.constant(self.class_weights,
                                                  tf.float32))
    if self.multi_label:  # the mean of the clip's labels' weights
      weight /= tf.maximum(tf.reduce_sum(target, axis=1), 1e-6)
    weight *= 1.0 + (self.verified_weight - 1.0) * batch[batches.WEIGHT]
    if len(self.source_weights) > 1:
      weight *= tf.linalg.matvec(batch[records.SOURCE], tf.constant(
          self.source_weights, tf.float32))
    if batches.CLIP_WEIGHT in batch:   # label fixes (drop: 0)
      weight *= batch[batches.CLIP_WEIGHT]
    return weight   # [b]

  def __call__(self, batch: Dict[str, tf.Tensor], probs: tf.Tensor,
               weight: tf.Tensor) -> tf.Tensor:
    target = batch[batches.TARGET]
    if self.multi_label:
      per_example = binary_cross_entropy(target, probs)
    else:
      per_example = keras.losses.categorical_crossentropy(target, probs)
    return tf.reduce_sum(per_example * weight) / float(self.global_batch)


@dataclasses.dataclass(frozen=True)
class Prepare:
  """What a replica does to a host batch before the network sees it."""
  spec: records.BatchSpec
  augment: settings.AugmentConfig
  on_device: bool               # input placement 'device'
  stage2: bool

  def train(self, batch):
    if self.on_device:
      batch = batches.augment_batch(batch, self.spec, self.augment)
    return batch

  def eval(self, batch):
    if self.on_device:
      batch = batches.prepare_eval_batch(batch, self.spec,
                                         self.augment.pad_mode)
    return batch


class Steps:
  """train_step(batch, lr) -> (the loss summed over replicas, [local
  replicas] the epoch each replica's batch was made for);
  eval_step(batch) -> (probs [n, C], truth [n, 1 or C], row [n]) gathered
  from every replica; the replicas' BatchNorm statistics (sync to their
  mean, read per replica, restore per replica). Traces are counted."""

  def __init__(self, model: keras.Model, optimizer, strategy,
               prepare: Prepare, loss: WeightedLoss, *,
               freeze: Optional[tf.Variable] = None,
               jit_compile: bool = False):
    self.model, self.optimizer, self.strategy = model, optimizer, strategy
    self.prepare, self.loss = prepare, loss
    self.freeze = freeze
    self.jit_compile = jit_compile
    self.traces = {"train": 0, "eval": 0}
    self.replicas = strategy.num_replicas_in_sync
    # Keras 3 BatchNormalization keeps one copy of its moving statistics
    # per replica, each updated from that replica's slices only
    # (aggregation NONE): the copies drift apart, and a checkpoint would
    # keep replica 0's while evaluation on the replicas used all of them.
    # Every epoch ends with each statistic set to its mean over the
    # replicas (and workers).
    self._statistics = [v.value for v in model.non_trainable_variables]

  # -- training ----------------------------------------------------------------

  def _learn(self) -> Callable:
    """One replica's loss, gradients and update."""
    model, optimizer, loss_of = self.model, self.optimizer, self.loss
    frozen = (model_lib.feature_variables(model, model.trainable_variables)
              if self.freeze is not None else None)
    scaled_on_replicas = self.replicas > 1 and isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer)

    def learn(batch):
      inputs = model_lib.model_inputs(batch, self.prepare.stage2)
      weight = loss_of.example_weights(batch)
      with tf.GradientTape() as tape:
        probs = model(inputs, training=True)
        loss = loss_of(batch, probs, weight)
        if model.losses:  # weight penalties (model.pca_head_l2)
          loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        scaled = optimizer.scale_loss(loss)
      grads = tape.gradient(scaled, model.trainable_variables)
      if frozen is not None:  # fine-tuning: no update of stem and backbone
        # tf.where, not a product: an overflowed (inf) gradient under
        # mixed_float16 times 0 would be NaN.
        grads = [tf.where(self.freeze > 0, tf.zeros_like(g), g)
                 if f and g is not None else g
                 for g, f in zip(grads, frozen)]
      if scaled_on_replicas:  # one overflow verdict for all replicas
        grads = distribute.finite_everywhere(grads)
      optimizer.apply(grads, model.trainable_variables)
      return loss

    if self.jit_compile:
      # XLA for each replica's forward, backward and update (not the
      # augmentation: XLA has no stateless gamma for mixup's Beta): one
      # compilation per distinct input length.
      learn = tf.function(learn, jit_compile=True)
    return learn

  def compile_train(self, element_spec) -> None:
    learn, prepare = self._learn(), self.prepare
    optimizer, strategy = self.optimizer, self.strategy

    def replica_step(batch):
      return learn(prepare.train(batch))

    @tf.function(input_signature=[element_spec,
                                  tf.TensorSpec([], tf.float32)])
    def train_step(batch, lr):
      """(loss summed over the replicas, [local replicas] the epoch each
      replica's batch was made for)."""
      self.traces["train"] += 1  # Python: runs once per trace
      optimizer.learning_rate = lr
      losses = strategy.run(replica_step, args=(batch,))
      epochs = tf.stack([tf.reshape(e, []) for e in
                         strategy.experimental_local_results(
                             batch[batches.EPOCH])])
      return (strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None),
              epochs)

    self.train_step = train_step

  # -- validation --------------------------------------------------------------

  def compile_eval(self, element_spec, num_classes: int) -> None:
    model, prepare, strategy = self.model, self.prepare, self.strategy
    multi_label = self.loss.multi_label

    def replica_eval(batch):
      batch = prepare.eval(batch)
      probs = model(model_lib.model_inputs(batch, prepare.stage2),
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

    @tf.function(input_signature=[element_spec])
    def eval_step(batch):
      self.traces["eval"] += 1
      packed = strategy.gather(strategy.run(replica_eval, args=(batch,)),
                               axis=0)
      return (tf.cast(packed[:, :num_classes], tf.float32),
              tf.cast(packed[:, num_classes:-1], tf.int64),
              tf.cast(packed[:, -1], tf.int64))

    self.eval_step = eval_step

  # -- BatchNorm statistics of the replicas ------------------------------------

  def sync_statistics(self) -> None:
    """Each statistic set to its mean over the replicas (and workers)."""
    if self.replicas > 1:
      self._sync()

  @tf.function
  def _sync(self):
    strategy = self.strategy
    local = strategy.run(lambda: [tf.identity(v) for v in self._statistics])
    for variable, value in zip(self._statistics, local):
      variable.assign(strategy.reduce(tf.distribute.ReduceOp.MEAN, value,
                                      axis=None))

  @tf.function
  def local_statistics(self):
    """Per replica: every statistic's copy (PerReplica values)."""
    return self.strategy.run(
        lambda: [tf.identity(v) for v in self._statistics])

  def checkpoint_statistics(self, inside_epoch: bool):
    """What a checkpoint keeps of the statistics: inside an epoch on
    several replicas of one worker, each statistic's per-replica copies
    [R, ...] (a resumed run then continues exactly); with several
    workers their mean is set instead (the chief sees only its own), and
    None kept; None at an epoch's end or on one replica."""
    if not inside_epoch or self.replicas == 1:
      return None
    if isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
      self.sync_statistics()
      return None
    return [np.stack([np.asarray(t) for t in
                      self.strategy.experimental_local_results(values)])
            for values in self.local_statistics()]

  @tf.function
  def set_local_statistics(self, stacked):
    """stacked: one [R, ...] tensor per statistic; replica r gets row r."""
    def assign():
      replica = tf.distribute.get_replica_context().replica_id_in_sync_group
      for variable, values in zip(self._statistics, stacked):
        variable.assign(tf.gather(values, replica))
    self.strategy.run(assign)


def non_finite_message(model_dir: str, state, losses, optimizer,
                       lr_of_step: Callable[[int], float]) -> str:
  """What is known when an epoch's training loss stops being finite."""
  values = [float(np.asarray(l)) for l in losses]
  first = next(i for i, v in enumerate(values) if not np.isfinite(v))
  policy = keras.mixed_precision.global_policy().name
  scale = run_state.loss_scale(optimizer)
  text = (f"training loss became {np.mean(values)} in {model_dir}: phase "
          f"{schedules.PHASES[state.phase]}, epoch {state.epoch}, first at "
          f"step {first + 1} of {len(values)} (the loss before it: "
          f"{values[first - 1] if first else 'none this epoch'}), LR "
          f"{lr_of_step(first):g}, precision {policy}")
  if scale is not None:
    text += f", loss scale {scale:g}"
    if scale < 1:
      text += " (collapsed: the gradients overflow even unscaled)"
  return text + (". Try a lower LR (--config.schedule.max_lr / "
                 "fine_tune_lrs) or --precision=float32, then re-run to "
                 "resume from the last finished epoch")
