"""TTA scoring, evaluation and export, with a tiny trained model."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf


from tagger import metrics
from tagger import fileio
from tagger import settings
from tagger.datasets import synthetic
from tagger.infer import export as export_lib
from tagger.infer import inputs
from tagger.infer import score
from tagger.infer import scorer
from tagger.shards import records
from tagger.train import trainer
from conftest import tiny_config  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """(data_dir, model_dir) of a stage-2 model trained for a few steps."""
  keras.mixed_precision.set_global_policy("float32")
  root = tmp_path_factory.mktemp("score")
  data_dir = str(root / "shards")
  synthetic.write_synthetic_shards(data_dir, synthetic.SyntheticSet(
      128, num_classes=4, num_folds=2, pca_dim=6, median_frames=40, sigma=0.2,
      seed=2, learnable=True))
  config = tiny_config(**{
      "stage": 2, "input.eval_lengths": (32, 48), "schedule.cyclic_epochs": 6,
      "augment.mixup_alpha": 0.0, "augment.erase_probability": 0.0,
      "tensorboard_images": 0, "model.backbone": "small_cnn",
      "model.alpha": 0.5})
  model_dir = str(root / "run" / "fold0")
  trainer.train(config, data_dir, model_dir, tf.distribute.get_strategy())
  return data_dir, model_dir


def _records(data_dir):
  return inputs.shard_records(data_dir)


def test_full_clip_at_its_own_length_is_the_plain_model_output(trained):
  data_dir, model_dir = trained
  loaded = scorer.load_model(model_dir)
  rng = np.random.default_rng(0)
  mel = rng.uniform(-80, 20, (64, 48))
  record = records.serialize_example(
      fname="x.wav", label=-1, label_name="", fold=-1, manually_verified=1,
      log_mel_db=mel, pca=np.arange(6, dtype=np.float32))
  result = scorer.score_records(
      tf.data.Dataset.from_tensors(record), [loaded],
      tf.distribute.get_strategy(), scorer.Views(lengths=[48], tries=1),
      progress=False)
  lo, hi = loaded.data.normalization["min_db"], \
      loaded.data.normalization["max_db"]
  x = ((mel.astype(np.float16).astype(np.float32) - lo) / (hi - lo))
  probs, _ = loaded.model({"log_mel": x[None, :, :, None],
                           "pca": np.arange(6, dtype=np.float32)[None]})
  np.testing.assert_allclose(result.log_probs[0],
                             np.log(np.clip(probs[0], 1e-7, 1)), atol=1e-4)


def test_rows_in_input_order_empty_clips_ranked_by_class_frequency(trained):
  data_dir, model_dir = trained
  loaded = scorer.load_model(model_dir)
  good = list(_records(data_dir).take(5).as_numpy_iterator())
  empty = records.serialize_example(
      fname="empty.wav", label=-1, label_name="", fold=-1,
      manually_verified=1, log_mel_db=np.zeros((64, 0)), pca=np.zeros(6))
  data = tf.data.Dataset.from_tensor_slices(good[:2] + [empty] + good[2:])
  a = scorer.score_records(data, [loaded], tf.distribute.get_strategy(),
                          progress=False, embeddings=True)
  b = scorer.score_records(data, [loaded], tf.distribute.get_strategy(),
                          progress=False)
  names = [records.example_to_numpy(r, 6)["fname"] for r in good]
  assert a.fnames == names[:2] + ["empty.wav"] + names[2:]
  np.testing.assert_array_equal(a.log_probs, b.log_probs)  # deterministic
  assert a.empty.tolist() == [False, False, True, False, False, False]
  counts = np.array(loaded.data.class_counts, float)
  np.testing.assert_allclose(np.exp(a.log_probs[2]), counts / counts.sum())
  pooled = loaded.model.get_layer("pool").output.shape[-1]
  assert a.embeddings.shape == (6, pooled + 6) and not a.embeddings[2].any()
  c = scorer.score_records(data, [loaded], tf.distribute.get_strategy(),
                          scorer.Views(seed=1), progress=False)
  assert not np.array_equal(a.log_probs, c.log_probs)


def test_batches_without_audio_skip_the_network(trained):
  """Rows of missing files (records flagged empty) get the class priors
  without a forward pass: only batches holding audio run the models."""
  _, model_dir = trained
  loaded = scorer.load_model(model_dir)
  good = list(_records(trained[0]).take(2).as_numpy_iterator())
  empty = [records.serialize_example(
      fname=f"missing{i}.wav", label=-1, label_name="", fold=-1,
      manually_verified=1, log_mel_db=np.zeros((64, 0)), pca=np.zeros(6))
           for i in range(40)]
  data = tf.data.Dataset.from_tensor_slices(good + empty)   # 42 clips
  tta_scorer = scorer.Scorer([loaded], tf.distribute.get_strategy())
  result = tta_scorer.score(data, scorer.Views(lengths=[48, 64], tries=2,
                                              batch_size=16), progress=False)
  # 8 clips a batch, 6 batches a length: only the first holds audio.
  assert tta_scorer.forward_batches == 2
  counts = np.array(loaded.data.class_counts, float)
  np.testing.assert_allclose(np.exp(result.log_probs[2:]),
                             np.tile(counts / counts.sum(), (40, 1)))
  assert not np.allclose(np.exp(result.log_probs[0]), counts / counts.sum())


def test_score_tool_outputs_and_evaluation(trained, tmp_path):
  data_dir, model_dir = trained
  labels = tmp_path / "labels.csv"
  truth = {}
  for raw in _records(data_dir).as_numpy_iterator():
    ex = records.example_to_numpy(raw, 6)
    truth[ex["fname"]] = ex["label_name"]
  labels.write_text("fname,label\n" + "".join(
      f"{k},{v}\n" for k, v in truth.items()))
  out = tmp_path / "sub.csv"
  result = score.score(score.ScoreJob(
      model_dirs=os.path.dirname(model_dir) + "/fold*", output=str(out),
      data_dir=data_dir, probs_out=str(tmp_path / "p.csv"),
      embeddings_out=str(tmp_path / "e.npz"), labels_csv=str(labels),
      tries=2, progress=False))
  rows = list(csv.DictReader(open(out)))
  assert [r["fname"] for r in rows] == list(truth)
  assert all(len(r["label"].split(" ")) == 3 for r in rows)
  report = result["evaluation"]
  predicted = [r["label"].split(" ") for r in rows]
  assert report["map3"] == pytest.approx(
      metrics.map_at_k(predicted, list(truth.values())))
  assert report["map3"] > 0.7  # the tiny model learned the bands
  assert os.path.exists(report["confusion_png"])
  probs = list(csv.reader(open(tmp_path / "p.csv")))
  assert len(probs) == len(truth) + 1 and len(probs[0]) == 5
  assert abs(sum(float(x) for x in probs[1][1:]) - 1) < 1e-4
  assert np.load(tmp_path / "e.npz")["embedding"].shape[0] == len(truth)
  with pytest.raises(scorer.ScoreError, match="no model dir"):
    scorer.find_model_dirs(str(tmp_path / "nothing*"))


def test_saved_model_serves_without_this_code(trained, tmp_path):
  _, model_dir = trained
  path = export_lib.export(model_dir, str(tmp_path / "saved"))
  rng = np.random.default_rng(3)
  mel = rng.uniform(-80, 20, (3, 64, 40)).astype(np.float32)
  pca = rng.normal(size=(3, 6)).astype(np.float32)
  np.save(tmp_path / "mel.npy", mel)
  np.save(tmp_path / "pca.npy", pca)
  code = f"""
