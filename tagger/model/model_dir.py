"""What a model directory is: its file names, its data description
(data.json), its weights, and the network rebuilt from them.

Training writes a model dir; scoring and export read it through this module
alone, so neither needs the trainer.

  best.weights.h5     the best weights (what scoring loads)
  data.json           the data the model was trained on (DataDescription)
  pca.npz             the train split's PCA fit (scoring raw audio)
  config.json, state.json, history.csv, summary.json, checkpoints/,
  tensorboard/, pairing/, confusion_matrix.png: the run's own files.
"""

import dataclasses
import os
import tempfile
from typing import List, Optional

import keras
import tensorflow as tf

from tagger import errors
from tagger import fileio
from tagger import settings
from tagger.audio import pca as pca_lib
from tagger.audio.params import FeatureParams
from tagger.model import architecture as architecture_lib
from tagger.model import networks as model_lib
from tagger.shards import records

STATE = "state.json"
CONFIG = "config.json"
HISTORY = "history.csv"
SUMMARY = "summary.json"
BEST = "best.weights.h5"
RECIPE = "recipe.json"    # a recipe's model dir: its members (tagger/recipe.py)
DATA = "data.json"        # what scoring and export need to know of the data
PCA_FIT = pca_lib.FIT_FILE  # the train split's PCA fit (scoring raw audio)
CONFUSION = "confusion_matrix.png"
PER_CLASS_AP = "per_class_ap.png"  # multi-label data: instead of CONFUSION
CHECKPOINTS = "checkpoints"
TENSORBOARD = "tensorboard"
PAIRING = "pairing"


