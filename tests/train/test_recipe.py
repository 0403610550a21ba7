"""A recipe: members trained in turn into one model dir (resumable between
members after kill -9), the logistic-regression head of a frozen member,
and the one SavedModel that serves the whole recipe."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tagger import api
from tagger import recipe
from tagger.audio import decode
from tagger.audio.params import FeatureParams
from tagger.datasets import demo_data
from tagger.infer import export as export_lib
from tagger.infer import score
from tagger.model import logistic
from tagger.model import model_dir as model_dir_lib
from tagger.shards import sharding

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
PARAMS = FeatureParams()

# A recipe config file as a user writes one: two small networks trained by
# SGD and a frozen one with the logistic-regression head.
CONFIG = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    from conftest import tiny_config
    from tagger import settings

    def net(seed, epochs):
      return tiny_config(**{{"model.backbone": "small_cnn",
                            "model.alpha": 0.25, "seed": seed,
                            "schedule.cyclic_epochs": epochs,
                            "input.eval_lengths": (32, 48),
                            "tensorboard_images": 0}})

    def get_config():
      frozen = net(2, 1)
      frozen.model.freeze_backbone = True
      frozen.model.head = "linear"
      frozen.model.fit = "logistic"
      config = settings.recipe_config([("first", net(0, 2)),
                                       ("second", net(1, 3)),
                                       ("frozen", frozen)])
      config.precision = "float32"
      return config
    """)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  """(demo data dir, train shards, recipe config path)."""
  root = tmp_path_factory.mktemp("recipe")
  data = str(root / "data")
  demo_data.make_demo_data(data, demo_data.DemoSpec(
      train_per_class=3, test_per_class=1, seed=7, median_duration_s=1.5))
  shards = str(root / "shards")
  sharding.make_tfrecords(sharding.Options(
      csv=os.path.join(data, "train.csv"),
      audio_dir=os.path.join(data, "audio_train"), output_dir=shards,
      num_folds=3, num_workers=2, progress=False, pca_components=8))
  config = str(root / "recipe_config.py")
  with open(config, "w", encoding="utf-8") as f:
    f.write(CONFIG.format(tests=os.path.join(ROOT, "tests")))
  return data, shards, config