import numpy as np, tensorflow as tf, json, sys
m = tf.saved_model.load({path!r})
f = m.signatures["serving_default"]
out = f(log_mel=tf.constant(np.load({str(tmp_path / 'mel.npy')!r})),
        pca=tf.constant(np.load({str(tmp_path / 'pca.npy')!r})))
labels = open({path!r} + "/assets/labels.txt").read().split()
print(json.dumps({{"probs": out["probabilities"].numpy().tolist(),
                  "labels": labels,
                  "modules": sorted(k for k in sys.modules if k.startswith("tagger"))}}))
"""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
  result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, check=True)
  served = json.loads(result.stdout.strip().splitlines()[-1])
  assert served["modules"] == []
  loaded = scorer.load_model(model_dir)
  lo, hi = (loaded.data.normalization[k] for k in ("min_db", "max_db"))
  expect, _ = loaded.model({"log_mel": ((mel - lo) / (hi - lo))[..., None],
                            "pca": pca})
  # Same weights, another graph: float32 rounding differs (seen: 1.6e-5).
  np.testing.assert_allclose(served["probs"], expect.numpy(), atol=1e-4,
                             rtol=1e-3)
  assert served["labels"] == loaded.data.labels


def test_raw_audio_scores_as_its_shards(tmp_path):
  """--audio_dir computes the same features as the shards: same scores.
  Names that a spreadsheet would run as formulas are written so that it
  shows them as text (a leading apostrophe)."""
  from conftest import tone, wav_bytes, write_dataset  # pylint: disable=g-import-not-at-top
  from tagger.shards import sharding  # pylint: disable=g-import-not-at-top
  keras.mixed_precision.set_global_policy("float32")
  clips = [(f"{name}{i}.wav", name, wav_bytes(tone(0.6 + 0.1 * i, freq,
                                                     seed=i)))
           for name, freq in (("low", 220), ("high", 1760))
           for i in range(6)]
  csv_path, audio_dir = write_dataset(str(tmp_path), clips)
  train = str(tmp_path / "train")
  sharding.make_tfrecords(sharding.Options(
      csv=csv_path, audio_dir=audio_dir, output_dir=train, num_folds=2,
      num_workers=1, progress=False))
  test_csv, test_audio = write_dataset(
      str(tmp_path / "t"), clips[:2] + clips[-2:] +
      [("broken.wav", "low", b"not audio")] +
      [(name, "low", clips[0][2]) for name in HOSTILE], csv_name="test.csv",
      audio="audio_test")
  test = str(tmp_path / "test")
  sharding.make_tfrecords(sharding.Options(
      csv=test_csv, audio_dir=test_audio, output_dir=test, split="test",
      pca_from=train, num_workers=1, progress=False))
  config = settings.default_config()
  config.stage = 2
  config.input.batch_size = 4
  config.input.eval_lengths = (32,)
  config.input.length_range = (32, 40)
  config.schedule.cyclic_epochs = 1
  config.schedule.fine_tune_max_epochs = 0
  config.max_steps_per_epoch = 1
  config.tensorboard_images = 0
  model_dir = str(tmp_path / "m" / "fold0")
  trainer.train(config, train, model_dir, tf.distribute.get_strategy())
  from_shards = score.score(score.ScoreJob(model_dirs=model_dir, data_dir=test,
                            output=str(tmp_path / "a.csv"),
                            probs_out=str(tmp_path / "pa.csv"),
                            progress=False))
  from_audio = score.score(score.ScoreJob(model_dirs=model_dir, audio_dir=test_audio,
                           audio_csv=test_csv, output=str(tmp_path / "b.csv"),
                           probs_out=str(tmp_path / "pb.csv"), num_workers=1,
                           labels_csv=test_csv,
                           report_dir=str(tmp_path / "report"),
                           progress=False))
  page = open(from_audio["report"], encoding="utf-8").read()
  assert "&lt;" not in page or "<img src=x" not in page
  assert from_audio["report"].endswith("index.html") and "MAP@3" in page
  assert "class='neighbours'" in page   # the nearest training clips
  if shutil.which("chromium"):   # the trained model's page in a browser
    done = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--allow-file-access-from-files", "--enable-logging=stderr",
         "--v=0", "--virtual-time-budget=5000", "--dump-dom",
         "file://" + os.path.abspath(from_audio["report"])],
        capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert not [l for l in done.stderr.splitlines()
                if "CONSOLE" in l and "rror" in l], done.stderr[-2000:]
    durations = re.findall(r'data-duration="([0-9.]+)"', done.stdout)
    assert durations and all(float(d) > 0 for d in durations)
  assert from_shards["clips"] == from_audio["clips"] == 5 + len(HOSTILE)
  # broken.wav: the shards hold an empty record (make_tfrecords reported
  # it), ranked by the class frequencies; from audio it is a file that
  # could not be used: its row is left empty and errors.csv says why.
  assert from_shards["empty"] == 1 and from_audio["empty"] == 0
  assert from_audio["unscored"] == 1
  assert [(p.fname, p.status) for p in from_audio["problems"]] == [
      ("broken.wav", "unusable")]
  a = list(csv.reader(open(tmp_path / "a.csv")))
  b = list(csv.reader(open(tmp_path / "b.csv")))
  broken = [r[0] for r in a].index("broken.wav")
  assert a[broken][1] and b[broken] == ["broken.wav", ""]
  assert a[:broken] + a[broken + 1:] == b[:broken] + b[broken + 1:]
  for path in ("a.csv", "pa.csv", "pb.csv"):
    names = [r[0] for r in csv.reader(open(tmp_path / path))][1:]
    assert names[-len(HOSTILE):] == ["'" + n for n in HOSTILE], path
    assert names[:2] == [clips[0][0], clips[1][0]]
  pa, pb = [[r[1:] for r in csv.reader(open(tmp_path / path))][1:]
            for path in ("pa.csv", "pb.csv")]
  assert pb[broken - 1] == ["", ""]
  keep = [i for i in range(len(pa)) if i != broken - 1]
  np.testing.assert_allclose(np.array([pa[i] for i in keep], float),
                             np.array([pb[i] for i in keep], float),
                             atol=1e-5)


HOSTILE = ("=1+1.wav", "+1+2.wav", "@SUM(1+1).wav", "-2+3.wav",
           '=HYPERLINK("http:evil").wav')


def test_spreadsheet_safe_cells():
  for name in HOSTILE + ("\tx.wav", "-cmd|' /C calc'!A0.wav"):
    assert fileio.spreadsheet_safe(name) == "'" + name
  for name in ("00ad7068.wav", "-6dB.wav", "a=b.wav", "Bass_drum", ""):
    assert fileio.spreadsheet_safe(name) == name


def test_audio_dir_says_what_it_leaves_out(tmp_path, caplog):
  """score --audio_dir on a folder with a hidden file: a warning names it
  (it is not scored)."""
  from conftest import tone, wav_bytes  # pylint: disable=g-import-not-at-top
  from tagger.shards import clip_files  # pylint: disable=g-import-not-at-top
  folder = tmp_path / "audio"
  folder.mkdir()
  for name in ("a.wav", ".hidden.wav"):
    (folder / name).write_bytes(wav_bytes(tone(0.5, 440, seed=1)))
  with caplog.at_level("WARNING"):
    assert clip_files.list_folder(str(folder)) == ["a.wav"]
  assert "1 hidden file(s) left out (.hidden.wav)" in caplog.text


def test_models_of_two_feature_sets_score_together(trained, tmp_path):
  """A model of the reference's features and one of aisfx's: each is
  scored on the test shards of its own features (--data_dir=a,b), and
  together they are the mean of their log-probabilities; without the
  second folder the error names the make_tfrecords flag."""
  from tagger.audio import params as params_lib  # pylint: disable=g-import-not-at-top
  data_dir, model_dir = trained
  aisfx_dir = str(tmp_path / "aisfx_shards")
  synthetic.write_synthetic_shards(aisfx_dir, synthetic.SyntheticSet(
      128, num_classes=4, num_folds=2, pca_dim=6, median_frames=40,
      sigma=0.2, seed=2, learnable=True, params=params_lib.preset("aisfx")))
  config = tiny_config(**{
      "input.eval_lengths": (32,), "tensorboard_images": 0,
      "model.backbone": "small_cnn", "model.alpha": 0.25})
  aisfx_model = str(tmp_path / "aisfx_run" / "fold0")
  trainer.train(config, aisfx_dir, aisfx_model, tf.distribute.get_strategy())

  def probs(model_dirs, data_dirs):
    out = tmp_path / "p.csv"
    score.score(score.ScoreJob(
        model_dirs=model_dirs, output=str(tmp_path / "s.csv"),
        data_dir=data_dirs, probs_out=str(out), tries=2, progress=False))
    rows = list(csv.reader(open(out)))[1:]
    return {r[0]: np.log(np.array(r[1:], float)) for r in rows}

  one = probs(model_dir, data_dir)
  other = probs(aisfx_model, aisfx_dir)
  both = probs(f"{model_dir},{aisfx_model}", f"{data_dir},{aisfx_dir}")
  assert sorted(both) == sorted(one)
  for name, log_p in both.items():
    mean = (one[name] + other[name]) / 2
    expected = mean - np.log(np.exp(mean).sum())
    np.testing.assert_allclose(log_p, expected, atol=2e-4)
  with pytest.raises(scorer.ScoreError, match="--features=aisfx"):
    probs(f"{model_dir},{aisfx_model}", data_dir)
  labels = tmp_path / "labels.csv"
  labels.write_text("fname,label\n" + "".join(
      f"{ex['fname']},{ex['label_name']}\n" for ex in (
          records.example_to_numpy(raw, 6)
          for raw in _records(data_dir).as_numpy_iterator())))
  result = score.score(score.ScoreJob(
      model_dirs=f"{model_dir},{aisfx_model}", output=str(tmp_path / "r.csv"),
      data_dir=f"{data_dir},{aisfx_dir}", labels_csv=str(labels),
      report_dir=str(tmp_path / "report"), tries=1, progress=False))
  assert os.path.exists(result["report"])
