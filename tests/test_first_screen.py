"""A tool's first screen: its progress bars, stage lines and result, no
TensorFlow start-up log lines (the CUDA factories' "Unable to register"
errors, oneDNN's notes) and no deprecation warnings; --verbosity=1 shows
them all. Real tools in real processes, on real audio and shards."""

import os
import re
import subprocess
import sys

from conftest import tone, wav_bytes, write_dataset  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# TensorFlow's C++ log lines ("2026-12-07 22:38:03.046154: E external/...")
# and absl's ("E1207 22:38:03.046154 1234 file.py:12]") of TF's own files.
TF_CPP_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [EWI] ",
                         re.M)
NOISE = ("Unable to register", "oneDNN", "DeprecationWarning",
         "is deprecated", "cuda_", "wrote train-")


def _tool(name, *args, cwd=REPO):
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_CPP_MIN_LOG_LEVEL", "PYTHONWARNINGS")}
  env.update(PYTHONPATH=REPO, CUDA_VISIBLE_DEVICES="")
  return subprocess.run([sys.executable, "-m", f"tools.{name}", *args],
                        cwd=cwd, env=env, capture_output=True, text=True,
                        timeout=600)


def _quiet(stderr: str) -> list:
  """The noise lines in stderr."""
  return [line for line in stderr.splitlines()
          if TF_CPP_LINE.match(line) or any(n in line for n in NOISE)]


def _dataset(root):
  clips = [(f"{label}{i}.wav", label, wav_bytes(tone(1.5, freq, seed=i)))
           for label, freq in (("low", 220.0), ("high", 1760.0))
           for i in range(6)]
  return write_dataset(str(root), clips)


def test_sharding_and_training_show_no_start_up_noise(tmp_path):
  csv, audio = _dataset(tmp_path / "data")
  shards = str(tmp_path / "shards")
  made = _tool("make_tfrecords", f"--csv={csv}", f"--audio_dir={audio}",
               f"--output_dir={shards}", "--split=train", "--num_workers=1",
               "--num_folds=2", "--min_shards=2")
  assert made.returncode == 0, made.stderr
  assert _quiet(made.stderr) == [], made.stderr
  assert "train: 12 records in" in made.stdout
  trained = _tool("train", "--config=demo:stage1", f"--data_dir={shards}",
                  f"--model_dir={tmp_path / 'run'}", "--config.fold=0",
                  "--config.model.backbone=small_cnn",
                  "--config.input.batch_size=2", "--config.eval_batch_size=2",
                  "--config.input.length_range=(32,64)",
                  "--config.input.eval_lengths=(48,)",
                  "--config.schedule.cyclic_epochs=1",
                  "--config.schedule.fine_tune_max_epochs=0")
  assert trained.returncode == 0, trained.stderr
  assert _quiet(trained.stderr) == [], trained.stderr


def test_verbosity_1_shows_everything(tmp_path):
  csv, audio = _dataset(tmp_path / "data")
  made = _tool("make_tfrecords", f"--csv={csv}", f"--audio_dir={audio}",
               f"--output_dir={tmp_path / 'shards'}", "--split=train",
               "--num_workers=1", "--num_folds=2", "--min_shards=2",
               "--verbosity=1")
  assert made.returncode == 0, made.stderr
  assert "wrote train-00000-of-" in made.stderr   # the per-shard line
  # TensorFlow's own start-up lines come back (whichever this host logs).
  assert TF_CPP_LINE.search(made.stderr), made.stderr


def test_help_from_another_folder_is_quiet(tmp_path):
  shown = _tool("score", "--help", cwd=str(tmp_path))
  assert shown.stdout.startswith("Scores test"), shown.stdout
  assert _quiet(shown.stderr) == [], shown.stderr
