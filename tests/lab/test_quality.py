"""The recorded evaluation set's parts, the linear baselines and the
small-data options (PCA head, best weights by MAP@3)."""

import csv
import json
import os
import shutil
import struct

import keras
import numpy as np
import pytest
import tensorflow as tf

from tagger import settings
from tagger.datasets import instruments
from tagger.datasets import midi
from tagger.datasets import recorded_data
from tagger.datasets import recording
from tagger.datasets import synthetic
from tagger.infer import evaluation
from tagger.input import augment
from tagger.lab import baselines
from tagger.lab import quality
from tagger.model import backbones
from tagger.model import model_dir as model_dir_lib
from tagger.model import architecture as architecture_lib
from tagger.model import networks as model_lib
from tagger.train import trainer
from conftest import tiny_config  # pylint: disable=g-bad-import-order


def test_midi_file_is_a_standard_midi_file():
  notes = [midi.Note(0.0, 0.5, 60, 100),
           midi.Note(0.5, 0.25, 64, 90)]
  score, spans = midi.midi_score([(40, 0, notes), (0, 9, notes)])
  assert score[:4] == b"MThd"
  length, fmt, tracks, division = struct.unpack(">IHHH", score[4:14])
  assert (length, fmt, tracks, division) == (6, 0, 1, 480)
  assert score[14:18] == b"MTrk"
  assert struct.unpack(">I", score[18:22])[0] == len(score) - 22
  assert score.endswith(b"\xff\x2f\x00")
  # Two performances one after another, with a gap between them.
  (a0, a1), (b0, b1) = spans
  assert a0 < a1 < b0 < b1 and b0 - a1 >= midi.GAP_S
  assert bytes([0xC0, 40]) in score          # program change, channel 0
  assert bytes([0x99, 60, 100]) in score     # note on, drum channel


def test_a_clip_gets_noise_a_room_and_a_second_sound():
  rng = np.random.default_rng(0)
  t = np.arange(recording.RATE) / recording.RATE
  tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
  other = np.sin(2 * np.pi * 97 * t).astype(np.float32)
  spec = recorded_data.RecordedSpec()
  rates = set()
  for _ in range(20):
    clip, rate = recording.make_clip(tone, other, rng, spec.snr_db)
    rates.add(rate)
    assert np.all(np.isfinite(clip)) and np.max(np.abs(clip)) <= 1.0
    assert len(clip) >= len(tone) * rate // recording.RATE
    # Background noise: the clip is nowhere digital silence.
    assert np.std(clip[:100]) > 0
  assert recording.RATE in rates


def test_missing_fluidsynth_is_a_clear_error(monkeypatch):
  monkeypatch.setattr(shutil, "which", lambda name: None)
  with pytest.raises(recorded_data.RecordedDataError,
                     match="apt-get install fluidsynth"):
    recorded_data.check_tools()


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not all(
    os.path.exists(p) for p in instruments.SOUNDFONTS),
                    reason="needs fluidsynth and the soundfonts (BUILD.md)")
def test_recorded_set_in_the_kaggle_layout(tmp_path):
  counts = recorded_data.make_recorded_data(
      str(tmp_path), recorded_data.RecordedSpec(train_per_class=1,
                                                test_per_class=1),
      progress=False)
  n = len(instruments.CLASSES)
  assert counts["train"] == counts["test"] == n
  assert len(os.listdir(tmp_path / "audio_train")) == n
  header = (tmp_path / "train.csv").read_text().splitlines()[0]
  assert header == "fname,label,manually_verified"


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("learnable"))
  synthetic.write_synthetic_shards(path, synthetic.SyntheticSet(
      96, num_classes=4, num_folds=3, pca_dim=6, median_frames=40, sigma=0.2,
      seed=1, learnable=True))
  return path


