"""The training and validation input: pairing, bucketing, folds, replicas."""

import collections
import os
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tagger import settings
from tagger.datasets import synthetic
from tagger.input import batches as batches_lib
from tagger.input import eval_data
from tagger.input import lengths as lengths_lib
from tagger.input import picture
from tagger.input import pipeline as ip
from tagger.shards import data_info
from tagger.shards import records
from conftest import two_cpu_strategy  # pylint: disable=g-bad-import-order

NUM_RECORDS, FOLDS, CLASSES, PCA = 240, 4, 6, 4


@pytest.fixture(scope="module")
def info(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("shards"))
  synthetic.write_synthetic_shards(path, synthetic.SyntheticSet(
      NUM_RECORDS, num_classes=CLASSES, num_folds=FOLDS, pca_dim=PCA,
      median_frames=60, sigma=0.5, shards_per_fold=2, seed=3))
  return data_info.load_data_info(path)


CONFIG = settings.InputConfig(batch_size=16, length_quantum=8,
                              shuffle_buffer=32, pairing_block=64,
                              eval_lengths=(20, 50))


def fold_of(i):
  return synthetic.synthetic_fold(i, CLASSES, FOLDS)


def ids(batch, prefix=""):
  """Record index of each row (synthetic pca[0])."""
  return batch[prefix + records.PCA][:, 0].numpy().astype(int).tolist()


def epoch_batches(info, config=CONFIG, fold=1, epoch=0):
  folds = data_info.select_folds(info, fold, "train")
  ds = ip.train_dataset(info, folds, config, start_epoch=epoch, num_epochs=1)
  return list(ds)


def test_each_record_once_as_primary_and_once_as_partner(info):
  batches = epoch_batches(info)
  steps = ip.steps_per_epoch(info, data_info.select_folds(info, 1, "train"),
                             CONFIG)
  assert len(batches) == steps == 180 // 16
  primary = sum((ids(b) for b in batches), [])
  partner = sum((ids(b, batches_lib.PARTNER) for b in batches), [])
  assert len(set(primary)) == len(primary) == steps * 16
  assert sorted(primary) == sorted(partner)
  assert all(fold_of(i) != 1 for i in primary)  # fold 1 is validation
  # Partners are not limited to the same batch.
  same_batch = sum(set(ids(b)) == set(ids(b, batches_lib.PARTNER))
                   for b in batches)
  assert same_batch == 0


@pytest.mark.parametrize("pairing", ip.PAIRINGS)
def test_pairing_changes_per_epoch_and_is_reproducible(info, pairing):
  config = dataclasses.replace(CONFIG, pairing=pairing)
  folds = data_info.select_folds(info, 1, "train")
  two = list(ip.train_dataset(info, folds, config, num_epochs=2))
  steps = len(two) // 2
  pairs = lambda bs: [p for b in bs
                      for p in zip(ids(b), ids(b, batches_lib.PARTNER))]
  first, second = pairs(two[:steps]), pairs(two[steps:])
  assert first != second
  primary, partner = {a for a, _ in first}, {b for _, b in first}
  if pairing in ("block", "global", "auto"):
    assert primary == partner
  else:  # each reader drops its own 180 % 16 leftover records
    assert len(primary ^ partner) <= 2 * (180 % 16)
  if pairing in ("global", "auto"):  # the reference's: whole-set orders
    assert ip.pairing_mode(info, folds, config) == "global"
  # Epoch 1 on its own (a resumed run) is epoch 1 of the longer run.
  assert pairs(epoch_batches(info, config, epoch=1)) == second
  # The logged table is the one the batches use.
  table = ip.pairing_table(info, folds, config, epoch=1)
  assert [(int(a[5:11]), int(b[5:11])) for a, b in table] == second


def test_same_seed_same_batches_other_seed_other_batches(info):
  a = epoch_batches(info)
  b = epoch_batches(info)
  c = epoch_batches(info, dataclasses.replace(CONFIG, seed=1))
  for x, y in zip(a, b):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  assert [ids(x) for x in a] != [ids(x) for x in c]


