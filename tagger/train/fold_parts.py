"""What a fold trains with: its config's record (config.json, and what
counts as the same config on resume), the loss and its weights, the
network with its optimizer (built once), and the compiled parts (the
datasets from an epoch, the steps and the validation)."""

import dataclasses
import json
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tagger import settings
from tagger.audio import params as params_lib
from tagger.model import architecture as architecture_lib
from tagger.model import backbones
from tagger.model import networks as model_lib
from tagger.shards import data_info
from tagger.train import fold_data
from tagger.train import steps as steps_lib
from tagger.train import validation as validation_lib


def config_json(config) -> str:
  """config.json's text: the run's config, keys sorted."""
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str)


def same_config(saved: dict, config) -> bool:
  """Is the config of a model dir's config.json (parsed) the run's?
  Settings that a newer tagger added, at their default values, do not
  count: a run started before an upgrade resumes."""
  saved = json.loads(json.dumps(saved))   # a copy
  current = json.loads(config_json(config))
  defaults = json.loads(config_json(settings.default_config()))

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


def weighted_loss(data: fold_data.FoldData) -> steps_lib.WeightedLoss:
  """The loss of the run's class, source and verified weights."""
  info, run = data.info, data.run
  return steps_lib.WeightedLoss(
      class_weights=(class_weights(info) if run.class_weights
                     else np.ones(info.num_classes, np.float32)),
      source_weights=np.array(settings.source_weights(
          run.source_weights, info.sources), np.float32),
      verified_weight=float(run.verified_weight),
      global_batch=data.input.batch_size,
      multi_label=data.multi_label)


@dataclasses.dataclass(frozen=True)
class Network:
  """The network, its optimizer and the backbone freeze switch."""
  model: keras.Model
  optimizer: keras.optimizers.Optimizer
  frozen: tf.Variable   # 1.0 while the stem and backbone are frozen


def build_network(arch: architecture_lib.Architecture,
                  cfg: settings.ModelConfig,
                  strategy: tf.distribute.Strategy) -> Network:
  """The network of arch with cfg's training options, its Adam
  (loss-scaled under mixed_float16) built, in the strategy's scope."""
  with strategy.scope():
    model = model_lib.build_model(arch, architecture_lib.train_options(cfg))
    optimizer = keras.optimizers.Adam(learning_rate=1e-4)
    if keras.mixed_precision.global_policy().name == "mixed_float16":
      optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    frozen = tf.Variable(0.0, trainable=False, name="frozen")
  counts = model_lib.parameter_counts(model)
  logging.info("model %s: %d parameters (%d trainable)", model.name,
               counts["total"], counts["trainable"])
  return Network(model, optimizer, frozen)


@dataclasses.dataclass(frozen=True)
class Parts:
  """What the loop runs, built once from the network and the epoch it
  starts at (FoldRun.prepare): the training batches, the compiled steps
  and the validation (None without a validation fold)."""
  train_data: tf.data.Dataset
  steps: steps_lib.Steps
  validation: Optional[validation_lib.Validation]


def compile_parts(network: Network, data: fold_data.FoldData,
                  strategy: tf.distribute.Strategy, start_epoch: int,
                  freezes: bool) -> Parts:
  """The datasets from start_epoch and the steps compiled for them: what
  both training and a rate measurement need. freezes: the backbone is
  frozen for the first epochs (model.freeze_epochs)."""
  info = data.info
  train_data, eval_data = data.datasets(start_epoch)
  prepare = steps_lib.Prepare(data.spec, data.augment,
                              data.input.placement == "device",
                              data.run.stage2)
  steps = steps_lib.Steps(
      network.model, network.optimizer, strategy, prepare,
      weighted_loss(data), freeze=network.frozen if freezes else None,
      jit_compile=data.run.jit_compile)
  steps.compile_train(train_data.element_spec)
  validation = None
  if eval_data is not None:
    steps.compile_eval(eval_data.element_spec, info.num_classes)
    validation = validation_lib.Validation(
        eval_data, steps.eval_step, data.num_validation_clips,
        data.eval_lengths, info.num_classes, data.multi_label)
  return Parts(train_data, steps, validation)


def check_backbone(cfg: settings.ModelConfig, data: fold_data.FoldData) -> None:
  """The backbone hears the shards' feature set and pools their shortest
  length (model_lib.ModelError says why not)."""
  backbones.check_backbone(
      cfg.backbone, data.shortest_length,
      params_lib.preset_name(params_lib.FeatureParams.from_dict(
          data.info.manifest.feature_params)))
