"""Records -> host batches -> model batches: the one place both are made.

Host side (tf.data, on the host's CPU): `window_batch` cuts serialized
records to windows of at most L frames; `eval_host_batches` is the one
builder of evaluation batches (every clip at each fixed length, optionally
repeated for test-time augmentation), used by validation and by the scorer.

Device side (`augment_batch`, `prepare_eval_batch`; TF ops only, run inside
each replica's compiled step): crop/pad, shift and flip as one gather,
normalisation (`features.normalize`), the config's list of image ops
(`augment.apply_image_ops`: random erasing, SpecAugment, ...) and mixup.

Everything random is stateless and keyed by (seed, epoch or length index,
step), so a batch is reproducible on its own.
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf

from tagger import settings
from tagger.audio import features
from tagger.input import augment
from tagger.shards import records
from tagger.shards.records import BatchSpec

# Keys of a host batch (besides the record keys that records.py owns).
SEED = "seed"            # int64 [b, 2]: per-row seeds; a slice uses its row 0
ROW = "row"              # int64 [b]: eval batches: position in the eval order
FRACTION = "fraction"    # float32 [b]: eval batches, TTA 'even': where each
                         # row's window lies in its clip, in [0, 1)
PARTNER = "partner_"     # prefix of the mixup partner's keys
EPOCH = "epoch"          # int64 []: training batches: the epoch it was made
                         # for (the trainer counts the tf.data service's)
# Keys of a model batch (what augment_batch / prepare_eval_batch return).
TARGET = "target"        # float32 [b, C] one-hot or multi-hot (mixed) labels
WEIGHT = "verified"      # float32 [b] manually_verified (mixed)
CLIP_WEIGHT = "clip_weight"  # float32 [b] label fixes' loss weight (mixed;
                             # only when a training has label fixes)


def key(seed: int, index, step) -> tf.Tensor:
  """[2] int64 stateless seed for one (seed, epoch or length index, step)."""
  index = tf.cast(index, tf.int64)
  return tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + index,
                   tf.cast(step, tf.int64)])


def row_seeds(key_: tf.Tensor, first_row, rows) -> tf.Tensor:
  """int64 [rows, 2]: distinct seeds for rows first_row.. of a global batch."""
  row = tf.cast(first_row, tf.int64) + tf.range(rows, dtype=tf.int64)
  return tf.stack([tf.fill([rows], key_[0] * 7919 + key_[1]), row], axis=1)


# ---------------------------------------------------------------------------
# Host: records -> windows.


def window_batch(serialized: tf.Tensor, spec: BatchSpec, length: tf.Tensor,
                 key_: tf.Tensor,
                 fraction: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
  """string [b] records -> host batch with log_mel float16 [b, L, M]; a
  clip longer than L gets the window at `fraction` [b] of its slack
  (random without it)."""
  if fraction is None:
    fraction = tf.random.stateless_uniform(tf.shape(serialized), key_)
  keys = [records.PCA, records.LABEL, records.MANUALLY_VERIFIED]
  if spec.multi_label:
    keys.append(records.LABELS)
  if spec.num_sources > 1:
    keys.append(records.SOURCE)
  parsed = records.parse_windows(
      serialized, spec.pca_dim, spec.num_mels, fraction, length, keys=keys)
  out = {
      records.LOG_MEL: parsed[records.LOG_MEL],
      records.WINDOW_FRAMES: parsed[records.WINDOW_FRAMES],
      records.PCA: parsed[records.PCA],
      records.LABEL: tf.cast(parsed[records.LABEL], tf.int32),
      records.MANUALLY_VERIFIED: tf.cast(parsed[records.MANUALLY_VERIFIED],
                                         tf.int32),
  }
  if spec.multi_label:
    # labels: sparse [b, n] indices -> multi-hot uint8 [b, C]
    out[records.LABELS] = tf.cast(tf.sparse.to_indicator(
        parsed[records.LABELS], spec.num_classes), tf.uint8)
  if spec.num_sources > 1:
    out[records.SOURCE] = tf.cast(parsed[records.SOURCE], tf.int32)
  return out


TTA_MODES = ("random", "even")


def even_fractions(rows, repeats: int) -> tf.Tensor:
  """float32 [rows]: ((row % repeats) + 0.5) / repeats, the window positions
  of TTA 'even' (each clip's repeats spread evenly over it)."""
  row = tf.range(rows) % repeats
  return (tf.cast(row, tf.float32) + 0.5) / float(repeats)


def eval_host_batches(serialized: tf.data.Dataset, spec: BatchSpec,
                      lengths: Sequence[int], *, clips_per_batch: int,
                      repeats: int = 1, seed: int = 0, num_clips: int = 0,
                      tta: str = "random") -> tf.data.Dataset:
  """Host batches of every clip at the first length, then all at the next...

  serialized: the clips' records in order. Each batch holds clips_per_batch
  clips (the last of a length may hold fewer), each repeated `repeats` times
  in a row (test-time augmentation: every repeat gets its own window and
  crop). A clip longer than the length gets a seeded random window, and a
  shorter one a seeded random place (tta 'random'), or the repeats spread
  evenly over the clip (tta 'even': fractions (r + 0.5) / repeats, the same
  for every clip wherever it is in the input, as the SavedModel does). With
  num_clips > 0 every row gets ROW = length index * num_clips + clip index.
  The length is data, not a constant, so every batch has the same element
  spec and a forward pass over them is traced once.
  """
  def at_length(index, length):
    return serialized.batch(clips_per_batch).enumerate().map(
        lambda j, batch: (index, j, length, batch))

  def cut(index, j, length, batch):
    if repeats > 1:
      batch = tf.repeat(batch, repeats)
    key_ = key(seed, index, j)
    rows = tf.shape(batch)[0]
    fraction = even_fractions(rows, repeats) if tta == "even" else None
    out = window_batch(batch, spec, length, key_, fraction)
    out[SEED] = row_seeds(key_, 0, rows)
    if fraction is not None:
      out[FRACTION] = fraction
    if num_clips:
      out[ROW] = (index * num_clips + j * clips_per_batch +
                  tf.range(rows, dtype=tf.int64))
    return out

  if tta not in TTA_MODES:
    raise ValueError(f"tta must be one of {TTA_MODES}, not {tta!r}")
  lengths = [int(x) for x in lengths]
  plan = tf.data.Dataset.from_tensor_slices(
      (tf.range(len(lengths), dtype=tf.int64),
       tf.constant(lengths, tf.int32)))
  return plan.flat_map(at_length).map(
      cut, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# ---------------------------------------------------------------------------
# Device: host batch -> model batch. TF ops only; run in the replica step.


def _view(batch: Dict[str, tf.Tensor], prefix: str, spec: BatchSpec,
          aug: settings.AugmentConfig, seed: tf.Tensor,
          train: bool) -> tf.Tensor:
  """One side of a batch -> float32 [b, M, L, 1] crop/padded, augmented."""
  log_mel = batch[prefix + records.LOG_MEL]
  # log_mel: [b, L, M] float16 dB (moved as 16 bits until the cast)
  length = tf.shape(log_mel)[1]
  index, valid = augment.time_indices(
      batch[prefix + records.WINDOW_FRAMES], length,
      augment.op_seed(seed, augment.TIME_STREAM), pad_mode=aug.pad_mode,
      shift_fraction=aug.shift_fraction if train else 0.0,
      flip_probability=aug.flip_probability if train else 0.0,
      offset_fraction=None if train else batch.get(prefix + FRACTION))
  lo, hi = spec.normalization
  # 'constant' padding fills silence: lo dB, 0 after normalisation.
  image = tf.transpose(augment.gather_time(log_mel, index, valid, fill=lo),
                       [0, 2, 1])
  image = tf.cast(image, tf.float32)
  # image: [b, M, L] float32 dB
  if train and aug.recording_ops:
    image = augment.apply_recording_ops(image, seed, aug)
  image = features.normalize(image, lo, hi)
  # image: [b, M, L] float32 in [0, 1]
  if train:
    image = augment.apply_image_ops(image, seed, aug)
  return image[..., None]


def _target(batch, prefix: str, spec: BatchSpec) -> tf.Tensor:
  """float32 [b, C]: one-hot labels, or multi-hot for multi-label data."""
  if spec.multi_label:
    return tf.cast(batch[prefix + records.LABELS], tf.float32)
  return tf.one_hot(batch[prefix + records.LABEL], spec.num_classes)


def _side(batch, prefix: str, spec: BatchSpec, aug: settings.AugmentConfig,
          seed: tf.Tensor) -> Dict[str, tf.Tensor]:
  side = {
      records.LOG_MEL: _view(batch, prefix, spec, aug, seed, train=True),
      records.PCA: batch[prefix + records.PCA],
      TARGET: _target(batch, prefix, spec),
      WEIGHT: tf.cast(batch[prefix + records.MANUALLY_VERIFIED], tf.float32),
  }
  if spec.num_sources > 1:  # one-hot [b, S], mixed as the targets
    side[records.SOURCE] = tf.one_hot(batch[prefix + records.SOURCE],
                                      spec.num_sources)
  if prefix + CLIP_WEIGHT in batch:   # label fixes: [b], mixed likewise
    side[CLIP_WEIGHT] = batch[prefix + CLIP_WEIGHT]
  return side


def _slice_seed(batch) -> tf.Tensor:
  """[2]: the seed of a replica's slice (its first row's; replicas draw
  different numbers). A slice may be empty (the last, uneven batch split
  over replicas): then any seed will do."""
  seeds = batch[SEED]
  return tf.concat([seeds, tf.zeros([1, 2], seeds.dtype)], axis=0)[0]


def augment_parts(batch: Dict[str, tf.Tensor], spec: BatchSpec,
                  aug: settings.AugmentConfig):
  """(primary, partner, mixup weight [b]) of augment_batch, before mixing.

  partner and weight are None when mixup is off (alpha <= 0).
  """
  seed = _slice_seed(batch)
  # seed: [2]
  seeds = augment.split_seed(seed, 3)
  primary = _side(batch, "", spec, aug, seeds[0])
  if aug.mixup_alpha <= 0:
    return primary, None, None
  partner = _side(batch, PARTNER, spec, aug, seeds[1])
  weight = augment.sample_beta(tf.shape(batch[SEED])[:1], aug.mixup_alpha,
                               seeds[2])
  # weight: [b] in [0, 1]
  return primary, partner, weight


def augment_batch(batch: Dict[str, tf.Tensor], spec: BatchSpec,
                  aug: settings.AugmentConfig) -> Dict[str, tf.Tensor]:
  """Host batch -> model batch: crop/pad, augment, mixup.

  Returns log_mel float32 [b, M, L, 1] in [0, 1], pca [b, P],
  target float32 [b, C] (rows sum to 1; multi-label: multi-hot, mixed),
  verified float32 [b] (and source [b, S] when the data has sources).
  """
  primary, partner, weight = augment_parts(batch, spec, aug)
  if partner is None:
    return primary
  return augment.mixup(primary, partner, weight)


def prepare_eval_batch(batch: Dict[str, tf.Tensor], spec: BatchSpec,
                       pad_mode: str = "symmetric") -> Dict[str, tf.Tensor]:
  """Host eval batch -> model batch: crop/pad only, one-hot targets (and
  the rows' positions, when the batch has them)."""
  aug = settings.AugmentConfig(pad_mode=pad_mode)
  out = {
      records.LOG_MEL: _view(batch, "", spec, aug, _slice_seed(batch),
                             train=False),
      records.PCA: batch[records.PCA],
      TARGET: _target(batch, "", spec),
      WEIGHT: tf.cast(batch[records.MANUALLY_VERIFIED], tf.float32),
  }
  if ROW in batch:
    out[ROW] = batch[ROW]
  return out


def windows_at(log_mel: tf.Tensor, length: int,
               start: tf.Tensor) -> Dict[str, tf.Tensor]:
  """One recording's log-mel time-major [T, M] -> the windows of `length`
  frames at start [r] (int32), as records.parse_windows cuts them: log_mel
  [r, L, M] (zeros after the recording), window_frames [r]."""
  frames = tf.shape(log_mel)[0]
  valid = tf.minimum(frames - start, length)
  # valid: [r]
  index = start[:, None] + tf.range(length)[None, :]
  # index: [r, L]
  inside = tf.range(length)[None, :] < valid[:, None]
  windows = tf.gather(log_mel, tf.minimum(index, frames - 1))
  # windows: [r, L, M]
  windows = tf.where(inside[:, :, None], windows, tf.zeros_like(windows))
  return {records.LOG_MEL: windows, records.WINDOW_FRAMES: valid}


def clip_windows(log_mel: tf.Tensor, length: int,
                 fraction: tf.Tensor) -> Dict[str, tf.Tensor]:
  """One clip's windows for its rows: a clip longer than L gets the window
  at fraction [r] of its slack (as parse_windows), a shorter one is taken
  whole."""
  frames = tf.shape(log_mel)[0]
  start = records.window_offset(tf.maximum(frames - length, 0), fraction)
  # start: [r]
  return windows_at(log_mel, length, start)
