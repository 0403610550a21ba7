"""Batch augmentation ops, checked by value, eagerly and inside Dataset.map."""

import numpy as np
import pytest
import tensorflow as tf

from tagger.input import augment
from tagger.input import recording_ops

SEED = tf.constant([3, 7], tf.int64)


def run_both_ways(fn, *args):
  """fn(*args) eagerly and inside tf.data's map; both results."""
  eager = fn(*args)
  ds = tf.data.Dataset.from_tensors(tuple(args)).map(lambda *a: fn(*a))
  return eager, next(iter(ds))


@pytest.mark.parametrize("mode", ["symmetric", "wrap"])
def test_padding_reproduces_numpy(mode):
  lengths = tf.constant([3, 5, 1])
  for target in (7, 12):
    index, valid = augment.time_indices(lengths, target, SEED, pad_mode=mode)
    for b, n in enumerate(lengths.numpy()):
      clip = np.arange(n)
      row = index[b].numpy()
      # The output is a window of numpy.pad(clip, ..., mode) that holds the
      # whole clip in order (placed at some offset).
      padded = np.pad(clip, (target, target), mode=mode)
      windows = np.lib.stride_tricks.sliding_window_view(padded, target)
      assert (windows == row).all(axis=1).any()
      holds = np.lib.stride_tricks.sliding_window_view(row, n)
      assert (holds == clip).all(axis=1).any()
      assert valid[b].numpy().all()
      assert np.isin(np.arange(n), row).all()  # the whole clip is in


def test_constant_padding_masks_outside():
  index, valid = augment.time_indices(tf.constant([4]), 10, SEED,
                                      pad_mode="constant")
  mel = tf.ones([1, 4, 2])  # [B, T, M]
  out = augment.gather_time(mel, index, valid).numpy()
  assert out.sum() == 2 * 4 and valid.numpy().sum() == 4


def test_crop_windows_lie_inside_the_clip_and_vary():
  lengths = tf.constant([900, 500, 263])
  starts = set()
  for s in range(20):
    index, valid = augment.time_indices(lengths, 263, tf.constant([s, 1]))
    idx = index.numpy()
    for b, n in enumerate(lengths.numpy()):
      assert idx[b].min() >= 0 and idx[b].max() < n
      assert np.array_equal(np.diff(idx[b]), np.ones(262))  # contiguous
    starts.add(int(idx[0, 0]))
  assert len(starts) > 5


def test_shift_and_flip():
  lengths = tf.constant([10] * 64)
  index, _ = augment.time_indices(lengths, 10, SEED, flip_probability=1.0)
  assert (index.numpy() == np.arange(10)[::-1]).all()
  index, _ = augment.time_indices(lengths, 10, SEED, shift_fraction=0.6)
  idx = index.numpy()
  shifted = [row for row in idx if row[0] != 0 or row[-1] != 9]
  assert shifted  # some rows moved; edges repeat the nearest frame
  for row in idx:
    assert np.all(np.diff(row) >= 0) and np.all(np.diff(row) <= 1)


def test_probability_zero_is_identity():
  mel = tf.random.uniform([4, 8, 16], seed=1)
  index, valid = augment.time_indices(tf.constant([16] * 4), 16, SEED,
                                      flip_probability=0.0)
  time_major = tf.transpose(mel, [0, 2, 1])
  np.testing.assert_array_equal(
      augment.gather_time(time_major, index, valid), time_major)
  np.testing.assert_array_equal(augment.spec_augment(mel, SEED), mel)
  np.testing.assert_array_equal(
      augment.random_erasing(mel, SEED, probability=0.0), mel)


