"""Shared helpers: tiny real audio files made in the test."""

import io
import os

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SR = 44100


def _two_logical_cpus():
  """Two logical CPU devices, so tf.distribute code runs on 2 replicas.

  Must happen before TensorFlow initialises its devices, hence at import.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)


_two_logical_cpus()

_STRATEGY = []


def two_cpu_strategy():
  """One MirroredStrategy over the two logical CPUs for the whole session:
  strategies made anew in one process reuse collective instance keys, and
  a gather of one can then meet another's ('Shape mismatch in the
  collective instance')."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not _STRATEGY:
    devices = tf.config.list_logical_devices("CPU")
    _STRATEGY.append(tf.distribute.MirroredStrategy([d.name for d in devices]))
  return _STRATEGY[0]


def tone(seconds: float, freq: float = 440.0, sr: int = SR, amp=0.3,
         seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * sr)) / sr
  return (amp * np.sin(2 * np.pi * freq * t) +
          0.01 * rng.standard_normal(t.size)).astype(np.float32)


def wav_bytes(waveform, sr=SR, subtype="PCM_16", fmt="WAV") -> bytes:
  buffer = io.BytesIO()
  sf.write(buffer, waveform, sr, subtype=subtype, format=fmt)
  return buffer.getvalue()


def write_dataset(root, clips, csv_name="train.csv", audio="audio_train",
                  header=("fname", "label", "manually_verified")):
  """clips: list of (fname, label, bytes or None). None: no file written."""
  audio_dir = os.path.join(root, audio)
  os.makedirs(audio_dir, exist_ok=True)
  lines = [",".join(header)]
  for fname, label, data in clips:
    if data is not None:
      with open(os.path.join(audio_dir, fname), "wb") as f:
        f.write(data)
    lines.append(",".join([fname, label, "1"][:len(header)]))
  with open(os.path.join(root, csv_name), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  return os.path.join(root, csv_name), audio_dir


def learnable_shards(path: str) -> str:
  """96 synthetic clips of 4 classes in 3 folds that a model learns in a
  few steps (the trainer tests' data); returns path."""
  from tagger.datasets import synthetic
  synthetic.write_synthetic_shards(path, synthetic.SyntheticSet(
      96, num_classes=4, num_folds=3, pca_dim=6, median_frames=40, sigma=0.2,
      seed=1, learnable=True))
  return path


@pytest.fixture
def params():
  from tagger.audio.params import FeatureParams
  return FeatureParams()


def tiny_config(**overrides):
  """settings.default_config() shrunk for tests: 32-48 frame inputs, batch
  16, one cyclic epoch, small_cnn (alpha 0.25; tests of MobileNetV2 itself
  name it). overrides: {"schedule.cyclic_epochs": 3, ...}."""
  from tagger import settings  # pylint: disable=g-import-not-at-top
  config = settings.default_config()
  config.input.batch_size = 16
  config.input.length_range = (32, 48)
  config.input.length_quantum = 16
  config.input.eval_lengths = (32,)
  config.input.pairing_block = 32
  config.input.shuffle_buffer = 32
  config.model.bn_momentum = 0.5  # a dozen steps: statistics must follow
  config.model.backbone = "small_cnn"
  config.model.alpha = 0.25
  config.schedule.cyclic_epochs = 1
  config.schedule.fine_tune_max_epochs = 0
  config.schedule.base_lr = 1e-3
  config.schedule.max_lr = 3e-3
  config.tensorboard_images = 2
  config.eval_batch_size = 32
  for key, value in overrides.items():
    target = config
    *path, last = key.split(".")
    for part in path:
      target = target[part]
    target[last] = value
  return config