def _train(config, shards, model_dir):
  return subprocess.Popen(
      [sys.executable, "-m", "tools.train", f"--config={config}",
       f"--data_dir={shards}", f"--model_dir={model_dir}"], cwd=ROOT,
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def trained(demo, tmp_path_factory):
  """The recipe killed (-9) in its second member, then the same command
  again: (model dir, first member's files' mtimes before the re-run, the
  re-run's output)."""
  _, shards, config = demo
  model_dir = str(tmp_path_factory.mktemp("runs") / "new_audio")
  first = os.path.join(model_dir, "first")
  second_state = os.path.join(model_dir, "second", model_dir_lib.STATE)
  proc = _train(config, shards, model_dir)
  deadline = time.time() + 600
  while not os.path.exists(second_state) and proc.poll() is None:
    assert time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert os.path.exists(os.path.join(first, model_dir_lib.SUMMARY))
  assert not os.path.exists(os.path.join(model_dir, "frozen"))
  before = {n: os.path.getmtime(os.path.join(first, n))
            for n in os.listdir(first) if os.path.isfile(
                os.path.join(first, n))}
  proc = _train(config, shards, model_dir)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  return model_dir, before, out


def test_a_recipe_resumes_after_kill_9_between_members(trained):
  model_dir, before, out = trained
  first = os.path.join(model_dir, "first")
  after = {n: os.path.getmtime(os.path.join(first, n)) for n in before}
  assert after == before                  # the finished member: untouched
  with open(os.path.join(model_dir, model_dir_lib.RECIPE)) as f:
    assert json.load(f)["members"] == ["first", "second", "frozen"]
  for name in ("first", "second", "frozen"):
    assert os.path.exists(os.path.join(model_dir, name, model_dir_lib.BEST))
  assert model_dir_lib.find(model_dir) == [
      os.path.join(model_dir, n) for n in ("first", "second", "frozen")]
  assert out.count("fold 0 stage 1") == 3, out     # a line per member



def test_a_finished_recipe_trains_nothing(trained, demo):
  model_dir = trained[0]
  weights = {n: os.path.getmtime(os.path.join(model_dir, n,
                                              model_dir_lib.BEST))
             for n in ("first", "second", "frozen")}
  proc = _train(demo[2], demo[1], model_dir)
  out, _ = proc.communicate(timeout=300)
  assert proc.returncode == 0, out
  assert weights == {n: os.path.getmtime(os.path.join(
      model_dir, n, model_dir_lib.BEST)) for n in weights}


def test_members_are_chosen_on_the_validated_fold(trained, demo, tmp_path):
  """choose_members scores the validated fold with each member, keeps the
  subset whose geometric mean validates best (ties: more members), and
  scoring then uses only those; chosen once."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tagger import recipe  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "copy")
  shutil.copytree(trained[0], model_dir)
  names = ["first", "second", "frozen"]
  assert "chosen" not in json.load(open(os.path.join(
      model_dir, model_dir_lib.RECIPE)))   # off by default
  out = recipe.choose_members(demo[1], model_dir, names, "0",
                              tf.distribute.get_strategy())
  figures = out["validation"]
  assert len(figures) == 7 and all(0 <= v <= 1 for v in figures.values())
  best = max(figures.values())
  assert figures[",".join(out["chosen"])] == best
  assert all(len(k.split(",")) <= len(out["chosen"])
             for k, v in figures.items() if v == best)
  assert model_dir_lib.find(model_dir) == [
      os.path.join(model_dir, n) for n in out["chosen"]]
  assert len(model_dir_lib.recipe_members(model_dir, chosen=False)) == 3
  # The frozen member's own figure is its summary's validation MAP@3: its
  # held-out fit's scores (its head was refitted on every clip after).
  frozen = json.load(open(os.path.join(model_dir, "frozen",
                                       model_dir_lib.SUMMARY)))
  assert figures["frozen"] == pytest.approx(
      frozen["best_model_validation"]["val_map3"], abs=1e-4)
  again = recipe.choose_members(demo[1], model_dir, names, "0",
                                tf.distribute.get_strategy())
  assert again == out


def test_an_unfinished_recipe_is_one_line(demo, tmp_path):
  model_dir = str(tmp_path / "m")
  os.makedirs(os.path.join(model_dir, "first"))
  with open(os.path.join(model_dir, model_dir_lib.RECIPE), "w") as f:
    json.dump({"members": ["first"]}, f)
  with pytest.raises(model_dir_lib.ModelDirError, match="not trained yet"):
    model_dir_lib.find(model_dir)


def test_the_frozen_member_is_the_logistic_regression(trained, demo):
  """Its summary names the fit, and its network's probabilities on the
  pooled features are the fitted regression's (the Dense layer holds the
  regression with the scaler folded in)."""
  model_dir = trained[0]
  summary = json.load(open(os.path.join(model_dir, "frozen",
                                        model_dir_lib.SUMMARY)))
  assert summary["fit"] == "logistic" and summary["C"] in logistic.C_GRID
  assert 0.0 <= summary["best_model_validation"]["val_map3"] <= 1.0
  data, network = model_dir_lib.load(os.path.join(model_dir, "frozen"))
  assert data.architecture["head"] == "linear"
  assert [l.name for l in network.layers][-1] == "probs"


@pytest.mark.parametrize("classes,multi", [(5, False), (2, False),
                                           (4, True)])
def test_dense_weights_give_the_fit_probabilities(classes, multi):
  rng = np.random.default_rng(classes)
  x = rng.normal(3.0, 2.0, (120, 7)) * rng.uniform(0.1, 5, 7)
  if multi:
    y = (rng.uniform(size=(120, classes)) < 0.4).astype(int)
  else:
    y = rng.integers(0, classes, 120)
    y[y == classes - 1] = 0 if classes > 2 else y[y == classes - 1]
  fitted = logistic.fit_at(x, y, 0.3, 0, multi)
  kernel, bias = logistic.dense_weights(fitted, classes)
  logits = x @ kernel + bias
  if multi:
    probs = 1 / (1 + np.exp(-logits))
  else:
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
  np.testing.assert_allclose(probs, logistic.probabilities(fitted, x,
                                                           classes),
                             atol=1e-5)


def _waveform(path):
  with open(path, "rb") as f:
    return decode.decode_audio(f.read(), path, PARAMS)[0]


def test_one_savedmodel_serves_the_recipe_as_score_does(trained, demo,
                                                        tmp_path):
  """tools/export of the recipe dir: one waveform SavedModel holding every
  member; its top-1 agrees with tools/score --tta=even of the same dir on
  >= 95% of the test clips; Tagger.load takes the recipe dir and the
  SavedModel; the TFLite window model holds the members too."""
  keras.mixed_precision.set_global_policy("float32")
  model_dir = trained[0]
  data_dir = demo[0]
  saved = export_lib.export(model_dir, str(tmp_path / "saved_model"))
  scored = score.score(score.ScoreJob(
      model_dirs=model_dir, output=str(tmp_path / "sub.csv"),
      audio_dir=os.path.join(data_dir, "audio_test"), tta="even",
      probs_out=str(tmp_path / "probs.csv"), progress=False))
  assert scored
  with open(tmp_path / "probs.csv") as f:
    header, *rows = [line.rstrip("\n").split(",") for line in f]
  labels = header[1:]
  # Files that could not be used have empty rows (and an errors CSV line).
  unusable = {p.fname for p in scored["problems"] if not p.scored}
  assert all(r[1:] == [""] * len(labels) for r in rows if r[0] in unusable)
  rows = [r for r in rows if r[0] not in unusable]
  module = tf.saved_model.load(saved)
  serve = module.signatures["serving_default"]
  agree = 0
  for row in rows:
    expect = labels[int(np.argmax([float(v) for v in row[1:]]))]
    waveform = _waveform(os.path.join(data_dir, "audio_test", row[0]))
    got = serve(waveform=tf.constant(waveform))["probabilities"].numpy()
    agree += labels[int(np.argmax(got))] == expect
  assert agree >= 0.95 * len(rows), (agree, len(rows))
  out = serve(waveform=tf.constant(_waveform(os.path.join(
      data_dir, "audio_test", rows[0][0]))))
  widths = [model_dir_lib.load(d)[1] for d in model_dir_lib.find(model_dir)]
  assert out["embedding"].shape[-1] > 0 and len(widths) == 3
  wav = os.path.join(data_dir, "audio_test", rows[0][0])
  from_dir = api.Tagger.load(model_dir).tag(wav).top(1)[0][0]
  from_saved = api.Tagger.load(saved).tag(wav).top(1)[0][0]
  assert from_dir == from_saved
  written = export_lib.export_tflite(model_dir, str(tmp_path / "tflite"))
  interpreter = tf.lite.Interpreter(model_path=written["float32"])
  interpreter.allocate_tensors()
  (inp,), (outp,) = (interpreter.get_input_details(),
                     interpreter.get_output_details())
  window = np.random.default_rng(0).uniform(
      -80, 0, inp["shape"]).astype(np.float32)
  interpreter.set_tensor(inp["index"], window)
  interpreter.invoke()
  lite = interpreter.get_tensor(outp["index"])
  full = module.signatures["log_mel"](log_mel=tf.constant(window))
  np.testing.assert_allclose(lite, full["probabilities"].numpy(), atol=1e-4)


@pytest.mark.parametrize("content,reason", [
    (None, "no such file"), (b"PK\x03\x04 cut short", "not a zip file")])
def test_missing_or_damaged_weights_stop_the_recipe_first(demo, tmp_path,
                                                          content, reason):
  """configs/cpu.py:new_audio through the user's command, its CNN9 weights
  missing or damaged: one line naming the file and how to get it, before
  the first member (MobileNetV2, half an hour on 2 cores) trains."""
  _, shards, _ = demo
  weights = tmp_path / "aisfx-0.1.2-py2.py3-none-any.whl"
  if content is not None:
    weights.write_bytes(content)
  flags = [f"--config.members.{m}.model.backbone_weights={weights}"
           for m in ("cnn9_tuned", "cnn9_frozen")]
  model_dir = tmp_path / "new_audio"
  done = subprocess.run(
      [sys.executable, "-m", "tools.train",
       f"--config={os.path.join(ROOT, 'configs', 'cpu.py')}:new_audio",
       f"--data_dir={shards}", f"--model_dir={model_dir}", *flags],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert done.returncode != 0
  lines = done.stderr.strip().splitlines()
  assert str(weights) in lines[-1] and reason in lines[-1], done.stderr
  assert "pip download aisfx==0.1.2" in lines[-1]
  assert "Traceback" not in done.stderr
  assert not os.path.exists(model_dir / "mobilenet")    # nothing trained


def test_members_without_pretrained_weights_read_no_file(tmp_path):
  """backbone_weights=none (random initialisation) is no file to check; a
  path still is."""
  from tagger import settings  # pylint: disable=g-import-not-at-top
  config = settings.load_config(
      os.path.join(ROOT, "configs", "cpu.py") + ":new_audio")
  for member in ("cnn9_tuned", "cnn9_frozen"):
    config.members[member].model.backbone_weights = "none"
  recipe.check_weights(config, recipe.member_names(config))   # no error
  missing = str(tmp_path / "aisfx.whl")
  config.members.cnn9_tuned.model.backbone_weights = missing
  with pytest.raises(Exception, match="no such file"):
    recipe.check_weights(config, recipe.member_names(config))