def test_random_erasing_area_and_fill_within_bounds():
  mel = tf.fill([256, 64, 300], -1.0)
  eager, mapped = run_both_ways(
      lambda m, s: augment.random_erasing(m, s, probability=1.0), mel, SEED)
  for out in (eager.numpy(), mapped.numpy()):
    for example in out:
      erased = example != -1.0
      area = erased.mean()
      assert 0.015 <= area <= 0.41
      values = np.unique(example[erased])
      assert values.size == 1 and 0.0 <= values[0] <= 1.0
      rows, cols = np.nonzero(erased)
      assert erased[rows.min():rows.max() + 1,
                    cols.min():cols.max() + 1].all()  # a rectangle
  np.testing.assert_array_equal(eager, mapped)  # same seed, same result


def test_mixup_weights_and_labels():
  weight = augment.sample_beta([1000], 0.5, SEED)
  w = weight.numpy()
  assert (w >= 0).all() and (w <= 1).all() and 0.4 < w.mean() < 0.6
  labels = tf.one_hot(tf.range(1000) % 7, 7)
  partner = tf.one_hot((tf.range(1000) + 3) % 7, 7)
  mel = tf.random.uniform([1000, 4, 5])
  out = augment.mixup({"label": labels, "mel": mel},
                      {"label": partner, "mel": 1 - mel}, weight)
  np.testing.assert_allclose(out["label"].numpy().sum(axis=1), 1.0,
                             rtol=1e-6)
  np.testing.assert_allclose(
      out["mel"].numpy(),
      w[:, None, None] * mel.numpy() + (1 - w[:, None, None]) *
      (1 - mel.numpy()), rtol=1e-5, atol=1e-6)


def test_same_seed_same_indices_inside_tf_function():
  fn = tf.function(lambda s: augment.time_indices(
      tf.constant([300, 800]), 500, s, shift_fraction=0.6,
      flip_probability=0.5)[0])
  np.testing.assert_array_equal(fn(SEED), fn(SEED))
  assert not np.array_equal(fn(SEED), fn(tf.constant([4, 7], tf.int64)))


def test_spec_augment_masks_whole_bands_within_bounds():
  mel = tf.ones([16, 64, 200])
  out = augment.spec_augment(mel, SEED, freq_masks=2, freq_width=8,
                             time_masks=2, time_fraction=0.1).numpy()
  for example in out:
    rows = np.flatnonzero((example == 0).all(axis=1))  # masked mel bins
    cols = np.flatnonzero((example == 0).all(axis=0))  # masked frames
    assert len(rows) <= 16 and len(cols) <= 40
    # Every zero lies in a masked row or column: masks are whole bands.
    zeros = example == 0
    zeros[rows, :] = False
    zeros[:, cols] = False
    assert not zeros.any()
  assert (out == 0).any()


def _probe(image, seed, aug, scale=1.0):
  """A test op: draws numbers from its stream, multiplies by `scale`."""
  del aug
  noise = tf.random.stateless_uniform(tf.shape(image)[:1], seed)
  return image * scale + 0.0 * noise[:, None, None]


def test_an_added_image_op_moves_no_other_ops_numbers():
  """Adding an op (here between erasing and SpecAugment) is one register
  call plus its config; erasing and SpecAugment draw what they drew."""
  from tagger import settings  # pylint: disable=g-import-not-at-top
  if "probe_test" not in augment.IMAGE_OPS:
    augment.register_image_op("probe_test", 9, _probe)
  with pytest.raises(ValueError, match="stream 9 is probe_test's"):
    augment.register_image_op("other_test", 9, _probe)
  with pytest.raises(ValueError, match="unknown augment.image_ops"):
    augment.check_image_ops(["random_erasing", "nonesuch"])
  image = tf.random.stateless_uniform([4, 16, 40], [1, 2])
  base = dict(erase_probability=1.0, freq_masks=2, time_masks=2)
  before = settings.AugmentConfig(**base)
  with_op = settings.from_mapping(settings.AugmentConfig, {
      **base, "image_ops": ["random_erasing", "probe_test", "spec_augment"],
      "op_params": {"probe_test": {"scale": 1.0}}})
  halved = settings.from_mapping(settings.AugmentConfig, {
      **base, "image_ops": ["probe_test"],
      "op_params": {"probe_test": {"scale": 0.5}}})
  out = augment.apply_image_ops(image, SEED, before)
  np.testing.assert_array_equal(
      augment.apply_image_ops(image, SEED, with_op), out)
  assert not np.array_equal(out, image)  # erasing and masks did act
  np.testing.assert_allclose(
      augment.apply_image_ops(image, SEED, halved), image * 0.5)
  # Streams 0-2 are the three splits of tagger 0.4's view seed.
  np.testing.assert_array_equal(augment.op_seed(SEED, 1),
                                augment.split_seed(SEED, 3)[1])
  assert not np.array_equal(augment.op_seed(SEED, 9), augment.op_seed(SEED, 1))


