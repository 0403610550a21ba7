"""A run's first weights from another model dir: stage 2 from stage 1 of
the same fold, or fine-tuning from a model trained on other labels (then
every layer but the head: the stem, backbone and dense layers)."""

import os
from typing import List

import keras
from absl import logging

from tagger import errors
from tagger import fileio
from tagger import settings
from tagger.model import architecture as architecture_lib
from tagger.model import model_dir as model_dir_lib
from tagger.model import networks as model_lib
from tagger.shards import data_info


def copy_weights(model: keras.Model, source: str, fold,
                 info: data_info.DataInfo,
                 model_config: settings.ModelConfig) -> List[str]:
  """Copies into model the layers it shares with source (a model dir,
  '{fold}' filled in, or a bare .h5 of a stage-1 network of this config's
  backbone and this data's labels); returns their names."""
  source = source.format(fold=fold)
  path = (source if source.endswith(".h5") else
          fileio.join(source, model_dir_lib.BEST))
  if not fileio.exists(path):
    raise errors.UserError(
        f"init_from: {path} not found (train stage 1 of fold {fold} first, "
        "or fix --config.model.init_from)")
  data_path = fileio.join(os.path.dirname(path), model_dir_lib.DATA)
  if fileio.exists(data_path):
    data = model_dir_lib.read_data(os.path.dirname(path))
    if data.num_mels != info.num_mels:
      raise errors.UserError(
          f"init_from: {path} was trained on {data.num_mels} mel bands, "
          f"these shards have {info.num_mels}")
    source_model = model_dir_lib.build(data)
    same_labels = (list(data.labels) == list(info.labels) and
                   data.multi_label == info.multi_label)
  else:
    source_model = model_lib.build_model(architecture_lib.Architecture(
        info.num_classes, 0, info.num_mels, backbone=model_config.backbone,
        alpha=model_config.alpha, multi_label=info.multi_label))
    same_labels = True
  model_dir_lib.load_weights(source_model, path)
  copied = model_lib.transfer_weights(
      source_model, model, skip=() if same_labels else model_lib.HEAD_LAYERS)
  logging.info("initialised %s from %s%s: %s", model.name, path,
               "" if same_labels else " (other labels: a new head)",
               ", ".join(copied))
  return copied
