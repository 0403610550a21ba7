"""Multi-label data (FSDKaggle2019 layout): the `labels` column, several
train CSVs with sources, multi-hot records, sigmoid training under the GPU
default path, lwlrap scoring, and fine-tuning on new labels."""

import csv
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tagger import settings
from tagger.infer import score
from tagger.infer import scorer
from tagger.input import augment
from tagger.input import batches
from tagger.model import model_dir as model_dir_lib
from tagger.shards import data_info
from tagger.shards import output_folder
from tagger.shards import records
from tagger.shards import sharding
from tagger.train import trainer
from conftest import tiny_config, tone, two_cpu_strategy, wav_bytes  # pylint: disable=g-bad-import-order

FREQS = {"low": 300.0, "mid": 1200.0, "high": 4800.0, "top": 9000.0}


def _clip(labels, i):
  """A real WAV: the labels' tones summed (two labels: two tones)."""
  seconds = 0.5 + 0.05 * (i % 4)
  wave = sum(tone(seconds, FREQS[l], amp=0.3 / len(labels), seed=i)
             for l in labels)
  return wav_bytes(wave.astype(np.float32))


def _write(root, name, rows, header="labels"):
  """rows: (fname, [labels]) -> root/name.csv and root/name/*.wav."""
  folder = os.path.join(root, name)
  os.makedirs(folder, exist_ok=True)
  with open(os.path.join(root, f"{name}.csv"), "w", newline="",
            encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(["fname", header])
    for i, (fname, labels) in enumerate(rows):
      if labels and all(l in FREQS for l in labels) and "/" not in fname:
        with open(os.path.join(folder, fname), "wb") as out:
          out.write(_clip(labels, i))
      writer.writerow([fname, ",".join(labels or [])])
  return os.path.join(root, f"{name}.csv"), folder


def _dataset(root):
  """Curated: 6 single-label clips a class and 8 with two labels; noisy:
  3 a class; a row with a control character in one of its labels, and one
  whose name leads out of its folder."""
  names = sorted(FREQS)
  curated = [(f"c{k}_{i}.wav", [l]) for k, l in enumerate(names)
             for i in range(6)]
  curated += [(f"m{i}.wav", [names[i % 4], names[(i + 1) % 4]])
              for i in range(8)]
  curated += [("bad.wav", ["low", "hi\nssing"])]
  noisy = [(f"n{k}_{i}.wav", [l]) for k, l in enumerate(names)
           for i in range(3)]
  noisy += [("../escape.wav", ["low", "mid"])]
  return _write(root, "train_curated", curated), _write(
      root, "train_noisy", noisy)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("fsd2019"))
  (c_csv, c_dir), (n_csv, n_dir) = _dataset(root)
  out = os.path.join(root, "tfrecords")
  manifest = sharding.make_tfrecords(sharding.Options(
      csv=f"{c_csv},{n_csv}", audio_dir=f"{c_dir},{n_dir}",
      sources="curated,noisy", output_dir=out, num_folds=3, min_shards=1,
      num_workers=2, progress=False))
  return root, out, manifest


