"""Wrong labels: out-of-fold scores from training every fold, the clips
whose label looks wrong (planted ones found), and a next training that
drops, weights or relabels them (never a verified clip's label)."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from tagger import recipe
from tagger import settings
from tagger.datasets import synthetic
from tagger.infer import label_issues
from tagger.infer import out_of_fold
from tagger.input import batches
from tagger.input import label_fixes
from tagger.input import pipeline
from tagger.shards import data_info
from tagger.shards import records
from tagger.train import trainer
from conftest import tiny_config  # pylint: disable=g-bad-import-order

# Unverified records (i % 3 == 0) given the next class's label.
FLIPPED = (0, 12, 27, 45, 66, 81)
SET = synthetic.SyntheticSet(96, num_classes=4, num_folds=3, pca_dim=6,
                             median_frames=40, sigma=0.2, seed=1,
                             learnable=True, flipped=FLIPPED)


def _config(**overrides):
  return tiny_config(**{"schedule.cyclic_epochs": 4,
                        "augment.mixup_alpha": 0.0,
                        "augment.erase_probability": 0.0,
                        "tensorboard_images": 0, **overrides})


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("flipped"))
  synthetic.write_synthetic_shards(path, SET)
  return path


@pytest.fixture(scope="module")
def all_folds(data_dir, tmp_path_factory):
  """Every fold trained by tools/train's path: the model dir."""
  model_dir = str(tmp_path_factory.mktemp("all"))
  config = _config(fold="all")
  recipe.train_command(config, data_dir, model_dir, trainer.setup(config))
  return model_dir


def test_every_clip_is_scored_once_by_the_fold_that_held_it_out(all_folds):
  table = out_of_fold.read(all_folds)
  index = np.array([int(f[5:11]) for f in table.fnames])
  assert sorted(index.tolist()) == list(range(SET.num_records))
  np.testing.assert_array_equal(
      table.folds, synthetic.synthetic_fold(index, 4, 3))
  np.testing.assert_array_equal(
      table.labels, [SET.given_label(int(i)) for i in index])
  np.testing.assert_array_equal(table.verified, index % 3 != 0)
  assert np.isfinite(table.log_probs).all()
  np.testing.assert_allclose(table.probs.sum(axis=1), 1.0, rtol=1e-5)
  for k in range(3):
    assert os.path.exists(os.path.join(all_folds, f"fold{k}",
                                       "best.weights.h5"))


def test_planted_wrong_labels_are_found_with_their_true_class(all_folds):
  issues = label_fixes.read_csv(os.path.join(all_folds,
                                             label_issues.LABEL_ISSUES))
  found = {int(x.fname[5:11]): x for x in issues}
  hits = [i for i in FLIPPED if i in found]
  assert len(hits) >= 5, (sorted(found), FLIPPED)
  assert len(hits) / len(found) >= 0.8, (sorted(found), FLIPPED)
  for i in hits:   # the suggested label is the pattern's class
    assert found[i].suggested == (f"class_{i % 4:02d}",)
    assert found[i].given == (f"class_{(i + 1) % 4:02d}",)
  qualities = [x.label_quality for x in issues]
  assert qualities == sorted(qualities)   # worst first


def test_out_of_fold_scores_resume_at_the_first_missing_fold(
    all_folds, tmp_path, monkeypatch):
  whole = out_of_fold.read(all_folds)
  model_dir = str(tmp_path / "m")
  os.makedirs(model_dir)
  for k in range(3):
    os.symlink(os.path.join(all_folds, f"fold{k}"),
               os.path.join(model_dir, f"fold{k}"))
  keep = np.flatnonzero(whole.folds == 0)
  partial = dataclasses.replace(
      whole, fnames=whole.fnames[keep], folds=whole.folds[keep],
      labels=whole.labels[keep],
      label_sets=[whole.label_sets[i] for i in keep],
      verified=whole.verified[keep], empty=whole.empty[keep],
      log_probs=whole.log_probs[keep])
  partial.save(os.path.join(model_dir, out_of_fold.OUT_OF_FOLD))
  scored = []
  real = out_of_fold.score_fold
  monkeypatch.setattr(out_of_fold, "score_fold", lambda d, *a, **k: (
      scored.append(os.path.basename(d)) or real(d, *a, **k)))
  data_dir = whole_data_dir(all_folds)
  again = out_of_fold.write(model_dir, data_dir, tf.distribute.get_strategy(),
                            progress=False)
  assert scored == ["fold1", "fold2"]
  order = {f: i for i, f in enumerate(again.fnames)}
  rows = [order[f] for f in whole.fnames]
  np.testing.assert_array_equal(again.folds[rows], whole.folds)
  np.testing.assert_allclose(again.log_probs[rows], whole.log_probs,
                             rtol=1e-5, atol=1e-6)