# ---------------------------------------------------------------------------
# Augmentations of the recording, and the level-free input normalisation.


def _log_mel(seed=0, b=4, m=64, l=60):
  rng = np.random.default_rng(seed)
  base = rng.uniform(-70, 10, (b, m, 1)) + rng.normal(0, 6, (b, m, l))
  return tf.constant(base, tf.float32)


@pytest.mark.parametrize("name", sorted(augment.RECORDING_OPS))
def test_recording_ops_are_seeded_and_change_the_clip(name):
  x = _log_mel()
  op = augment.RECORDING_OPS[name]
  a = op.apply(x, tf.constant([1, 2]), None)
  b = op.apply(x, tf.constant([1, 2]), None)
  c = op.apply(x, tf.constant([3, 4]), None)
  assert a.shape == x.shape and bool(tf.reduce_all(tf.math.is_finite(a)))
  np.testing.assert_array_equal(a, b)
  assert float(tf.reduce_max(tf.abs(a - c))) > 0.1
  assert float(tf.reduce_max(tf.abs(a - x))) > 0.1


def test_gain_and_equalizer_are_what_they_say():
  x = _log_mel()
  shifted = recording_ops.gain(x, tf.constant([5, 6]), None, max_db=6.0)
  step = (shifted - x).numpy()
  assert np.allclose(step, step[:, :1, :1], atol=1e-4)   # one level a clip
  assert np.all(np.abs(step) <= 6.0)
  eq = (recording_ops.equalizer(x, tf.constant([5, 6]), None) - x).numpy()
  assert np.allclose(eq, eq[:, :, :1], atol=1e-4)        # a curve per band
  assert np.all(np.abs(np.diff(eq[:, :, 0], axis=1)) < 2.0)  # smooth


def test_noise_and_room_only_add_power():
  x = _log_mel()
  for op in (recording_ops.background_noise, recording_ops.reverberation):
    y = op(x, tf.constant([7, 8]), None)
    # Added power: never quieter than the clip (but for the room's dry
    # share at most max_wet lower: 10 log10(0.3) = -5.2 dB).
    assert float(tf.reduce_min(y - x)) > -5.3


def test_recording_ops_in_a_config_reach_the_training_batch(tmp_path):
  from tagger import settings  # pylint: disable=g-import-not-at-top
  config = settings.default_config()
  config.augment.recording_ops = ("gain", "equalizer")
  config.augment.op_params = {"gain": {"max_db": 3.0}}
  aug = settings.augment_config(config)
  assert aug.recording_ops == ("gain", "equalizer")
  out = augment.apply_recording_ops(_log_mel(), tf.constant([1, 1]), aug)
  assert out.shape == (4, 64, 60)
  config.augment.recording_ops = ("gain", "nope")
  with pytest.raises(ValueError, match="unknown augment.recording_ops"):
    augment.apply_recording_ops(_log_mel(), tf.constant([1, 1]),
                                settings.augment_config(config))


