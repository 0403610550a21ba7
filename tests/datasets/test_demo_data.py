import hashlib
import os

import numpy as np
import pytest
import soundfile as sf

from tagger.datasets import demo_data


def _digest(root):
  h = hashlib.sha256()
  for dirpath, _, files in sorted(os.walk(root)):
    for name in sorted(files):
      with open(os.path.join(dirpath, name), "rb") as f:
        h.update(name.encode() + f.read())
  return h.hexdigest()


def test_layout_determinism_and_durations(tmp_path):
  spec = demo_data.DemoSpec(train_per_class=1, test_per_class=1, seed=3)
  counts = demo_data.make_demo_data(str(tmp_path / "a"), spec)
  demo_data.make_demo_data(str(tmp_path / "b"), spec)
  assert counts == {"train": 41, "test": 42}  # + the empty test clip
  assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
  root = tmp_path / "a"
  for name in ("train.csv", "sample_submission.csv", "test_labels.csv"):
    assert (root / name).exists()
  header = (root / "train.csv").read_text().splitlines()[0]
  assert header == "fname,label,manually_verified"
  durations = [sf.info(str(p)).duration
               for p in (root / "audio_train").iterdir()]
  assert min(durations) >= 0.3 and max(durations) <= 31.0
  sizes = [sf.info(str(p)).frames for p in (root / "audio_test").iterdir()]
  assert sorted(sizes)[0] == 0  # the empty test clip


def test_every_family_makes_sound():
  rng = np.random.default_rng(0)
  for k in range(8):
    y = demo_data.make_clip(k, rng, demo_data.DemoSpec())
    assert np.abs(y).max() > 0.01 and np.all(np.isfinite(y))
  assert len(demo_data.FSD_KAGGLE_2018_LABELS) == 41


def test_data_makers_never_overwrite_a_users_folder(tmp_path):
  """make_*_data write only into a new or empty folder or one they wrote
  (its tagger_dataset.json): a user's train.csv is never replaced; a
  killed run's folder (marked first) takes the same command again."""
  from tagger import fileio  # pylint: disable=g-import-not-at-top
  spec = demo_data.DemoSpec(train_per_class=1, test_per_class=0,
                            median_duration_s=0.5)
  mine = tmp_path / "my_data"
  mine.mkdir()
  (mine / "train.csv").write_text("fname,label\nx.wav,Bark\n")
  with pytest.raises(fileio.NotOursError, match="train.csv"):
    demo_data.make_demo_data(str(mine), spec)
  assert (mine / "train.csv").read_text() == "fname,label\nx.wav,Bark\n"
  assert sorted(os.listdir(mine)) == ["train.csv"]
  ours = tmp_path / "demo"
  demo_data.make_demo_data(str(ours), spec)
  assert (ours / demo_data.DATASET_MARK).exists()
  first = (ours / "train.csv").read_text()
  demo_data.make_demo_data(str(ours), spec)   # again: its own folder
  assert (ours / "train.csv").read_text() == first