def test_one_bucketed_length_per_batch(info):
  lo, hi = lengths_lib.length_range(info, CONFIG)
  allowed = lengths_lib.possible_lengths(lo, hi, 8)
  lengths = set()
  for batch in epoch_batches(info) + epoch_batches(info, epoch=1):
    length = batch[records.LOG_MEL].shape[1]
    assert length in allowed and length % 8 == 0
    assert batch[batches_lib.PARTNER + records.LOG_MEL].shape[1] == length
    assert (batch[records.WINDOW_FRAMES].numpy() <= length).all()
    lengths.add(length)
  assert len(lengths) > 2
  # quantum 1 gives any length in [lo, hi).
  exact = dataclasses.replace(CONFIG, length_quantum=1)
  for batch in epoch_batches(info, exact):
    assert lo <= batch[records.LOG_MEL].shape[1] < hi


def test_windows_hold_the_records_frames(info):
  full = {}
  for path in info.files(info.folds):
    for raw in tf.data.TFRecordDataset(path):
      ex = records.example_to_numpy(raw.numpy(), PCA)
      full[int(ex["pca"][0])] = ex["log_mel"]  # [M, T]
  batch = epoch_batches(info)[0]
  for row, i in enumerate(ids(batch)):
    clip = full[i].T  # [T, M]
    valid = int(batch[records.WINDOW_FRAMES][row])
    window = batch[records.LOG_MEL][row].numpy().astype(np.float32)
    assert valid == min(len(clip), window.shape[0])
    # The window is a contiguous stretch of the clip.
    starts = [s for s in range(len(clip) - valid + 1)
              if np.array_equal(clip[s:s + valid], window[:valid])]
    assert starts
    assert not window[valid:].any()


def test_validation_sees_every_clip_once_per_length(info):
  val = data_info.select_folds(info, 1, "validation")
  seen = collections.Counter()
  for batch in eval_data.eval_dataset(info, val, CONFIG, (20, 50)):
    length = batch[records.LOG_MEL].shape[1]
    assert length in (20, 50)
    seen.update((length, i) for i in ids(batch))
  expected = {(l, i) for l in (20, 50) for i in range(NUM_RECORDS)
              if fold_of(i) == 1}
  assert set(seen) == expected and set(seen.values()) == {1}
  model_batch = batches_lib.prepare_eval_batch(batch, info.batch_spec)
  assert model_batch[records.LOG_MEL].shape[1:] == (64, 50, 1)


def test_validation_on_replicas_gets_full_batches_and_every_clip_once(info):
  """Per-replica batches for 2 pipelines x 2 replicas: all full, a count
  that every replica of every step gets one of, each clip once (ROW)."""
  val = data_info.select_folds(info, 1, "validation")
  n = info.num_records(val)
  seen, counts, clip_at = collections.Counter(), [], {}
  for pipeline in range(2):
    context = tf.distribute.InputContext(2, pipeline, 4)
    batches = list(eval_data.eval_dataset(info, val, CONFIG, (20, 50),
                                   batch_size=12, input_context=context))
    counts.append(len(batches))
    for batch in batches:
      # 12 / 4 replicas, always full
      assert batch[batches_lib.ROW].shape == (3,)
      for row, i in zip(batch[batches_lib.ROW].numpy(), ids(batch)):
        if row >= 0:
          seen[int(row)] += 1
          clip_at[int(row)] = i
  assert counts[0] == counts[1] and counts[0] % 2 == 0
  assert set(seen) == set(range(2 * n)) and set(seen.values()) == {1}
  assert [clip_at[r] for r in range(n)] == [clip_at[n + r] for r in range(n)]
  assert {clip_at[r] for r in range(n)} == {
      i for i in range(NUM_RECORDS) if fold_of(i) == 1}


def test_model_batch_ranges_and_mixed_targets(info):
  batch = epoch_batches(info)[0]
  out = batches_lib.augment_batch(batch, info.batch_spec,
                         settings.AugmentConfig(mixup_alpha=0.5))
  length = batch[records.LOG_MEL].shape[1]
  assert out[records.LOG_MEL].shape == (16, 64, length, 1)
  assert out[records.LOG_MEL].dtype == tf.float32
  x = out[records.LOG_MEL].numpy()
  assert x.min() >= -1e-6 and x.max() <= 1 + 1e-6
  target = out[batches_lib.TARGET].numpy()
  np.testing.assert_allclose(target.sum(axis=1), 1.0, atol=1e-6)
  assert (target >= 0).all() and ((target > 0).sum(axis=1) <= 2).all()
  assert ((target > 0).sum(axis=1) == 2).any()  # some rows really mixed