@pytest.mark.parametrize("norm", ["clip", "clip_band"])
def test_clip_standardisation_takes_out_level_and_channel(norm):
  from tagger.model import architecture as architecture_lib  # pylint: disable=g-import-not-at-top
  from tagger.model import networks as model_lib  # pylint: disable=g-import-not-at-top
  model = model_lib.build_model(
      architecture_lib.Architecture(5, 0, backbone="small_cnn", input_norm=norm))
  image = tf.random.uniform([2, 64, 40, 1], 0.2, 0.6, seed=1)
  louder = image + 0.1                                   # a gain
  channel = image + tf.linspace(-0.05, 0.05, 64)[None, :, None, None]
  base = model({"log_mel": image})
  np.testing.assert_allclose(model({"log_mel": louder}), base, atol=1e-5)
  moved = model({"log_mel": channel})
  if norm == "clip_band":                                # an EQ too
    np.testing.assert_allclose(moved, base, atol=1e-5)
  else:
    assert float(tf.reduce_max(tf.abs(moved - base))) > 1e-6


# ---------------------------------------------------------------------------
# Freq-MixStyle: the per-band statistics of two examples mixed.


def test_mix_band_statistics_mixes_mean_and_std_per_band():
  image = tf.constant(np.random.default_rng(0).normal(
      np.arange(4)[:, None, None] * 3.0, np.arange(1, 5)[:, None, None],
      (4, 8, 50)), tf.float32)
  partner = tf.constant([1, 0, 3, 2])
  weight = tf.constant([0.25, 1.0, 0.0, 0.5])
  out = recording_ops.mix_band_statistics(image, partner, weight).numpy()
  x = image.numpy()
  mean, std = x.mean(axis=2), x.std(axis=2)
  for i, (j, w) in enumerate(zip([1, 0, 3, 2], [0.25, 1.0, 0.0, 0.5])):
    np.testing.assert_allclose(out[i].mean(axis=1),
                               w * mean[i] + (1 - w) * mean[j], atol=1e-4)
    np.testing.assert_allclose(out[i].std(axis=1),
                               w * std[i] + (1 - w) * std[j], rtol=1e-3)
    # The content (the standardised pattern) is the example's own.
    np.testing.assert_allclose(
        (out[i] - out[i].mean(1, keepdims=True)) / out[i].std(1,
                                                              keepdims=True),
        (x[i] - mean[i][:, None]) / std[i][:, None], atol=1e-3)
  np.testing.assert_allclose(out[1], x[1], atol=1e-5)   # weight 1: as it was


def test_freq_mixstyle_is_seeded_and_keeps_unchosen_examples():
  image = _log_mel(b=8) / 50.0
  a = recording_ops.freq_mixstyle(image, tf.constant([1, 2]), probability=0.5)
  b = recording_ops.freq_mixstyle(image, tf.constant([1, 2]), probability=0.5)
  np.testing.assert_array_equal(a, b)
  changed = np.abs((a - image).numpy()).max(axis=(1, 2)) > 1e-3
  assert 0 < changed.sum() < 8
  none = recording_ops.freq_mixstyle(image, tf.constant([1, 2]), probability=0.0)
  np.testing.assert_allclose(none, image, atol=1e-5)


def test_freq_mixstyle_runs_in_the_compiled_replica_step():
  """As an image op of the config: through apply_image_ops inside a
  tf.function (the replica step compiles the same call)."""
  from tagger import settings  # pylint: disable=g-import-not-at-top
  config = settings.default_config()
  config.augment.image_ops = ("freq_mixstyle",)
  config.augment.op_params = {"freq_mixstyle": {"probability": 1.0,
                                                "alpha": 0.3}}
  aug = settings.augment_config(config)
  image = _log_mel(b=6) / 50.0
  step = tf.function(lambda x, s: augment.apply_image_ops(x, s, aug))
  out = step(image, tf.constant([4, 5]))
  eager = augment.apply_image_ops(image, tf.constant([4, 5]), aug)
  np.testing.assert_allclose(out, eager, atol=1e-5)
  assert float(tf.reduce_max(tf.abs(out - image))) > 1e-2