def test_labels_column_and_sources_shard_into_one_set(shards):
  root, out, manifest = shards
  assert manifest.multi_label is True
  assert list(manifest.sources) == ["curated", "noisy"]
  # 32 curated clips (the bad label skipped), 12 noisy (the hostile name
  # refused): one set, sources kept.
  assert manifest.per_source_counts == {"curated": 32, "noisy": 12}
  assert list(manifest.labels) == sorted(FREQS)
  # Labels counted per occurrence: 6 + 4 (mixtures) + 3 noisy each.
  assert manifest.per_class_counts == {l: 13 for l in FREQS}
  # Every train shard holds one fold and one source.
  assert {(s.fold, s.source) for s in manifest.shards} == {
      (f, s) for f in range(3) for s in ("curated", "noisy")}
  with open(os.path.join(out, output_folder.ERRORS), encoding="utf-8") as f:
    errors = {r["fname"]: r for r in csv.DictReader(f)}
  assert set(errors) == {"bad.wav", "../escape.wav"}
  assert "control characters" in errors["bad.wav"]["reason"]
  escape = errors["../escape.wav"]
  assert escape["csv"].endswith("train_noisy.csv")
  assert escape["csv_row"] == "14"  # its line in its own CSV
  assert "'..' in the name" in escape["reason"]
  assert escape["action"] == "skipped"
  # Records: every label as an index, the source, the first label.
  info = data_info.load_data_info(out)
  index = {l: i for i, l in enumerate(info.labels)}
  seen = {}
  for shard in manifest.shards:
    for raw in tf.data.TFRecordDataset(os.path.join(out, shard.file)):
      ex = records.example_to_numpy(raw.numpy(), info.pca_dim)
      seen[ex[records.FNAME]] = ex
      assert info.sources[ex[records.SOURCE]] == shard.source
      assert ex[records.FOLD] == shard.fold
  assert seen["m0.wav"][records.LABELS].tolist() == [index["high"],
                                                     index["low"]]
  assert seen["m0.wav"][records.LABEL_NAME] == "high,low"
  assert seen["m0.wav"][records.LABEL] == index["high"]
  # Iterative stratification: each label's clips spread over the folds.
  per_fold = np.zeros((3, 4), int)
  for ex in seen.values():
    per_fold[ex[records.FOLD], ex[records.LABELS]] += 1
  assert per_fold.min() >= 3 and per_fold.max() <= 6, per_fold


def test_inputs_are_checked_before_any_audio_is_read(tmp_path):
  (c_csv, c_dir), (n_csv, _) = _dataset(str(tmp_path))
  out = str(tmp_path / "out")
  cases = [
      (dict(csv=f"{c_csv},{n_csv}", audio_dir=f"{c_dir},{c_dir},{c_dir}"),
       "3 folders for 2 CSVs"),
      (dict(csv=f"{c_csv},{n_csv}", audio_dir=c_dir, sources="a"),
       "1 names for 2 CSVs"),
      (dict(csv=f"{c_csv},{c_csv}", audio_dir=c_dir), "names must differ"),
  ]
  for kwargs, message in cases:
    with pytest.raises(sharding.ShardingError, match=message):
      sharding.make_tfrecords(sharding.Options(output_dir=out, **kwargs))
  assert not os.path.exists(out)


def test_mixup_mixes_multi_hot_targets_and_sources():
  spec = batches.BatchSpec(4, 2, 3, (-100.0, 20.0), multi_label=True,
                           num_sources=2)
  hot = tf.constant([[1, 1, 0], [0, 0, 1]], tf.uint8)
  batch = {
      records.LOG_MEL: tf.zeros([2, 8, 4], tf.float16),
      records.WINDOW_FRAMES: tf.constant([8, 8]),
      records.PCA: tf.zeros([2, 2]),
      records.LABEL: tf.constant([0, 2]),
      records.LABELS: hot,
      records.MANUALLY_VERIFIED: tf.constant([1, 1]),
      records.SOURCE: tf.constant([0, 1]),
      batches.SEED: tf.constant([[1, 2], [1, 3]], tf.int64),
  }
  for key in list(batch):
    if key != batches.SEED:
      batch[batches.PARTNER + key] = tf.reverse(batch[key], [0])
  aug = settings.AugmentConfig(mixup_alpha=1.0)
  primary, partner, weight = batches.augment_parts(batch, spec, aug)
  out = augment.mixup(primary, partner, weight)
  w = weight.numpy()[:, None]
  target = hot.numpy().astype(np.float32)
  np.testing.assert_allclose(out[batches.TARGET].numpy(),
                             w * target + (1 - w) * target[::-1], atol=1e-6)
  np.testing.assert_allclose(out[records.SOURCE].numpy(),
                             w * np.eye(2) + (1 - w) * np.eye(2)[::-1],
                             atol=1e-6)


