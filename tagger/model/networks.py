"""Stage-1 (mel) and stage-2 (mel + PCA) MobileNetV2 taggers.

As the reference recipe (BUILD.md, "The model and its training"): log-mel
[64, T, 1] -> BatchNorm -> Conv 1x1 (10, relu) -> Conv 1x1 (3, relu) ->
MobileNetV2 (alpha 1, no top) -> global average pool [-> concat
BatchNorm(PCA)] -> Dense 1536 relu -> BatchNorm -> Dense 384 relu ->
BatchNorm -> Dense C softmax (float32 under mixed precision). With 41
classes and 350 PCA inputs: 4,839,330 and 5,378,330 parameters (5,339,676
trainable).

Layers carry fixed names, so weights move between stages by name
(`transfer_weights`).
"""

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from tagger import settings
from tagger.model import backbones
from tagger.model.architecture import Architecture, TrainOptions
from tagger.shards import records

BACKBONE = "backbone"
# A backbone's errors are the network's (model_lib.ModelError everywhere).
ModelError = backbones.ModelError


# ---------------------------------------------------------------------------
# Input normalisation: what the network sees of a clip's level and channel.

INPUT_NORMS = settings.INPUT_NORMS   # what each does: _normalise_input


@keras.saving.register_keras_serializable(package="tagger")
class ClipStandardization(keras.layers.Layer):
  """Each clip's log-mel image standardised by its own statistics, so that
  the recording's level (a constant in dB) and, per band ('clip_band'),
  its channel (a fixed EQ: a constant per mel band in dB) do not reach the
  network. [B, M, T, 1] -> the same shape.

  per_band=False: minus the clip's mean, over its standard deviation.
  per_band=True: minus each band's mean over time (cepstral mean
  normalisation), over the clip's standard deviation."""

  def __init__(self, per_band: bool = False, epsilon: float = 1e-3,
               **kwargs):
    super().__init__(**kwargs)
    self.per_band = bool(per_band)
    self.epsilon = float(epsilon)

  def call(self, x):
    x32 = keras.ops.cast(x, "float32")
    mean = keras.ops.mean(x32, axis=(2, 3) if self.per_band else (1, 2, 3),
                          keepdims=True)     # [B, M or 1, 1, 1]
    centred = x32 - mean
    std = keras.ops.sqrt(keras.ops.mean(keras.ops.square(centred),
                                        axis=(1, 2, 3), keepdims=True))
    return keras.ops.cast(centred / (std + self.epsilon), x.dtype)

  def get_config(self):
    return {**super().get_config(), "per_band": self.per_band,
            "epsilon": self.epsilon}


def _input_norm(log_mel, input_norm: str):
  """[B, M, T, 1] normalised image -> what the stem sees (mel_bn always
  follows, so the weights are the same for every choice)."""
  if input_norm not in INPUT_NORMS:
    raise ModelError(f"model.input_norm must be one of {INPUT_NORMS}, not "
                     f"{input_norm!r}")
  if input_norm == "batch":       # the reference: fixed dB bounds + BN
    return log_mel
  return ClipStandardization(per_band=input_norm == "clip_band",
                             name="clip_norm")(log_mel)


AISFX_BLOCK = 12      # CNN9 frames (x 8 input frames): aisfx's 2.3 s blocks
AISFX_BLOCK_HOP = 6   # every 1.15 s


def _aisfx_block_pool(x):
  """[B, T', F', D] CNN9 maps -> [B, 2D], aisfx's clip embedding: the mean
  over frequency, the max over each block of 2.3 s (every 1.15 s; one
  block for a shorter input), then the mean and the max over blocks."""
  x = keras.layers.Lambda(lambda f: keras.ops.mean(f, axis=2),
                          name="freq_mean")(x)                # [B, T', D]
  x = keras.layers.MaxPooling1D(AISFX_BLOCK, AISFX_BLOCK_HOP, padding="same",
                                name="block_max")(x)          # [B, n, D]
  return keras.layers.Concatenate(name="pool")([
      keras.layers.GlobalAveragePooling1D(name="block_mean")(x),
      keras.layers.GlobalMaxPooling1D(name="blocks_max")(x)])  # [B, 2D]


def build_model(arch: Architecture,
                train: TrainOptions = TrainOptions()) -> keras.Model:
  """The network: a stem (unless the backbone has its own), the backbone
  and its pooling, and the reference's dense head; stage 2 adds the PCA
  input."""
  log_mel = keras.Input((arch.num_mels, None, 1), name=records.LOG_MEL)
  inputs = {records.LOG_MEL: log_mel}
  x = _pooled_features(_stem(log_mel, arch), arch, train)       # [B, D]
  pca = None
  if arch.pca_dim:
    inputs[records.PCA] = keras.Input((arch.pca_dim,), name=records.PCA)
    pca = keras.layers.BatchNormalization(name="pca_bn")(
        inputs[records.PCA])                                     # [B, P]
    if arch.pca_into_mlp or not arch.pca_head:
      x = keras.layers.Concatenate(name="concat")([x, pca])     # [B, D+P]
  model = keras.Model(inputs, _head(x, pca, arch, train),
                      name=f"tagger_stage{2 if arch.pca_dim else 1}")
  if train.bn_momentum is not None:
    set_bn_momentum(model, train.bn_momentum)
  return model