def whole_data_dir(model_dir: str) -> str:
  """The shards a fold model dir was trained on (its data.json)."""
  from tagger.model import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  return model_dir_lib.read_data(os.path.join(model_dir, "fold0")).data_dir


def _issues():
  """Two unverified clips and a verified one, each suspected."""
  return [label_fixes.LabelIssue("clip_000045.wav", ("class_01",),
                                 ("class_00",), 0.01, False, 0),
          label_fixes.LabelIssue("clip_000066.wav", ("class_01",),
                                 ("class_00",), 0.02, False, 1),
          label_fixes.LabelIssue("clip_000001.wav", ("class_01",),
                                 ("class_02",), 0.03, True, 0)]


CLASSES = [f"class_{c:02d}" for c in range(4)]


def test_a_verified_clip_is_never_relabelled():
  fixes = label_fixes.fixes(_issues(), CLASSES, "relabel", 0.3, True, False)
  assert fixes.fnames == ("clip_000045.wav", "clip_000066.wav")
  assert fixes.labels == (0, 0) and fixes.weights == (1.0, 1.0)
  dropped = label_fixes.fixes(_issues(), CLASSES, "drop", 0.3, False, False)
  assert dropped.fnames == ("clip_000045.wav", "clip_000066.wav")
  assert dropped.labels == (-1, -1) and dropped.weights == (0.0, 0.0)
  every = label_fixes.fixes(_issues(), CLASSES, "weight", 0.3, True, False)
  assert every.fnames == ("clip_000001.wav", "clip_000045.wav",
                          "clip_000066.wav")
  assert every.weights == (0.3, 0.3, 0.3)
  with pytest.raises(label_fixes.LabelIssuesError, match="single-label"):
    label_fixes.fixes(_issues(), CLASSES, "relabel", 0.3, False, True)
  with pytest.raises(settings.SettingsError, match="on_label_issue"):
    settings.run_config(_config(on_label_issue="flip"))


def test_the_csv_reads_back_what_it_wrote_names_escaped(tmp_path):
  path = str(tmp_path / "issues.csv")
  odd = dataclasses.replace(_issues()[0], fname="=1+1.wav")
  label_fixes.write_csv(path, [odd] + _issues()[1:])
  assert "'=1+1.wav" in open(path).read()
  assert label_fixes.read_csv(path) == [odd] + _issues()[1:]
  open(path, "w").write("a,b\n1,2\n")
  with pytest.raises(label_fixes.LabelIssuesError, match="not a label"):
    label_fixes.read_csv(path)


def test_the_batches_carry_each_fix(data_dir):
  info = data_info.load_data_info(data_dir)
  fixes = label_fixes.fixes(_issues(), CLASSES, "relabel", 0.3, False, False)
  config = dataclasses.replace(settings.InputConfig(), batch_size=16,
                               length_range=(32, 48), length_quantum=16,
                               pairing="global", placement="host")
  no_mixup = settings.AugmentConfig(mixup_alpha=0.0)
  on_host = next(iter(pipeline.train_dataset(info, (0, 1, 2), config,
                                             no_mixup, num_epochs=1,
                                             label_fixes=fixes)))
  assert on_host[batches.CLIP_WEIGHT].shape == [16]   # model batches
  seen = {}
  host = dataclasses.replace(config, placement="device")
  for batch in pipeline.train_dataset(info, (0, 1, 2), host, num_epochs=1,
                                      label_fixes=fixes):
    for i, label, weight in zip(batch[records.PCA][:, 0].numpy(),
                                batch[records.LABEL].numpy(),
                                batch[batches.CLIP_WEIGHT].numpy()):
      seen[int(i)] = (int(label), float(weight))
    model = batches.augment_batch(batch, info.batch_spec, no_mixup)
    assert model[batches.CLIP_WEIGHT].shape == batch[records.LABEL].shape
  assert seen[45] == (0, 1.0) and seen[66] == (0, 1.0)   # relabelled
  assert seen[1] == (SET.given_label(1), 1.0)           # verified: kept
  assert seen[3] == (SET.given_label(3), 1.0)           # not suspected
  plain = next(iter(pipeline.train_dataset(info, (0, 1, 2), host,
                                           num_epochs=1)))
  assert batches.CLIP_WEIGHT not in plain


def _weights(model_dir):
  from tagger.model import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  _, model = model_dir_lib.load(model_dir)
  return [w.numpy() for w in model.weights]