class ModelDirError(errors.UserError):
  """A model dir that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class DataDescription:
  """data.json: what a model was trained on and how it is built."""
  stage: int
  labels: List[str]
  class_counts: List[int]
  pca_dim: int
  num_mels: int
  normalization: dict                 # {"min_db", "max_db"}
  eval_lengths: List[int]
  architecture: dict = dataclasses.field(default_factory=dict)
  pad_mode: str = "symmetric"
  crop_range: Optional[List[int]] = None
  feature_params: Optional[dict] = None
  data_dir: str = ""

  @property
  def stage2(self) -> bool:
    return int(self.stage) == 2

  @property
  def multi_label(self) -> bool:
    """A sigmoid head (one probability per class) rather than softmax."""
    return bool(self.architecture.get("multi_label", False))

  @property
  def arch(self) -> architecture_lib.Architecture:
    """The network it describes (its "architecture" and the data's)."""
    return architecture_lib.Architecture(
        len(self.labels), self.pca_dim if self.stage2 else 0,
        self.num_mels, **self.architecture)

  @property
  def batch_spec(self) -> records.BatchSpec:
    return records.BatchSpec(
        self.num_mels, self.pca_dim, len(self.labels),
        (float(self.normalization["min_db"]),
         float(self.normalization["max_db"])), self.multi_label)

  @property
  def params(self) -> Optional[FeatureParams]:
    """The feature parameters of its shards (None: written before 0.5)."""
    return (FeatureParams.from_dict(self.feature_params)
            if self.feature_params else None)

  def to_json(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_json(cls, value: dict, path: str = DATA) -> "DataDescription":
    """Model dirs written before tagger 0.4 have no "architecture": they
    are the reference's MobileNetV2 network."""
    known = {f.name for f in dataclasses.fields(cls)}
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and
               f.default_factory is dataclasses.MISSING and
               f.name not in value]
    if missing:
      raise ModelDirError(f"{path} lacks {missing}: re-train this model "
                          "with this tagger's tools/train")
    return cls(**{k: v for k, v in value.items() if k in known})


def write_data(model_dir: str, data: DataDescription) -> None:
  fileio.write_json(fileio.join(model_dir, DATA), data.to_json())


def read_data(model_dir: str) -> DataDescription:
  path = fileio.join(model_dir, DATA)
  if not fileio.exists(path):
    raise ModelDirError(f"{path} not found: {model_dir} was not written by "
                        "this tagger's tools/train")
  return DataDescription.from_json(fileio.read_json(path), path)


def save_weights(model: keras.Model, path: str) -> None:
  """Keras' .weights.h5, written locally then moved atomically (any
  tf.io.gfile path)."""
  with tempfile.TemporaryDirectory() as tmp:
    local = os.path.join(tmp, "w.weights.h5")
    model.save_weights(local)
    target = fileio.temp_name(path)
    try:
      tf.io.gfile.copy(local, target, overwrite=True)
      tf.io.gfile.rename(target, path, overwrite=True)
    except BaseException:
      fileio.remove_quietly(target)   # a full disk leaves no .tmp- file
      raise


def load_weights(model: keras.Model, path: str) -> None:
  """Keras' .weights.h5 into model; a damaged file (truncated, not HDF5)
  or one of another network (other labels, another backbone) is one line
  naming it."""
  with tempfile.TemporaryDirectory() as tmp:
    local = os.path.join(tmp, "w.weights.h5")
    tf.io.gfile.copy(path, local, overwrite=True)
    try:
      model.load_weights(local)
    except (OSError, ValueError, KeyError) as e:
      first = str(e).strip().splitlines()[0] if str(e).strip() else (
          type(e).__name__)
      what = ("is not a readable weights file (truncated or damaged?)"
              if isinstance(e, OSError) else
              "does not fit the network its data.json describes (another "
              "label set, backbone or stage?)")
      raise ModelDirError(f"{path} {what}: {first[:200]}") from e


def build(data: DataDescription) -> keras.Model:
  """The network a model dir describes, untrained."""
  return model_lib.build_model(data.arch)


def load(model_dir: str):
  """(DataDescription, the network with its best weights)."""
  data = read_data(model_dir)
  model = build(data)
  load_weights(model, fileio.join(model_dir, BEST))
  return data, model


def find(pattern: str) -> List[str]:
  """Model dirs matching a glob (comma-separated globs allowed) that hold
  best weights, sorted; a recipe's dir stands for its members, in their
  training order; a dir of folds (--config.fold=all) for its folds."""
  found, members = [], []
  for part in settings.names(pattern):
    matches = tf.io.gfile.glob(fileio.register_filesystem(part)) or []
    for m in sorted(matches):
      if fileio.exists(fileio.join(m, RECIPE)):
        members += recipe_members(m)
      elif fileio.exists(fileio.join(m, BEST)):
        found.append(m)
      else:   # a dir of folds (--config.fold=all): each fold dir
        for fold in sorted(tf.io.gfile.glob(fileio.join(m, "fold*"))):
          if fileio.exists(fileio.join(fold, RECIPE)):
            members += recipe_members(fold)
          elif fileio.exists(fileio.join(fold, BEST)):
            found.append(fold)
  found = sorted(set(found)) + [m for m in dict.fromkeys(members)
                                if m not in found]
  if not found:
    raise ModelDirError(f"no model dir with {BEST} matches {pattern!r}; "
                        "train first (tools/train)")
  return found


def recipe_members(model_dir: str, chosen: bool = True) -> List[str]:
  """A recipe dir's member dirs (recipe.json's order), every one trained:
  the members the recipe chose on validation ("chosen", where it chose:
  recipe.choose_members), or with chosen=False every member."""
  recipe = fileio.read_json(fileio.join(model_dir, RECIPE))
  names = recipe.get("chosen") if chosen and recipe.get("chosen") else \
      recipe.get("members")
  if not names:
    raise ModelDirError(f"{fileio.join(model_dir, RECIPE)} lists no member")
  members = [fileio.join(model_dir, n) for n in names]
  missing = [n for n, d in zip(names, members)
             if not fileio.exists(fileio.join(d, BEST))]
  if missing:
    raise ModelDirError(f"{model_dir}: members {missing} are not trained "
                        "yet; run the same tools/train command again to "
                        "finish the recipe")
  return members


def data_description(info, stage: int, eval_lengths,
                     pad_mode: str = "symmetric",
                     arch: Optional[architecture_lib.Architecture] = None
                     ) -> DataDescription:
  """A model dir's data.json: what scoring and export need of the data."""
  manifest = info.manifest
  return DataDescription(
      data_dir=info.data_dir, stage=int(stage),
      architecture=architecture_lib.recorded(arch) if arch else {},
      labels=list(info.labels),
      class_counts=info.class_counts().tolist(),
      pca_dim=int(info.pca_dim), num_mels=int(info.num_mels),
      normalization=dict(zip(("min_db", "max_db"), manifest.normalization)),
      crop_range=list(manifest.crop_range) if manifest.crop_range else None,
      eval_lengths=[int(x) for x in eval_lengths], pad_mode=pad_mode,
      feature_params=dict(manifest.feature_params))