def _stem(log_mel, arch: Architecture):
  """[B, M, T, 1] -> what the backbone takes: the reference's BatchNorm and
  1x1 convolutions to 3 channels, or the input itself for a backbone with
  its own front-end."""
  if backbones.backbone_spec(arch.backbone).own_stem:
    if arch.input_norm != "batch":
      raise ModelError(f"the {arch.backbone} backbone normalises its input "
                       "itself: use model.input_norm='batch'")
    return log_mel
  x = _input_norm(log_mel, arch.input_norm)
  x = keras.layers.BatchNormalization(name="mel_bn")(x)
  x = keras.layers.Conv2D(10, 1, activation="relu", name="mel_conv10")(x)
  return keras.layers.Conv2D(3, 1, activation="relu", name="mel_conv3")(x)


def _pooled_features(x, arch: Architecture, train: TrainOptions):
  """The backbone (frozen as train says), then its pooling -> [B, D]."""
  spec = backbones.backbone_spec(arch.backbone)
  features = spec.build(arch.alpha, train.pretrained)
  features.name = BACKBONE
  x = features(x)
  if train.freeze_backbone:   # a probe: the backbone's weights and BN fixed
    features.trainable = False
  else:
    if train.freeze_backbone_bn:
      freeze_batchnorm(features)
    if train.freeze_backbone_until:
      freeze_until(features, train.freeze_backbone_until)
  if spec.pool == "aisfx_blocks":
    return _aisfx_block_pool(x)
  if spec.pool == "mean_freq_max_time":
    # [B, T', F', D] -> [B, D]: aisfx's pooling of a CNN9 block.
    return keras.layers.Lambda(lambda f: keras.ops.max(keras.ops.mean(
        f, axis=2), axis=1), name="pool")(x)
  return keras.layers.GlobalAveragePooling2D(name="pool")(x)


HEADS = ("mlp", "linear")


def _head(x, pca, arch: Architecture, train: TrainOptions):
  """[B, D] -> [B, C] probabilities: the reference's dense layers, and with
  pca_head a linear path from the PCA vector added to the logits."""
  activation = "sigmoid" if arch.multi_label else "softmax"
  # Sigmoid outputs start at the prior of a label, 1/C, not at 0.5: else
  # the first steps only learn that most labels are absent (Lin et al.,
  # focal loss, 2017: the same bias initialisation).
  head_bias = (keras.initializers.Constant(-float(np.log(max(
      arch.num_classes - 1, 1)))) if arch.multi_label else "zeros")
  if arch.head not in HEADS:
    raise ModelError(f"model.head must be one of {HEADS}, not "
                     f"{arch.head!r}")
  if arch.head == "linear":   # [B, D] -> [B, C]
    if pca is not None and arch.pca_head:
      raise ModelError("model.head='linear' takes no pca_head")
    return keras.layers.Dense(arch.num_classes, activation=activation,
                              bias_initializer=head_bias, dtype="float32",
                              name="probs")(x)
  if train.dropout:
    x = keras.layers.Dropout(train.dropout, name="dropout_in")(x)
  x = keras.layers.Dense(1536, activation="relu", name="fc1536")(x)
  x = keras.layers.BatchNormalization(name="fc1536_bn")(x)
  x = keras.layers.Dense(384, activation="relu", name="fc384")(x)
  x = keras.layers.BatchNormalization(name="fc384_bn")(x)
  if train.dropout:
    x = keras.layers.Dropout(train.dropout, name="dropout_out")(x)
  if pca is None or not arch.pca_head:
    return keras.layers.Dense(arch.num_classes, activation=activation,
                              bias_initializer=head_bias, dtype="float32",
                              name="probs")(x)
  logits = keras.layers.Dense(arch.num_classes, dtype="float32",
                              bias_initializer=head_bias, name="probs")(x)
  linear = keras.layers.Dense(
      arch.num_classes, dtype="float32", kernel_initializer="zeros",
      kernel_regularizer=(keras.regularizers.L2(train.pca_head_l2)
                          if train.pca_head_l2 else None),
      name="pca_logits")(pca)
  logits = keras.layers.Add(name="logits", dtype="float32")([logits, linear])
  return keras.layers.Activation(activation, dtype="float32",
                                 name="softmax")(logits)


