"""Batch augmentation as TF ops: crop/pad, shift, flip, erasing, mixup,
and augmentations of the recording (level, EQ, noise, room, tuning).

All ops work on a whole batch with stateless random numbers from a [2] int
seed, so they run inside a replica's compiled step (or in tf.data) and are
deterministic given the seed. Crop/pad, shift and flip only move frames along
time, so they are composed into one index tensor [B, L] and applied with a
single gather (`time_indices`, `gather_time`).

The ops that act on the normalised image (random erasing, SpecAugment, and
any op a user adds) are a list the config names, `AugmentConfig.image_ops`,
applied in that order by `apply_image_ops`. Each draws from its own random
stream, so adding, removing or reordering an op leaves every other op's
numbers as they were. To add one, register it here (or from your own code):

  def contrast(image, seed, aug, amount=0.2):   # image [b, M, L] in [0, 1]
    ...
  augment.register_image_op("contrast", stream=20, apply=contrast)

and name it in the config: config.augment.image_ops = (..., "contrast"),
config.augment.op_params = {"contrast": {"amount": 0.1}}. Streams are
shared with the recording ops (below; 3-7 are theirs).
"""

import dataclasses
from typing import Callable, Dict, Optional, Sequence, Tuple

import tensorflow as tf

from tagger.input import recording_ops
from tagger.shards import records

PAD_MODES = ("symmetric", "constant", "wrap")


def split_seed(seed: tf.Tensor, count: int) -> tf.Tensor:
  """[count, 2] independent seeds from one [2] seed."""
  return tf.random.experimental.stateless_split(seed, count)


def reflect_index(position: tf.Tensor, length: tf.Tensor,
                  mode: str) -> Tuple[tf.Tensor, tf.Tensor]:
  """Maps positions (any integer) into [0, length) as numpy.pad would.

  Args:
    position: int32 [B, L] positions relative to the clip start.
    length: int32 [B, 1] clip lengths (>= 1).
    mode: 'symmetric' (d c b a | a b c d | d c b a, the reference's), 'wrap'
      or 'constant' (then the mask marks positions outside the clip).

  Returns:
    (index [B, L] in [0, length), inside [B, L] bool: position was in the
    clip; always True except for 'constant').
  """
  inside = (position >= 0) & (position < length)
  if mode == "symmetric":
    period = tf.math.floormod(position, 2 * length)
    index = tf.where(period < length, period, 2 * length - 1 - period)
    return index, tf.ones_like(inside)
  if mode == "wrap":
    return tf.math.floormod(position, length), tf.ones_like(inside)
  if mode == "constant":
    return tf.clip_by_value(position, 0, length - 1), inside
  raise ValueError(f"pad mode must be one of {PAD_MODES}, not {mode!r}")


def time_indices(lengths: tf.Tensor, target_length: tf.Tensor, seed: tf.Tensor,
                 *, pad_mode: str = "symmetric", shift_fraction: float = 0.0,
                 flip_probability: float = 0.0,
                 offset_fraction: Optional[tf.Tensor] = None):
  """Source frame of every output frame after crop/pad, shift and flip.

  Crop/pad: a clip longer than target_length gives a random window; a shorter
  one is placed at a random offset and padded (pad_mode). Shift: the window
  moves by up to shift_fraction of its width, edges repeat the nearest frame
  (Keras' width_shift_range with fill_mode='nearest'). Flip: time reversed
  with flip_probability.

  Args:
    lengths: int [B] frames of each clip.
    target_length: int scalar L.
    seed: int [2].
    offset_fraction: float [B] in [0, 1), optional: where a shorter clip
      sits in the output (offset floor(f * (L - n + 1))) instead of a
      random place.

  Returns:
    (index [B, L] int32 into each clip, valid [B, L] bool: False where
    'constant' padding puts zeros).
  """
  lengths = tf.maximum(tf.cast(lengths, tf.int32), 1)[:, None]
  # lengths: [B, 1]
  target_length = tf.cast(target_length, tf.int32)
  batch = tf.shape(lengths)[0]
  seeds = split_seed(seed, 4)
  u_offset = tf.random.stateless_uniform([batch, 1], seeds[0])
  if offset_fraction is not None:  # given positions (even TTA), not random
    u_offset = tf.cast(tf.reshape(offset_fraction, [-1, 1]), tf.float32)
  u_shift = tf.random.stateless_uniform([batch, 1], seeds[1], -1.0, 1.0)
  u_flip = tf.random.stateless_uniform([batch, 1], seeds[2])
  slack = tf.abs(lengths - target_length)
  # Longer clips: window start in [0, n - L]; shorter: pad before, [0, L - n].
  offset = records.window_offset(slack, u_offset)
  offset = tf.where(lengths >= target_length, offset, -offset)
  frames = tf.range(target_length)[None, :]
  # frames: [1, L]
  if shift_fraction > 0:
    shift = tf.cast(tf.round(u_shift * shift_fraction *
                             tf.cast(target_length, tf.float32)), tf.int32)
    frames = tf.clip_by_value(frames - shift, 0, target_length - 1)
  if flip_probability > 0:
    frames = tf.where(u_flip < flip_probability, target_length - 1 - frames,
                      frames)
  # frames: [B, L] (or [1, L]) output frame -> window frame
  return reflect_index(offset + frames, lengths, pad_mode)