def test_no_augmentation_is_crop_pad_only(info):
  plain = settings.AugmentConfig(shift_fraction=0.0, flip_probability=0.0,
                                 erase_probability=0.0, mixup_alpha=0.0)
  batch = epoch_batches(info)[0]
  out = batches_lib.augment_batch(batch, info.batch_spec,
                                  plain)[records.LOG_MEL].numpy()
  lo, hi = info.normalization
  mel = (batch[records.LOG_MEL].numpy().astype(np.float32) - lo) / (hi - lo)
  frames = batch[records.WINDOW_FRAMES].numpy()
  length = mel.shape[1]
  for row in range(len(frames)):
    if frames[row] == length:  # a full window passes through unchanged
      np.testing.assert_allclose(out[row, :, :, 0], mel[row].T, atol=1e-6)
    else:  # a short clip: symmetric padding around a copy of the clip
      clip = mel[row, :frames[row]].T
      found = any(np.allclose(out[row, :, s:s + frames[row], 0], clip)
                  for s in range(length - frames[row] + 1))
      assert found


def test_host_placement_gives_the_device_placement_batches(info):
  device = epoch_batches(info)[:2]
  host = epoch_batches(info, dataclasses.replace(CONFIG, placement="host"))
  aug = settings.AugmentConfig()
  for raw, done in zip(device, host[:2]):
    expect = batches_lib.augment_batch(raw, info.batch_spec, aug)
    for key in expect:
      np.testing.assert_allclose(done[key], expect[key], atol=1e-6)


def test_per_replica_batches_under_mirrored_strategy(info):
  devices = tf.config.list_logical_devices("CPU")
  assert len(devices) == 2, "conftest sets up two logical CPUs"
  strategy = two_cpu_strategy()
  folds = data_info.select_folds(info, 1, "train")
  aug = settings.AugmentConfig()
  dist = strategy.distribute_datasets_from_function(
      lambda ctx: ip.train_dataset(info, folds, CONFIG, aug, num_epochs=1,
                                   input_context=ctx))

  @tf.function
  def step(batch):
    def replica_fn(b):
      out = batches_lib.augment_batch(b, info.batch_spec, aug)
      return (tf.shape(out[records.LOG_MEL]), b[batches_lib.SEED][0],
              b[records.PCA][:, 0])
    return strategy.run(replica_fn, args=(batch,))

  steps, seen = 0, []
  for batch in dist:
    shapes, seeds, rows = step(batch)
    shapes = [s.numpy() for s in strategy.experimental_local_results(shapes)]
    seeds = [s.numpy() for s in strategy.experimental_local_results(seeds)]
    assert [s[0] for s in shapes] == [8, 8]  # global 16 over 2 replicas
    assert shapes[0][2] == shapes[1][2]  # one length per global batch
    assert not np.array_equal(seeds[0], seeds[1])  # replicas differ
    for r in strategy.experimental_local_results(rows):
      seen += r.numpy().astype(int).tolist()
    steps += 1
  assert steps == ip.steps_per_epoch(info, folds, CONFIG, num_replicas=2)
  assert len(seen) == len(set(seen)) == steps * 16


def test_clear_errors(info, tmp_path):
  with pytest.raises(data_info.InputError, match="manifest.json not found"):
    data_info.load_data_info(str(tmp_path))
  with pytest.raises(data_info.InputError, match="fold 9 is not in"):
    data_info.select_folds(info, 9, "train")
  with pytest.raises(settings.SettingsError,
                     match="unknown InputConfig keys"):
    settings.from_mapping(settings.InputConfig, {"batch_sise": 3})
  with pytest.raises(data_info.InputError, match="does not split over 3 replicas"):
    ip.steps_per_epoch(info, (0,), CONFIG, num_replicas=3)


def test_batch_picture_is_a_png(info):
  png = picture.batch_picture(info, CONFIG, settings.AugmentConfig(), fold=1,
                         rows=3)
  assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_truncated_or_missing_shard_is_named(info, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  copy = str(tmp_path / "copy")
  shutil.copytree(info.data_dir, copy)
  first = os.path.join(copy, info.manifest.shards[0].file)
  with open(first, "r+b") as f:
    f.truncate(1000)
  with pytest.raises(data_info.InputError, match="1000 bytes, the manifest says"):
    data_info.load_data_info(copy)
  os.remove(first)
  with pytest.raises(data_info.InputError, match="missing"):
    data_info.load_data_info(copy)