def log_probabilities(probs: tf.Tensor) -> tf.Tensor:
  """float32 log of the softmax (or sigmoid) output, floored at 1e-7: what
  the scorer, the SavedModel and TFLite average over views and models."""
  return tf.math.log(tf.clip_by_value(tf.cast(probs, tf.float32), 1e-7, 1.0))


def probabilities_of(mean_log: tf.Tensor, multi_label: bool) -> tf.Tensor:
  """Mean log-probabilities over views and models [..., C] ->
  probabilities: renormalised over the classes (softmax) for single-label
  models, each class's own geometric mean (exp) for multi-label (sigmoid)
  models, whose classes are independent."""
  if multi_label:
    return tf.exp(mean_log)
  return tf.nn.softmax(mean_log)


def with_embedding(model: keras.Model) -> keras.Model:
  """A built tagger with two outputs: (probabilities [b, C], embedding
  [b, D]): the pooled backbone features, with the normalised PCA vector
  where the network concatenates them ("concat"), else "pool"."""
  names = {layer.name for layer in model.layers}
  embedding = model.get_layer("concat" if "concat" in names else "pool")
  return keras.Model(model.inputs, [model.output, embedding.output])


def ensemble_pooled(pooled: Sequence[tf.Tensor]) -> tf.Tensor:
  """Several models' pooled features [B, D_i] -> the ensemble's embedding:
  their mean when every D_i is the same (folds of one network), else side
  by side [B, sum D_i] (members of different backbones)."""
  pooled = [tf.cast(p, tf.float32) for p in pooled]
  if len({int(p.shape[-1]) for p in pooled}) == 1:
    return tf.add_n(pooled) / float(len(pooled))
  return tf.concat(pooled, axis=-1)


def set_bn_momentum(model: keras.Model, momentum: float) -> int:
  """Sets every BatchNormalization's momentum (backbone's 0.999 included);
  returns how many layers it changed."""
  changed = 0
  for layer in _all_layers(model):
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.momentum = float(momentum)
      changed += 1
  return changed


def freeze_batchnorm(model: keras.Model) -> int:
  """Every BatchNormalization of model in inference mode and untrained
  (Keras: trainable=False); returns how many."""
  frozen = 0
  for layer in _all_layers(model):
    if isinstance(layer, keras.layers.BatchNormalization):
      layer.trainable = False
      frozen += 1
  return frozen


def freeze_until(model: keras.Model, name: str) -> int:
  """Every layer of model (sub-models flattened, in order) up to and
  including the one called name made untrainable (BatchNorm in inference
  mode); returns how many."""
  layers = [l for l in _all_layers(model) if not isinstance(l, keras.Model)]
  names = [l.name for l in layers]
  if name not in names:
    raise ModelError(f"model.freeze_backbone_until={name!r}: the backbone "
                     f"has no such layer (its layers: {', '.join(names[:3])}"
                     f", ..., {names[-1]})")
  for layer in layers[:names.index(name) + 1]:
    layer.trainable = False
  return names.index(name) + 1


def _all_layers(model):
  for layer in model.layers:
    yield layer
    if isinstance(layer, keras.Model):
      yield from _all_layers(layer)


HEAD_LAYERS = ("probs", "pca_logits")  # the layers that map to classes
# The stem and the backbone: what fine-tuning copies and may freeze.
FEATURE_LAYERS = ("mel_bn", "mel_conv10", "mel_conv3", BACKBONE)


def transfer_weights(source: keras.Model, target: keras.Model,
                     skip=()) -> list:
  """Copies every layer's weights whose name and shapes match (but the
  layers named in skip); returns the names of the layers copied (stage 1
  -> stage 2: all but fc1536)."""
  copied = []
  by_name = {layer.name: layer for layer in source.layers}
  for layer in target.layers:
    other = by_name.get(layer.name)
    if other is None or not layer.weights or layer.name in skip:
      continue
    mine, theirs = layer.get_weights(), other.get_weights()
    if len(mine) == len(theirs) and all(
        a.shape == b.shape for a, b in zip(mine, theirs)):
      layer.set_weights(theirs)
      copied.append(layer.name)
  return copied


def feature_variables(model: keras.Model, variables) -> list:
  """[bool] per variable: does it belong to the stem or the backbone
  (FEATURE_LAYERS: what fine-tuning may freeze)?"""
  names = {layer.name for layer in model.layers}
  ids = {id(v) for name in FEATURE_LAYERS if name in names
         for v in model.get_layer(name).weights}
  return [id(v) in ids for v in variables]


def parameter_counts(model: keras.Model) -> dict:
  trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
  total = int(sum(np.prod(w.shape) for w in model.weights))
  return {"total": total, "trainable": trainable}


def model_inputs(batch: dict, pca: bool) -> dict:
  """The model's input dict from a model batch (input_pipeline keys)."""
  inputs = {records.LOG_MEL: batch[records.LOG_MEL]}
  if pca:
    inputs[records.PCA] = batch[records.PCA]
  return inputs
