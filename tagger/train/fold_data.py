"""What one fold trains and validates on: the shards as their manifest
describes them, the folds and sources of each side, the typed input and
augmentation settings, the lengths and steps of an epoch, and the
distributed datasets made from them."""

import dataclasses
import functools
from typing import Optional

import tensorflow as tf
from absl import logging

from tagger import distribute
from tagger import errors
from tagger import settings
from tagger.input import augment as augment_lib
from tagger.input import batches
from tagger.input import data_service
from tagger.input import eval_data
from tagger.input import label_fixes
from tagger.input import lengths as lengths_lib
from tagger.input import pipeline as ip
from tagger.shards import data_info
from tagger.shards import records


class FoldData:
  """config's input and augment settings on data_dir's shards, fold `fold`
  validated (None: no validation), for `strategy`'s replicas and
  workers."""

  def __init__(self, config, data_dir: str, fold: Optional[int],
               strategy: tf.distribute.Strategy):
    self.run = settings.run_config(config)
    self.info = data_info.load_data_info(data_dir,
                                         verify=self.run.verify_shards)
    self.spec = self.info.batch_spec
    self.multi_label = self.info.multi_label
    self.train_folds = data_info.select_folds(self.info, fold, "train")
    self.val_folds = data_info.select_folds(self.info, fold, "validation")
    self.input = settings.input_config(config)
    self.augment = settings.augment_config(config)
    try:
      augment_lib.check_image_ops(self.augment.image_ops)
      augment_lib.check_recording_ops(self.augment.recording_ops)
    except ValueError as e:
      raise errors.UserError(f"config.augment: {e}") from e
    if self.input.data_service:
      data_service.check_reachable(self.input.data_service)
      logging.info("training input: the tf.data service at %s",
                   self.input.data_service)
    # The sources each side reads (e.g. train on curated + noisy, validate
    # on curated only).
    self.train_info = self.info.only_sources(
        settings.names(self.input.train_sources))
    self.val_info = self.info.only_sources(
        settings.names(self.input.val_sources))
    self.eval_lengths = lengths_lib.eval_lengths(self.info, self.input)
    self.shortest_length = min(self.eval_lengths + (lengths_lib.length_range(
        self.info, self.input)[0],))
    self.strategy = strategy
    try:
      self.label_fixes = label_fixes.from_config(
          self.run.label_issues, self.info.labels, self.run.on_label_issue,
          self.run.issue_weight, self.run.fix_verified, self.multi_label)
    except errors.UserError as e:
      raise errors.UserError(f"config.label_issues: {e}") from e
    if self.label_fixes and self.input.data_service:
      raise errors.UserError("config.label_issues does not work with a "
                             "tf.data service yet (config.input."
                             "data_service): train without the service")
    if self.label_fixes:
      self._warn_unknown_clips()
      logging.info("label issues (%s): %s", self.run.label_issues, ", ".join(
          f"{n} {kind}" for kind, n in label_fixes.count_by_kind(
              self.label_fixes).items() if n))
    self.replicas = strategy.num_replicas_in_sync
    self.num_pipelines = distribute.num_workers(strategy)
    self.max_steps = self.run.max_steps_per_epoch
    warn_thin_classes(self.info, data_dir)

  def _warn_unknown_clips(self) -> None:
    """A label issues file of other data acts on nothing: said, not
    silent."""
    known = set(records.read_headers(tf.data.TFRecordDataset(
        self.info.all_files(), self.info.compression))[records.FNAME])
    unknown = [f for f in self.label_fixes.fnames if f not in known]
    if unknown:
      logging.warning("%d clip(s) of %s are not in these shards (%r, ...): "
                      "nothing is done to them", len(unknown),
                      self.run.label_issues, unknown[0])

  @functools.cached_property
  def steps_per_epoch(self) -> int:
    """Global batches of an epoch (asked for after the settings are
    checked: too few clips for one batch is an error)."""
    steps = ip.steps_per_epoch(self.train_info, self.train_folds,
                               self.input, self.replicas, self.num_pipelines)
    return min(steps, self.max_steps) if self.max_steps else steps

  @property
  def num_validation_clips(self) -> int:
    return self.val_info.num_records(self.val_folds)

  def service_account(self, first_epoch: int
                      ) -> Optional[data_service.BatchAccount]:
    """With a tf.data service: the account of its batches from first_epoch
    (a batch lost with a worker is found); else None."""
    if not self.input.data_service:
      return None
    return data_service.BatchAccount(
        self.steps_per_epoch * self.replicas // self.num_pipelines,
        first_epoch, self.input.data_service, self.input.lost_batches_after)

  def describe(self) -> str:
    """The run's plan in one line: devices, steps, lengths, compilation."""
    return (f"{distribute.describe(self.strategy)}, {self.steps_per_epoch} "
            f"steps of {self.input.batch_size} per epoch, validation at "
            f"lengths {list(self.eval_lengths)}; XLA "
            f"{'on' if self.run.jit_compile else 'off'}, input lengths "
            f"in steps of {self.input.length_quantum} frames")

  def datasets(self, start_epoch: int):
    """(train, validation or None): distributed datasets, training from
    start_epoch on. Evaluation runs on every replica (and worker); every
    row carries its position, so each clip counts once wherever it ran."""
    def train_fn(context):
      return ip.train_dataset(
          self.train_info, self.train_folds, self.input, self.augment,
          start_epoch=start_epoch, input_context=context,
          max_steps_per_epoch=self.max_steps, label_fixes=self.label_fixes)
    train = self.strategy.distribute_datasets_from_function(train_fn)
    if not self.val_folds:
      return train, None

    def eval_fn(context):
      return eval_data.eval_dataset(self.val_info, self.val_folds, self.input,
                             self.eval_lengths,
                             batch_size=self.run.eval_batch_size,
                             seed=self.run.seed, input_context=context)
    return train, self.strategy.distribute_datasets_from_function(eval_fn)

  def augmented_sample(self, epoch: int, count: int) -> tf.Tensor:
    """[count, M, L, 1]: the first log-mels of an epoch's first batch as
    training sees them (augmented on the device), for pictures."""
    small = dataclasses.replace(self.input, batch_size=max(count, 2),
                                placement="device", pairing_block=64,
                                shuffle_buffer=64)
    batch = next(iter(ip.train_dataset(self.train_info, self.train_folds,
                                       small, self.augment,
                                       start_epoch=epoch, num_epochs=1,
                                       label_fixes=self.label_fixes)))
    return batches.augment_batch(batch, self.spec,
                                 self.augment)[records.LOG_MEL][:count]

  def pairing_table(self, epoch: int):
    """(worker, rows of (primary, partner)): this worker's input
    pipeline's pairing table of an epoch, laid out as training reads it
    (per-replica batches)."""
    worker = distribute.worker_index(self.strategy)
    context = tf.distribute.InputContext(self.num_pipelines, worker,
                                         self.replicas)
    return worker, ip.pairing_table(
        self.train_info, self.train_folds, self.input, epoch,
        input_context=context, max_steps_per_epoch=self.max_steps)


def warn_thin_classes(info, data_dir: str) -> None:
  """A warning for data no figure can judge: one class (every ranking is
  right, MAP@3 reads 1.000) or classes of one clip (never both trained
  and validated)."""
  counts = info.class_counts()
  if len(info.labels) < 2:
    logging.warning("%s holds one class (%s): every clip gets it, so MAP@3 "
                    "reads 1.000 whatever the model learns; a tagger needs "
                    "two classes or more", data_dir, ", ".join(info.labels))
  thin = [l for l, c in zip(info.labels, counts) if c < 2]
  if thin and len(info.labels) >= 2:
    logging.warning("%s: %d class(es) with fewer than 2 clips (%s): a fold "
                    "cannot both train and validate them", data_dir,
                    len(thin), ", ".join(thin[:5]))
