"""The backbone registry: [B, mels, T, 3] (or the normalised log-mel
[B, mels, T, 1] for a backbone with its own stem) -> [B, mels', T', D]
feature maps, by config.model.backbone; each with the shortest input it
pools, how its maps are pooled and the feature set its shards need."""

import dataclasses
import os
from typing import Callable, Dict, Optional

import keras

from tagger import errors
from tagger import fileio

MIN_FRAMES = 32  # MobileNetV2 downsamples 32x: shorter inputs pool nothing
IMAGENET_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


class ModelError(errors.UserError):
  """A model setting that cannot work; the message says why."""


def _imagenet_weights(path: str) -> str:
  """A local ImageNet weights file: the given path, or Keras' cache."""
  if path and path != "imagenet":
    candidates = [path]
  else:
    cache = os.environ.get("KERAS_HOME", os.path.expanduser("~/.keras"))
    candidates = [os.path.join(cache, "models", IMAGENET_FILE)]
  for candidate in candidates:
    if fileio.exists(candidate):
      return candidate
  raise ModelError(
      f"ImageNet weights for MobileNetV2 not found at {candidates[0]}. This "
      "machine has no internet: fetch "
      f"https://storage.googleapis.com/tensorflow/keras-applications/"
      f"mobilenet_v2/{IMAGENET_FILE} elsewhere, copy it here and pass its "
      "path as --config.model.backbone_weights=/path/to/it (or put it in "
      "~/.keras/models/).")


@dataclasses.dataclass(frozen=True)
class Backbone:
  build: Callable[..., keras.Model]  # (alpha, weights) -> keras.Model
  min_frames: int                    # shortest input that still pools
  # own_stem: takes the normalised log-mel [B, mels, T, 1] itself (its own
  # front-end) instead of the reference's BN + 1x1 convs to 3 channels.
  own_stem: bool = False
  # pool: avg (global average) | mean_freq_max_time ([B, T', F', D] CNN9
  # maps: the mean over frequency, the max over time) | aisfx_blocks (the
  # same maps: aisfx's clip embedding, _aisfx_block_pool).
  pool: str = "avg"
  # features: the params.PRESETS feature set the shards must be made with
  # ('': any).
  features: str = ""


BACKBONES: Dict[str, Backbone] = {}


def register_backbone(name: str, build, min_frames: int,
                      own_stem: bool = False, pool: str = "avg",
                      features: str = "") -> None:
  """Makes `name` usable as config.model.backbone."""
  BACKBONES[name] = Backbone(build, int(min_frames), own_stem, pool,
                             features)


def backbone_spec(name: str) -> Backbone:
  if name not in BACKBONES:
    raise ModelError(f"unknown backbone {name!r}; known: "
                     f"{sorted(BACKBONES)}")
  return BACKBONES[name]


def min_frames(name: str = "mobilenet_v2") -> int:
  return backbone_spec(name).min_frames


def check_backbone(name: str, shortest_frames: int,
                   feature_set: str) -> None:
  """The backbone exists, can pool inputs of shortest_frames, and hears
  shards of feature_set (params.preset_name; a pretrained backbone hears
  one front-end only)."""
  spec = backbone_spec(name)
  if spec.features and feature_set != spec.features:
    raise ModelError(
        f"config.model.backbone={name} needs shards made with "
        f"make_tfrecords --features={spec.features}; these have the "
        f"{feature_set or 'custom'} features")
  if shortest_frames < spec.min_frames:
    raise ModelError(
        f"input length {shortest_frames} is below {spec.min_frames} frames, "
        f"the shortest {name} can pool; raise config.input.length_range / "
        "eval_lengths")


def _mobilenet_v2(alpha: float, weights: Optional[str]) -> keras.Model:
  # Keras rejects (64, None, 3) but takes (None, None, 3) (BUILD.md).
  return keras.applications.MobileNetV2(
      input_shape=(None, None, 3), alpha=float(alpha), include_top=False,
      weights=_imagenet_weights(weights) if weights else None)


def _small_cnn(alpha: float, weights: Optional[str]) -> keras.Model:
  """Four VGG-style blocks (2 x conv 3x3 + BN + ReLU, max-pool 2x2) of
  32..256 channels x alpha: ~1.2M parameters at alpha 1, fast on CPUs
  (not in the reference)."""
  if weights:
    raise ModelError("the small_cnn backbone has no pretrained weights")
  inputs = keras.Input((None, None, 3))
  x = inputs
  for block, width in enumerate((32, 64, 128, 256)):
    for conv in range(2):
      x = keras.layers.Conv2D(max(8, int(width * alpha)), 3, padding="same",
                              use_bias=False,
                              name=f"block{block}_conv{conv}")(x)
      x = keras.layers.BatchNormalization(name=f"block{block}_bn{conv}")(x)
      x = keras.layers.ReLU(name=f"block{block}_relu{conv}")(x)
    x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
  return keras.Model(inputs, x)


def _cnn9_aisfx(alpha: float, weights: Optional[str]) -> keras.Model:
  """aisfx's audio-pretrained CNN9 behind an adapter from the reference's
  log-mel (tagger/pretrained.py); weights: the aisfx wheel or its
  checkpoint.pth (none: random initialisation)."""
  from tagger.model import pretrained  # pylint: disable=g-import-not-at-top
  from tagger.audio.params import FeatureParams  # pylint: disable=g-import-not-at-top
  if alpha != 1.0:
    raise ModelError("the cnn9_aisfx backbone has one width (alpha 1.0)")
  params = FeatureParams()
  return pretrained.cnn9_adapted(weights or "", params.mel_bands,
                                 params.norm_max_db - params.norm_min_db)


def _cnn9_aisfx_native(alpha: float, weights: Optional[str]) -> keras.Model:
  """The same CNN9 on shards of aisfx's own front-end
  (make_tfrecords --features=aisfx)."""
  from tagger.model import pretrained  # pylint: disable=g-import-not-at-top
  if alpha != 1.0:
    raise ModelError("the cnn9_aisfx_native backbone has one width "
                     "(alpha 1.0)")
  return pretrained.cnn9_native(weights or "")


register_backbone("mobilenet_v2", _mobilenet_v2, MIN_FRAMES)
register_backbone("small_cnn", _small_cnn, 16)
register_backbone("cnn9_aisfx", _cnn9_aisfx, 16, own_stem=True,
                  pool="mean_freq_max_time")
# The same adapted CNN9 pooled as aisfx pools its clip embedding (the mean
# and max of 2.3 s blocks, [B, 1024]): the frozen member of the new-audio
# recipe, whose linear head is a logistic regression on these features.
register_backbone("cnn9_aisfx_blocks", _cnn9_aisfx, 16, own_stem=True,
                  pool="aisfx_blocks")
register_backbone("cnn9_aisfx_native", _cnn9_aisfx_native, 16,
                  own_stem=True, pool="aisfx_blocks", features="aisfx")
