"""The trained demo model and its SavedModel, fixtures shared by the
serving tests (made once per test process): `from serving_model import
demo, saved`."""

import os

import keras
import pytest
import tensorflow as tf

from tagger.datasets import demo_data
from tagger.infer import export as export_lib
from tagger.shards import sharding
from tagger.train import trainer
from conftest import tiny_config  # pylint: disable=g-bad-import-order


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
  """(demo data dir, train shards, stage-1 model dir, test wav paths)."""
  keras.mixed_precision.set_global_policy("float32")
  root = tmp_path_factory.mktemp("serving")
  data = str(root / "data")
  demo_data.make_demo_data(data, demo_data.DemoSpec(
      train_per_class=2, test_per_class=1, seed=5, median_duration_s=1.5))
  shards = str(root / "shards")
  sharding.make_tfrecords(sharding.Options(
      csv=os.path.join(data, "train.csv"),
      audio_dir=os.path.join(data, "audio_train"), output_dir=shards,
      num_folds=2, num_workers=2, progress=False, pca_components=8))
  config = tiny_config(**{"input.eval_lengths": (32, 48),
                          "tensorboard_images": 0})
  model_dir = str(root / "stage1" / "fold0")
  trainer.train(config, shards, model_dir, tf.distribute.get_strategy())
  test_audio = os.path.join(data, "audio_test")
  wavs = sorted(os.path.join(test_audio, n) for n in os.listdir(test_audio))
  return data, shards, model_dir, wavs[:10]


@pytest.fixture(scope="session")
def saved(demo, tmp_path_factory):
  """The demo model's waveform SavedModel (exported once)."""
  return export_lib.export(demo[2], str(tmp_path_factory.mktemp("saved") /
                                        "saved_model"))