@pytest.fixture(scope="module")
def trained(shards, tmp_path_factory):
  """Stage 1, multi-label, under the GPU default path: mixed_float16 on 2
  replicas through all three phases; noisy clips at half weight,
  validation on curated clips only."""
  _, out, _ = shards
  model_dir = str(tmp_path_factory.mktemp("ml_run") / "fold0")
  config = tiny_config(**{
      "schedule.cyclic_epochs": 3, "schedule.fine_tune_max_epochs": 1,
      "model.backbone": "small_cnn", "model.alpha": 0.5,
      "input.val_sources": "curated", "source_weights": "noisy=0.5",
      "augment.erase_probability": 0.0, "select_best": "val_lwlrap"})
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    summary = trainer.train(config, out, model_dir, two_cpu_strategy())
  finally:
    keras.mixed_precision.set_global_policy("float32")
  return out, model_dir, summary


def test_multi_label_training_through_every_phase(trained):
  out, model_dir, summary = trained
  assert summary["precision"] == "mixed_float16"
  with open(os.path.join(model_dir, model_dir_lib.HISTORY)) as f:
    history = list(csv.DictReader(f))
  assert [r["phase"] for r in history] == ["cyclic"] * 3 + [
      "fine_tune_1", "fine_tune_2"]
  assert all(np.isfinite(float(r["train_loss"])) for r in history)
  val = summary["best_model_validation"]
  # Validation on the curated clips of fold 0 only: 4 labels of 4 tones.
  assert val["val_lwlrap"] > 0.6, val  # chance: about 0.45
  assert set(val["per_class_ap"]) == set(FREQS)
  assert os.path.exists(os.path.join(model_dir, model_dir_lib.PER_CLASS_AP))
  data = model_dir_lib.read_data(model_dir)
  assert data.multi_label and data.architecture["multi_label"]
  # The validation set read only curated shards.
  info = data_info.load_data_info(out)
  curated = info.only_sources(["curated"])
  assert curated.num_records((0,)) < info.num_records((0,))
  with pytest.raises(data_info.InputError, match="not in"):
    info.only_sources(["verified"])


def test_scoring_writes_the_2019_submission_and_lwlrap(trained, shards,
                                                      tmp_path):
  root, _, _ = shards
  _, model_dir, _ = trained
  names = sorted(FREQS)
  answers = [(f"t{i}.wav", [names[i % 4]] + ([names[(i + 2) % 4]]
                                            if i % 3 == 0 else []))
             for i in range(8)]
  _, test_dir = _write(str(tmp_path), "test", answers)
  labels_csv = str(tmp_path / "answers.csv")
  os.rename(str(tmp_path / "test.csv"), labels_csv)
  output = str(tmp_path / "sub.csv")
  result = score.score(score.ScoreJob(model_dirs=model_dir, output=output,
                       audio_dir=test_dir, labels_csv=labels_csv,
                       strategy_name="one_device", num_workers=1,
                       progress=False))
  assert result["submission_format"] == "kaggle2019"
  with open(output, encoding="utf-8") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["fname"] + names and len(rows) == 9
  probs = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
  assert ((probs > 0) & (probs < 1)).all()
  assert not np.allclose(probs.sum(axis=1), 1.0)  # sigmoid: independent
  report = result["evaluation"]
  assert report["multi_label"] and report["clips"] == 8
  assert report["single_label_clips"] == 5
  assert 0.0 < report["lwlrap"] <= 1.0 and report["map3"] is not None
  assert os.path.exists(report["confusion_png"])
  # Asked for, the 2018 format: the top 3 labels.
  score.score(score.ScoreJob(model_dirs=model_dir, output=output, audio_dir=test_dir,
              strategy_name="one_device", num_workers=1, progress=False,
              submission_format="kaggle2018"))
  with open(output, encoding="utf-8") as f:
    top = list(csv.DictReader(f))
  assert all(len(r["label"].split()) == 3 for r in top)