def gather_time(mel: tf.Tensor, index: tf.Tensor, valid: tf.Tensor,
                fill: float = 0.0) -> tf.Tensor:
  """Time-major mel [B, T, M] -> [B, L, M] taking frame index[b, j] for j."""
  out = tf.gather(mel, index, axis=1, batch_dims=1)
  # out: [B, L, M]
  return tf.where(valid[:, :, None], out, tf.cast(fill, out.dtype))


def random_erasing(mel: tf.Tensor, seed: tf.Tensor, *, probability: float = 0.5,
                   area_range=(0.02, 0.4), aspect_range=(0.3, 1 / 0.3),
                   fill_range=(0.0, 1.0)) -> tf.Tensor:
  """Fills one random rectangle per example with one uniform value.

  As the reference's random eraser (p, area 2-40%, aspect 0.3-3.33), with the
  rectangle's sides clipped to the image instead of re-drawn until it fits.
  """
  batch, height, width = tf.unstack(tf.shape(mel)[:3])
  seeds = split_seed(seed, 6)
  h_f, w_f = tf.cast(height, tf.float32), tf.cast(width, tf.float32)
  area = tf.random.stateless_uniform([batch], seeds[0], *area_range) * h_f * w_f
  log_aspect = tf.random.stateless_uniform(
      [batch], seeds[1], tf.math.log(aspect_range[0]),
      tf.math.log(aspect_range[1]))
  aspect = tf.exp(log_aspect)
  rect_h = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area * aspect)),
                                    tf.int32), 1, height)
  rect_w = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(area / aspect)),
                                    tf.int32), 1, width)
  top = tf.cast(tf.random.stateless_uniform([batch], seeds[2]) *
                tf.cast(height - rect_h + 1, tf.float32), tf.int32)
  left = tf.cast(tf.random.stateless_uniform([batch], seeds[3]) *
                 tf.cast(width - rect_w + 1, tf.float32), tf.int32)
  fill = tf.random.stateless_uniform([batch], seeds[4], *fill_range)
  apply = tf.random.stateless_uniform([batch], seeds[5]) < probability
  rows = tf.range(height)[None, :]
  cols = tf.range(width)[None, :]
  in_rows = (rows >= top[:, None]) & (rows < (top + rect_h)[:, None])
  in_cols = ((cols >= left[:, None]) & (cols < (left + rect_w)[:, None]) &
             apply[:, None])
  # in_rows: [B, M], in_cols: [B, L]; one full-size op below.
  inside = in_rows[:, :, None] & in_cols[:, None, :]
  # inside: [B, M, L]
  return tf.where(inside, tf.cast(fill, mel.dtype)[:, None, None], mel)