def test_linear_baselines_learn_what_is_learnable(learnable, tmp_path):
  split = baselines.read_split(learnable)
  assert split.pca.shape == (96, 6) and split.mel_stats.shape == (96, 128)
  truth = {f: f"class_{l:02d}" for f, l in zip(split.fnames, split.labels)}
  result = baselines.linear_baselines(learnable, learnable, truth, val_fold=0)
  for name in ("pca", "mel_stats"):
    assert result[name]["map3"] > 0.95, result
    assert result[name]["train_clips"] == 64
  # Shuffled answers: the same models fall to about chance (0.46 for 4
  # classes), so the figure measures the labels, not the code path.
  fnames = list(truth)
  wrong = dict(zip(fnames, np.random.default_rng(0).permutation(
      [truth[f] for f in fnames])))
  result = baselines.linear_baselines(learnable, learnable, wrong, val_fold=0)
  assert result["pca"]["map3"] < 0.75, result


def test_pca_head_starts_as_the_network_and_keeps_stage1_weights():
  stage1 = model_lib.build_model(
      architecture_lib.Architecture(5, 0), architecture_lib.TrainOptions(bn_momentum=0.9))
  with_head = model_lib.build_model(
      architecture_lib.Architecture(5, 8, pca_head=True),
      architecture_lib.TrainOptions(bn_momentum=0.9))
  plain = model_lib.build_model(
      architecture_lib.Architecture(5, 8), architecture_lib.TrainOptions(bn_momentum=0.9))
  copied = model_lib.transfer_weights(stage1, with_head)
  assert "probs" in copied and "pca_logits" not in copied
  for layer in plain.layers:
    if layer.weights:
      layer.set_weights(with_head.get_layer(layer.name).get_weights())
  inputs = {"log_mel": tf.random.normal([3, 64, 40, 1]),
            "pca": tf.random.normal([3, 8])}
  np.testing.assert_allclose(with_head(inputs), plain(inputs), atol=1e-6)
  # The linear path is live: its weights move the output.
  layer = with_head.get_layer("pca_logits")
  rng = np.random.default_rng(0)
  layer.set_weights([rng.normal(size=w.shape) for w in layer.get_weights()])
  assert np.max(np.abs(with_head(inputs) - plain(inputs))) > 1e-3


def test_best_weights_by_map3_and_a_pca_head_score(learnable, tmp_path):
  keras.mixed_precision.set_global_policy("float32")
  config = tiny_config(**{"stage": 2, "model.pca_head": True,
                          "select_best": "val_map3",
                          "schedule.cyclic_epochs": 3})
  summary = trainer.train(config, learnable, str(tmp_path / "m"),
                          tf.distribute.get_strategy())
  with open(tmp_path / "m" / model_dir_lib.HISTORY) as f:
    history = list(csv.DictReader(f))
  assert len(history) == 3
  best = max(history, key=lambda row: (float(row["val_map3"]),
                                       -int(row["epoch"])))
  assert summary["best"]["epoch"] == int(best["epoch"])
  data = json.loads((tmp_path / "m" / model_dir_lib.DATA).read_text())
  assert data["architecture"]["pca_head"] is True
  from tagger.infer import scorer  # pylint: disable=g-import-not-at-top
  loaded = scorer.load_model(str(tmp_path / "m"))
  assert "pca_logits" in [l.name for l in loaded.model.layers]


def test_late_fusion_stage2_is_stage1_plus_a_linear_path():
  """pca_into_mlp=False: every stage-1 weight transfers and, with the
  zero-initialised linear path, stage 2 starts as stage 1 exactly."""
  stage1 = model_lib.build_model(
      architecture_lib.Architecture(5, 0), architecture_lib.TrainOptions(bn_momentum=0.9))
  stage2 = model_lib.build_model(
      architecture_lib.Architecture(5, 8, pca_head=True, pca_into_mlp=False),
      architecture_lib.TrainOptions(bn_momentum=0.9, dropout=0.3))
  copied = model_lib.transfer_weights(stage1, stage2)
  assert {"fc1536", "probs", "backbone"} <= set(copied)
  log_mel = tf.random.normal([3, 64, 40, 1])
  np.testing.assert_allclose(
      stage2({"log_mel": log_mel, "pca": tf.random.normal([3, 8])}),
      stage1({"log_mel": log_mel}), atol=1e-6)


def _tiny_backbone(alpha, weights):
  del weights
  inputs = keras.Input((None, None, 3))
  x = keras.layers.Conv2D(int(8 * alpha), 3, strides=2, padding="same",
                          activation="relu")(inputs)
  return keras.Model(inputs, x)