def test_fine_tuning_on_new_labels_copies_the_backbone_and_freezes_it(
    trained, tmp_path):
  """A model trained on 4 labels starts one on 2 other labels (under
  mixed_float16 on 2 replicas): stem and backbone copied, the head new;
  frozen for the first epoch, the backbone's trainable weights do not move
  while the rest learn."""
  _, source_dir, _ = trained
  root = str(tmp_path)
  rows = [(f"x{k}_{i}.wav", [l]) for k, l in enumerate(("low", "top"))
          for i in range(10)]
  csv_path, folder = _write(root, "new", rows, header="label")
  out = os.path.join(root, "tfrecords")
  # Relabel: same sounds, new names (a label set the source never had).
  text = open(csv_path, encoding="utf-8").read()
  with open(csv_path, "w", encoding="utf-8") as f:
    f.write(text.replace(",low", ",hum").replace(",top", ",whistle"))
  sharding.make_tfrecords(sharding.Options(
      csv=csv_path, audio_dir=folder, output_dir=out, num_folds=2,
      min_shards=1, num_workers=1, progress=False))
  config = tiny_config(**{
      "schedule.cyclic_epochs": 1, "model.backbone": "small_cnn",
      "input.batch_size": 8, "model.alpha": 0.5,
      "model.init_from": source_dir,
      "model.freeze_epochs": 1})
  model_dir = os.path.join(root, "fine_tuned")
  keras.mixed_precision.set_global_policy("mixed_float16")  # the GPU path
  try:
    summary = trainer.train(config, out, model_dir, two_cpu_strategy())
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert summary["precision"] == "mixed_float16"
  copied = summary["initialised_from"]["layers"]
  assert "backbone" in copied and "mel_conv3" in copied
  assert "probs" not in copied  # 2 new labels: a new head
  _, source = model_dir_lib.load(source_dir)
  data, tuned = model_dir_lib.load(model_dir)
  assert data.labels == ["hum", "whistle"] and not data.multi_label

  def trainable(model, name):
    return [w.numpy() for w in model.get_layer(name).trainable_weights]

  for a, b in zip(trainable(source, "backbone"), trainable(tuned,
                                                           "backbone")):
    np.testing.assert_array_equal(a, b)
  assert not all(np.array_equal(a, b) for a, b in zip(
      trainable(source, "fc384"), trainable(tuned, "fc384")))
  assert json.load(open(os.path.join(model_dir, model_dir_lib.CONFIG)))[
      "model"]["freeze_epochs"] == 1


def test_waveform_serving_keeps_multi_label_probabilities(trained):
  """The waveform module of a multi-label model: each class's own
  probability (not renormalised over the classes), for clips and frames."""
  from tagger.infer import serving  # pylint: disable=g-import-not-at-top
  _, model_dir, _ = trained
  module = serving.WaveformTagger([scorer.load_model(model_dir)], tries=2)
  wave = (tone(1.0, FREQS["low"]) + tone(1.0, FREQS["top"])) / 2
  out = module.clip(tf.constant(wave))
  np.testing.assert_allclose(out["probabilities"].numpy(),
                             np.exp(out["log_probabilities"].numpy()),
                             rtol=1e-5)
  assert bool(module.multi_label.numpy())
  frames = module.frames(tf.constant(np.tile(wave, 3)), 0.5)
  clip = frames["probabilities"].numpy()
  assert clip.shape == (4,) and not np.isclose(clip.sum(), 1.0)


def test_out_of_fold_scores_and_label_issues_of_multi_label_data(trained):
  from tagger.infer import label_issues  # pylint: disable=g-import-not-at-top
  from tagger.infer import out_of_fold  # pylint: disable=g-import-not-at-top
  out, model_dir, _ = trained
  info = data_info.load_data_info(out)
  table = out_of_fold.score_fold(model_dir, [info], 0,
                                 tf.distribute.get_strategy(),
                                 scorer.Views(tries=1), progress=False)
  headers = records.read_headers(tf.data.TFRecordDataset(info.files([0])))
  assert table.multi_label and list(table.fnames) == list(
      headers[records.FNAME])
  assert table.label_sets == list(headers[records.LABELS])
  assert any(len(s) == 2 for s in table.label_sets)   # two-label clips
  assert ((table.probs >= 0) & (table.probs <= 1)).all()
  position = {f: i for i, f in enumerate(table.fnames)}
  for issue in label_issues.find(table):
    labels = table.label_sets[position[issue.fname]]
    assert issue.given == tuple(info.labels[c] for c in labels)