def spec_augment(mel: tf.Tensor, seed: tf.Tensor, *, freq_masks: int = 0,
                 freq_width: int = 8, time_masks: int = 0,
                 time_fraction: float = 0.05, fill: float = 0.0) -> tf.Tensor:
  """SpecAugment's frequency and time masking on mel [B, M, L].

  Each of freq_masks bands has a width uniform in [0, freq_width] mel bins;
  each of time_masks stretches a width uniform in [0, time_fraction * L]
  frames; masked cells take the value fill.
  """
  if freq_masks <= 0 and time_masks <= 0:
    return mel
  batch, height, width = tf.unstack(tf.shape(mel)[:3])
  seeds = split_seed(seed, 2)

  def band_mask(count, size, max_width, axis_seed):
    # -> [B, size] True inside any of `count` random bands.
    if count <= 0:
      return tf.zeros([batch, size], tf.bool)
    s = split_seed(axis_seed, 2)
    widths = tf.floor(tf.random.stateless_uniform([batch, count], s[0]) *
                      (tf.cast(max_width, tf.float32) + 1))
    starts = tf.floor(tf.random.stateless_uniform([batch, count], s[1]) *
                      (tf.cast(size, tf.float32) - widths + 1))
    pos = tf.cast(tf.range(size), tf.float32)[None, None, :]
    # pos: [1, 1, size]
    inside = (pos >= starts[..., None]) & (pos < (starts + widths)[..., None])
    return tf.reduce_any(inside, axis=1)

  max_time = tf.cast(time_fraction * tf.cast(width, tf.float32), tf.int32)
  freq = band_mask(freq_masks, height, tf.minimum(freq_width, height),
                   seeds[0])
  time = band_mask(time_masks, width, max_time, seeds[1])
  masked = freq[:, :, None] | time[:, None, :]
  # masked: [B, M, L]
  return tf.where(masked, tf.cast(fill, mel.dtype), mel)


sample_beta = recording_ops.sample_beta


def mixup(primary: dict, partner: dict, weight: tf.Tensor) -> dict:
  """weight * primary + (1 - weight) * partner for every tensor of a batch.

  Args:
    primary, partner: dicts of float tensors with batch dimension first
      (log-mel [B, M, L], PCA [B, P], one-hot labels [B, C], ...).
    weight: [B] mixing weights in [0, 1].
  """
  out = {}
  for key, value in primary.items():
    w = tf.reshape(tf.cast(weight, value.dtype),
                   [-1] + [1] * (len(value.shape) - 1))
    other = tf.cast(partner[key], value.dtype)
    out[key] = other + w * (value - other)  # = w * value + (1 - w) * other
  return out


# ---------------------------------------------------------------------------
# The config-built list of image ops, each with its own random stream.

TIME_STREAM = 0     # crop/pad, shift and flip (time_indices)
_SPLIT_STREAMS = 3  # streams 0-2: the three splits of a view's seed (0.4)


@dataclasses.dataclass(frozen=True)
class ImageOp:
  """An augmentation of the normalised image: apply(image [b, M, L] float32,
  seed [2], aug: AugmentConfig, **params) -> image of the same shape."""
  name: str
  stream: int
  apply: Callable[..., tf.Tensor]


IMAGE_OPS: Dict[str, ImageOp] = {}
RECORDING_OPS: Dict[str, ImageOp] = {}   # below: ops on the log-mel in dB


def _register(registry: Dict[str, "ImageOp"], kind: str, name: str,
              stream: int, apply: Callable[..., tf.Tensor]) -> None:
  """One op into its registry; its stream must be free in every registry
  (image and recording ops share the numbering)."""
  if name in registry:
    raise ValueError(f"{kind} op {name!r} is already registered")
  taken = {op.stream: op.name for ops in (IMAGE_OPS, RECORDING_OPS)
           for op in ops.values()}
  if stream == TIME_STREAM or stream in taken or stream < 0:
    owner = taken.get(stream, "crop/shift/flip")
    raise ValueError(f"{kind} op {name!r}: stream {stream} is {owner}'s; "
                     "pick a number no op uses")
  registry[name] = ImageOp(name, stream, apply)


def _check(registry: Dict[str, "ImageOp"], field: str,
           names: Sequence[str]) -> None:
  unknown = [n for n in names if n not in registry]
  if unknown:
    raise ValueError(f"unknown augment.{field} {unknown}; registered: "
                     f"{sorted(registry)} (augment.register_"
                     f"{field[:-1]})")