def test_a_registered_backbone_trains_and_scores(learnable, tmp_path):
  """The seam for new backbones: register, name it in the config; the
  model dir records it, so scoring rebuilds the same network."""
  keras.mixed_precision.set_global_policy("float32")
  backbones.register_backbone("tiny_test", _tiny_backbone, min_frames=2)
  assert backbones.min_frames("tiny_test") == 2
  with pytest.raises(model_lib.ModelError, match="unknown backbone"):
    backbones.min_frames("nonesuch")
  # A registered image op rides along: one file (augment) plus its config.
  if "flip_sign_test" not in augment.IMAGE_OPS:
    augment.register_image_op(
        "flip_sign_test", 12,
        lambda image, seed, aug, amount=0.0: image * (1.0 - amount))
  # Freq-MixStyle too: it runs in the compiled replica step like any op.
  config = tiny_config(**{"model.backbone": "tiny_test", "model.alpha": 2.0,
                          "augment.image_ops": ("freq_mixstyle",
                                                "random_erasing",
                                                "flip_sign_test"),
                          "augment.op_params": {"flip_sign_test":
                                                {"amount": 0.1}},
                          "input.length_range": (8, 16),
                          "input.length_quantum": 4,
                          "input.eval_lengths": (8,)})
  trainer.train(config, learnable, str(tmp_path / "m"),
                tf.distribute.get_strategy())
  data = json.loads((tmp_path / "m" / model_dir_lib.DATA).read_text())
  assert data["architecture"]["backbone"] == "tiny_test"
  from tagger.infer import scorer  # pylint: disable=g-import-not-at-top
  loaded = scorer.load_model(str(tmp_path / "m"))
  conv = [w for w in loaded.model.get_layer("backbone").weights
          if len(w.shape) == 4]
  assert conv[0].shape[-1] == 16  # alpha 2 x 8 channels, as trained


@pytest.mark.parametrize("spec", ["configs/stage1_mel.py",
                                  "configs/stage2_mel_pca.py",
                                  "configs/demo.py:stage1",
                                  "configs/demo.py:stage2",
                                  "configs/cpu.py:stage1",
                                  "configs/cpu.py:stage2",
                                  "configs/cpu.py:pretrained",
                                  "configs/cpu.py:probe"])
def test_configs_set_only_known_fields(spec):
  """A mistyped field in a config file would be a new, unused key."""
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  path, _, arg = spec.partition(":")
  config = settings.load_config(os.path.join(repo, path) +
                               (f":{arg}" if arg else ""))

  def keys(d, prefix=""):
    for k, v in d.items():
      if hasattr(v, "items"):
        yield from keys(v, f"{prefix}{k}.")
      else:
        yield prefix + k

  assert set(keys(config)) == set(keys(settings.default_config()))
  if spec.startswith("configs/cpu.py:stage2"):
    assert config.model.pca_head and not config.model.pca_into_mlp
  if spec.endswith(":pretrained"):
    assert config.model.backbone == "cnn9_aisfx"
    assert config.model.backbone_weights.endswith(".whl")
  if spec.endswith(":probe"):
    assert config.model.backbone == "cnn9_aisfx_native"
    assert config.model.freeze_backbone
  if spec.startswith("configs/stage"):  # the reference's recipe
    assert not config.model.pca_head
    assert config.select_best == "val_loss"