def test_no_issue_to_act_on_trains_exactly_as_before(data_dir, tmp_path):
  verified_only = str(tmp_path / "issues.csv")
  label_fixes.write_csv(verified_only, _issues()[2:])
  dropped = str(tmp_path / "dropped.csv")
  label_fixes.write_csv(dropped, _issues())
  runs = {}
  for name, path in (("plain", ""), ("none", verified_only),
                     ("drop", dropped)):
    config = _config(fold="0", deterministic=True, label_issues=path,
                     **{"schedule.cyclic_epochs": 1})
    model_dir = str(tmp_path / name)
    trainer.train(config, data_dir, model_dir, trainer.setup(config))
    runs[name] = _weights(model_dir)
  for a, b in zip(runs["plain"], runs["none"]):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b)
             for a, b in zip(runs["plain"], runs["drop"]))


def test_multi_label_issues_and_suggestions():
  rng = np.random.default_rng(0)
  n, c = 120, 4
  truth = [tuple(sorted({i % c, (i // c) % c})) for i in range(n)]
  probs = np.full((n, c), 0.05)
  for i, labels in enumerate(truth):
    probs[i, list(labels)] = 0.9 + 0.05 * rng.random(len(labels))
  given = list(truth)
  given[8] = (3,)          # truth (0, 2): both missed, a wrong one given
  given[21] = (0, 3)       # truth (1,): wrong pair
  table = out_of_fold.OutOfFold(
      np.array([f"c{i}.wav" for i in range(n)], object), np.zeros(n, int),
      np.full(n, -1), given, np.zeros(n, bool), np.zeros(n, bool),
      np.log(probs), CLASSES, True)
  issues = label_issues.find(table)
  names = [x.fname for x in issues]
  assert "c8.wav" in names and "c21.wav" in names and len(names) <= 6
  eight = issues[names.index("c8.wav")]
  assert eight.given == ("class_03",)
  assert eight.suggested == tuple(CLASSES[k] for k in truth[8])


def test_the_report_shows_the_suspected_clips_worst_first(all_folds, data_dir,
                                                          tmp_path):
  from tagger.infer import score  # pylint: disable=g-import-not-at-top
  labels_csv = tmp_path / "labels.csv"
  labels_csv.write_text("fname,label\n" + "".join(
      f"clip_{i:06d}.wav,class_{SET.given_label(i):02d}\n"
      for i in range(SET.num_records)))
  job = score.ScoreJob(model_dirs=all_folds, output=str(tmp_path / "s.csv"),
                       data_dir=data_dir, labels_csv=str(labels_csv),
                       report_dir=str(tmp_path / "report"), tries=1,
                       progress=False)
  _, result = score.run(job)
  assert len(result["models"]) == 3   # the dir of folds: its three folds
  page = open(result["report"], encoding="utf-8").read()
  section = page[page.index("id='label-issues'"):]
  issues = label_fixes.read_csv(os.path.join(all_folds,
                                             label_issues.LABEL_ISSUES))
  positions = [section.index(f"<td class='fname'>{x.fname}</td>")
               for x in issues]
  assert positions == sorted(positions) and issues
  # each row: the nearest training clips of the given and suggested labels
  assert section.count("<ol class='neighbours'>") == 2 * len(issues)


def test_a_fitted_member_is_judged_by_its_held_out_fit(data_dir, tmp_path):
  """A logistic member's head is refitted on every clip at the end; its
  out-of-fold scores are its held-out fit's, which never saw the clip."""
  from tagger.infer import logistic_member  # pylint: disable=g-import-not-at-top
  model_dir = str(tmp_path / "logistic")
  config = _config(fold="all", **{"model.fit": "logistic",
                                  "model.head": "linear",
                                  "model.freeze_backbone": True})
  recipe.train_command(config, data_dir, model_dir, trainer.setup(config))
  table = out_of_fold.read(model_dir)
  for k in range(3):
    held = np.load(os.path.join(model_dir, f"fold{k}",
                                logistic_member.HELD_OUT))
    rows = {f: i for i, f in enumerate(table.fnames)}
    np.testing.assert_allclose(
        table.log_probs[[rows[f] for f in held["fname"]]],
        held["log_probs"], rtol=1e-6)
  # the planted wrong labels are not echoed back as they would be by a
  # head that saw them
  flipped = [i for i, f in enumerate(table.fnames)
             if int(f[5:11]) in FLIPPED]
  assert (table.probs[flipped].argmax(axis=1) != table.labels[flipped]).all()


def test_a_recipe_passes_the_label_issues_to_every_member():
  config = settings.recipe_config([("a", tiny_config()), ("b", tiny_config())])
  config.label_issues = "runs/all/label_issues.csv"
  config.on_label_issue = "weight"
  for name in ("a", "b"):
    run = settings.run_config(recipe.member_config(config, name))
    assert (run.label_issues, run.on_label_issue) == (
        "runs/all/label_issues.csv", "weight")