def _apply(registry: Dict[str, "ImageOp"], field: str, x: tf.Tensor,
           seed: tf.Tensor, aug) -> tf.Tensor:
  """x -> the config's ops of one kind (aug.<field>) applied in order."""
  params = dict(aug.op_params)
  for name in getattr(aug, field):
    _check(registry, field, [name])
    op = registry[name]
    x = op.apply(x, op_seed(seed, op.stream), aug,
                 **dict(params.get(name, ())))
  return x


def register_image_op(name: str, stream: int,
                      apply: Callable[..., tf.Tensor]) -> None:
  """Makes an op nameable in AugmentConfig.image_ops. stream: a number no
  other op uses (its random numbers are op_seed(seed, stream))."""
  _register(IMAGE_OPS, "image", name, stream, apply)


def check_image_ops(names: Sequence[str]) -> None:
  _check(IMAGE_OPS, "image_ops", names)


def op_seed(seed: tf.Tensor, stream: int) -> tf.Tensor:
  """[2] seed of one random stream of a view's seed [2].

  Streams 0-2 (crop/shift/flip, erasing, SpecAugment) are the three splits
  tagger 0.4 drew, so their numbers (and every figure measured with them)
  stay as they were; any other stream folds its number into the seed, so
  adding an op moves no other op's numbers.
  """
  if stream < _SPLIT_STREAMS:
    return split_seed(seed, _SPLIT_STREAMS)[stream]
  return tf.random.experimental.stateless_fold_in(seed, stream)


def apply_image_ops(image: tf.Tensor, seed: tf.Tensor, aug) -> tf.Tensor:
  """image [b, M, L] -> the config's image ops applied in order."""
  return _apply(IMAGE_OPS, "image_ops", image, seed, aug)


def _erasing_op(image, seed, aug):
  if aug.erase_probability <= 0:
    return image
  return random_erasing(image, seed, probability=aug.erase_probability,
                        area_range=aug.erase_area,
                        aspect_range=aug.erase_aspect,
                        fill_range=aug.erase_fill)


def _spec_augment_op(image, seed, aug):
  return spec_augment(image, seed, freq_masks=aug.freq_masks,
                      freq_width=aug.freq_mask_width,
                      time_masks=aug.time_masks,
                      time_fraction=aug.time_mask_fraction)


def _freq_mixstyle_op(image, seed, aug, alpha: float = 0.3,
                      probability: float = 0.5):
  del aug
  return recording_ops.freq_mixstyle(image, seed, alpha=alpha,
                                     probability=probability)


register_image_op("random_erasing", 1, _erasing_op)
register_image_op("spec_augment", 2, _spec_augment_op)
register_image_op("freq_mixstyle", 8, _freq_mixstyle_op)


# ---------------------------------------------------------------------------
# Augmentations of the recording: ops on the log-mel in dB, before the
# normalisation, that change what a microphone, a room or a player would
# (level, channel, background, reverberation, tuning). They share the
# random streams' numbering with the image ops; AugmentConfig.recording_ops
# names them, op_params sets their arguments.

def register_recording_op(name: str, stream: int,
                          apply: Callable[..., tf.Tensor]) -> None:
  """As register_image_op, for an op on the log-mel [b, M, L] in dB:
  apply(log_mel_db, seed, aug, **params) -> the same shape."""
  _register(RECORDING_OPS, "recording", name, stream, apply)


def check_recording_ops(names: Sequence[str]) -> None:
  _check(RECORDING_OPS, "recording_ops", names)


def apply_recording_ops(log_mel_db: tf.Tensor, seed: tf.Tensor,
                        aug) -> tf.Tensor:
  """log-mel [b, M, L] dB -> the config's recording ops applied in order."""
  return _apply(RECORDING_OPS, "recording_ops", log_mel_db, seed, aug)



register_recording_op("gain", 3, recording_ops.gain)
register_recording_op("equalizer", 4, recording_ops.equalizer)
register_recording_op("background_noise", 5, recording_ops.background_noise)
register_recording_op("reverberation", 6, recording_ops.reverberation)
register_recording_op("pitch_shift", 7, recording_ops.pitch_shift)