def test_quality_benchmark_end_to_end_on_a_small_kaggle_folder(tmp_path):
  """Kaggle folder -> shards -> stage 1 -> stage 2 (late fusion) -> test
  scores, beside both linear baselines on the same split; a re-run skips
  what is done."""
  from tagger.datasets import demo_data  # pylint: disable=g-import-not-at-top
  keras.mixed_precision.set_global_policy("float32")
  data = str(tmp_path / "data")
  demo_data.make_demo_data(data, demo_data.DemoSpec(
      train_per_class=3, test_per_class=1, max_duration_s=3.0))
  small = {"model.backbone": "small_cnn", "model.alpha": 0.25}

  def configs():   # stage 1 and 2 on small_cnn, and a probe of it: a
    # second kind of model (quick; MobileNetV2 took 25 s more here)
    return [tiny_config(**small),
            tiny_config(**small, **{
                "stage": 2, "model.pca_head": True,
                "model.pca_into_mlp": False, "model.pca_head_l2": 0.03}),
            tiny_config(**small, **{"model.freeze_backbone": True})]
  result = quality.run_benchmark(data, str(tmp_path / "work"), configs(),
                                 fold=0, num_workers=2)
  assert [s["name"] for s in result["stages"]] == [
      "stage1_small_cnn", "stage2_small_cnn", "stage1_small_cnn_probe",
      "ensemble"]
  assert result["stages"][-1]["model_dir"].count(",") == 1
  # No sources.csv: one group, and a warning that says so.
  assert list(result["stages"][0]["groups"]) == [baselines.ALL]
  assert "sources.csv" in result["warnings"][0]
  for stage in result["stages"]:
    assert 0.0 <= stage["map3"] <= 1.0
  for name in ("pca", "mel_stats"):
    # 41 clips + the empty one, as the scorer counts them.
    assert result["baselines"][name]["test_clips"] == 42
    assert 0.0 <= result["baselines"][name]["map3"] <= 1.0
  stage2_dir = tmp_path / "work" / "stage2_small_cnn" / "fold0"
  data_json = json.loads((stage2_dir / model_dir_lib.DATA).read_text())
  assert data_json["architecture"]["pca_into_mlp"] is False
  again = quality.run_benchmark(data, str(tmp_path / "work"), configs(),
                                fold=0, num_workers=2)
  assert [s["map3"] for s in again["stages"]] == [
      s["map3"] for s in result["stages"]]


# ---------------------------------------------------------------------------
# Recording sources: same-source and cross-source figures.


def _write(path, header, rows):
  with open(path, "w", newline="") as f:
    csv.writer(f).writerows([header] + rows)


def test_source_groups_come_from_sources_csv(tmp_path):
  _write(tmp_path / "sources.csv", ["fname", "split", "source"],
         [["a.wav", "train", "font1"], ["b.wav", "train", "font2"],
          ["c.wav", "test", "font1"], ["d.wav", "test", "other"]])
  assert baselines.read_source_groups(str(tmp_path)) == {
      "c.wav": baselines.SAME, "d.wav": baselines.CROSS}
  # Without a split column the train CSV says which clips are training's.
  _write(tmp_path / "train.csv", ["fname", "label"], [["a.wav", "x"]])
  _write(tmp_path / "sources.csv", ["fname", "source"],
         [["a.wav", "font1"], ["c.wav", "font1"], ["d.wav", "font2"]])
  assert baselines.read_source_groups(str(tmp_path)) == {
      "c.wav": baselines.SAME, "d.wav": baselines.CROSS}
  os.remove(tmp_path / "sources.csv")
  assert baselines.read_source_groups(str(tmp_path)) == {}


def test_figures_by_group_and_the_warnings():
  labels = ["a", "b", "c", "d"]
  fnames = ["s1", "s2", "x1", "x2", "unknown"]
  truth = {"s1": ("a",), "s2": ("b",), "x1": ("c",), "x2": ("d",)}
  probs = np.array([[0.7, 0.1, 0.1, 0.1],     # right
                    [0.1, 0.7, 0.1, 0.1],     # right
                    [0.1, 0.1, 0.2, 0.6],     # second
                    [0.1, 0.7, 0.2, 0.0],     # missed
                    [0.25] * 4])
  groups = {"s1": baselines.SAME, "s2": baselines.SAME,
            "x1": baselines.CROSS, "x2": baselines.CROSS}
  out = evaluation.by_group(evaluation.probability_scores(
      fnames, probs, labels), truth, groups)
  assert out[baselines.SAME]["map3"] == 1.0
  assert out[baselines.CROSS]["map3"] == pytest.approx(0.25)
  assert out[baselines.ALL]["map3"] == pytest.approx(0.625)
  assert out[baselines.ALL]["test_clips"] == 4
  stages = [{"name": "stage1", "val_map3": 0.9, "groups": out}]
  fitted = {"pretrained": {"groups": {baselines.CROSS: {"map3": 0.5}}}}
  lines = quality.source_warnings(stages, fitted, groups)
  assert any("validation MAP@3 0.900" in l and "0.250" in l for l in lines)
  assert any("pretrained baseline (0.500) beats stage1" in l for l in lines)
  assert "sources.csv" in quality.source_warnings(stages, fitted, {})[0]


@pytest.mark.skipif(not all(shutil.which(p) for p in ("fluidsynth",
                                                       "timidity")) or
                    not all(os.path.exists(s.path) for s in
                            instruments.SOURCES.values()),
                    reason="needs fluidsynth, timidity, the soundfonts and "
                    "freepats (BUILD.md)")
def test_cross_source_set_holds_a_source_out_of_training(tmp_path):
  spec = recorded_data.RecordedSpec(
      train_per_class=1, test_per_class=1,
      sources=("fluidr3", "timgm6mb", "freepats"),
      test_only_sources=("freepats",))
  counts = recorded_data.make_recorded_data(str(tmp_path), spec,
                                            progress=False)
  classes = recorded_data.set_classes(spec)
  assert 25 <= len(classes) < len(instruments.CLASSES)  # freepats has less
  assert counts["test"] == 2 * counts["train"] == 2 * len(classes)
  with open(tmp_path / "sources.csv") as f:
    rows = list(csv.DictReader(f))
  train_sources = {r["source"] for r in rows if r["split"] == "train"}
  assert train_sources <= {"fluidr3", "timgm6mb"}
  groups = baselines.read_source_groups(str(tmp_path))
  assert sum(g == baselines.CROSS for g in groups.values()) == len(classes)
  for name in os.listdir(tmp_path / "audio_test"):
    rate = struct.unpack("<I", (tmp_path / "audio_test" / name).read_bytes()[
        24:28])[0]
    assert rate in (22050, 44100)


def test_the_default_set_is_unchanged_by_the_sources():
  """The default three soundfonts and no held-out source draw the same
  plan as before sources existed (the README's figures stay reproducible)."""
  spec = recorded_data.RecordedSpec()
  plan = recorded_data._plan(spec, recorded_data.set_classes(spec),
                             np.random.default_rng(0))
  rng = np.random.default_rng(0)
  first = (rng.integers(3), recorded_data._performance(
      instruments.CLASSES[0], rng))
  assert len(plan) == 39 * (25 + 12)
  assert {c[0] for c in plan} == {"train", "test"}
  assert any(c[2] == first[0] and c[3] == first[1] for c in plan)


def test_recipe_rows_give_each_members_marginal_value(tmp_path):
  """Three members' scores: the recipe without each (over the members
  only), then the whole recipe, each by source group; the ensemble is the
  members' mean log-probability."""
  from tagger.infer import scorer  # pylint: disable=g-import-not-at-top
  labels, fnames = ["a", "b"], ["s1", "s2", "x1", "x2"]
  truth = {"s1": ("a",), "s2": ("b",), "x1": ("a",), "x2": ("b",)}
  groups = {"s1": baselines.SAME, "s2": baselines.SAME,
            "x1": baselines.CROSS, "x2": baselines.CROSS}
  right, wrong = np.log([[0.9, 0.1], [0.1, 0.9]] * 2), np.log(
      [[0.05, 0.95], [0.95, 0.05]] * 2)
  members = [{"model_dir": f"/m/{n}", "train_seconds": 60.0,
              "scores": scorer.Scores(fnames, lp, None, np.zeros(4, bool),
                                      labels)}
             for n, lp in (("good", right), ("bad", wrong),
                           ("good2", right))]
  run = quality._Run(str(tmp_path), 0, "", truth, groups, False)  # pylint: disable=protected-access
  rows = quality.combination_rows(members, run, "/m")
  assert [r["name"] for r in rows] == [
      "new_audio without good", "new_audio without bad",
      "new_audio without good2", "new_audio"]
  without_bad, whole = rows[1], rows[3]
  assert without_bad["map3"] == 1.0 and without_bad["train_seconds"] == 120
  assert whole["groups"][baselines.CROSS]["map3"] == 1.0   # 2 right of 3
  assert rows[0]["map3"] == 0.5   # one right, one surer wrong: second
  assert (tmp_path / "ensemble_probs.csv").exists()
