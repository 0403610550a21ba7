"""What the GPU user's path decides from the machine: the precision auto
picks for each kind of GPU, nvidia-smi's GPUs (a real nvidia-smi stand-in
on PATH), the refusal to train on the CPU when those GPUs are unusable,
tools/doctor, and mixed_bfloat16 through every phase on two replicas."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tagger import distribute
from tagger.model import model_dir as model_dir_lib
from tagger.train import trainer
from conftest import learnable_shards, tiny_config, two_cpu_strategy  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
H100 = distribute.Gpu("NVIDIA H100 80GB HBM3", (9, 0))
V100 = distribute.Gpu("Tesla V100-SXM2-16GB", (7, 0))


def test_precision_auto_follows_the_gpus():
  assert distribute.choose_precision("auto", [H100, H100])[0] == \
      "mixed_bfloat16"
  policy, why = distribute.choose_precision("auto", [V100])
  assert policy == "mixed_float16" and "7.0" in why
  assert distribute.choose_precision("auto", [H100, V100])[0] == \
      "mixed_float16"
  assert distribute.choose_precision("auto", [distribute.Gpu("?", None)]
                                     )[0] == "mixed_float16"
  assert distribute.choose_precision("auto", [])[0] == "float32"
  assert distribute.choose_precision("auto")[0] == "float32"  # no GPU here
  assert distribute.choose_precision("mixed_float16", [H100]) == (
      "mixed_float16", "asked for")
  with pytest.raises(distribute.DistributeError, match="precision"):
    distribute.choose_precision("fp8")


def _fake_nvidia_smi(folder, output: str, status: int = 0) -> str:
  """An executable nvidia-smi that prints what the real one would."""
  path = os.path.join(folder, "nvidia-smi")
  with open(path, "w") as f:
    f.write(f"#!/bin/sh\ncat <<'END'\n{output}END\nexit {status}\n")
  os.chmod(path, 0o755)
  return str(folder)


def test_nvidia_smis_gpus_are_read(tmp_path, monkeypatch):
  monkeypatch.setenv("PATH", _fake_nvidia_smi(
      tmp_path, "NVIDIA H100 80GB HBM3, 9.0, 81559\n"
      "Tesla T4, 7.5, 15360\n") + os.pathsep + os.environ["PATH"])
  assert distribute.driver_gpus() == (
      distribute.Gpu("NVIDIA H100 80GB HBM3", (9, 0), 81559),
      distribute.Gpu("Tesla T4", (7, 5), 15360))
  monkeypatch.setenv("PATH", _fake_nvidia_smi(
      tmp_path, "NVIDIA-SMI has failed\n", status=9) + os.pathsep +
                     os.environ["PATH"])
  assert distribute.driver_gpus() == ()
  monkeypatch.setenv("PATH", str(tmp_path / "empty"))
  assert distribute.driver_gpus() is None


def test_unusable_gpus_stop_training_unless_the_cpu_is_asked_for():
  found = distribute.Devices((), (H100, H100), True, {})
  for name in ("auto", "mirrored"):
    with pytest.raises(distribute.DistributeError) as e:
      distribute.make_strategy(name, found)
    assert "nvidia-smi lists 2 GPU(s)" in str(e.value)
    assert "pip install -e '.[gpu]'" in str(e.value)
    assert "\n" not in str(e.value)
  strategy = distribute.make_strategy("one_device", found)
  assert strategy.num_replicas_in_sync == 1
  # No driver, or GPUs TensorFlow uses: nothing to refuse.
  distribute.check_gpus_usable(distribute.Devices((), None, True, {}),
                               "auto")
  distribute.check_gpus_usable(distribute.Devices((H100,), (H100,), True,
                                                  {}), "auto")


def _doctor(path_prefix: str = ""):
  env = dict(os.environ)
  if path_prefix:
    env["PATH"] = path_prefix + os.pathsep + env["PATH"]
  return subprocess.run([sys.executable, "-m", "tools.doctor"], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def test_doctor_reports_the_machine_and_its_verdict(tmp_path):
  here = _doctor()
  lines = here.stdout.strip().splitlines()
  assert here.returncode == 0, here.stderr[-2000:]
  assert lines[0].startswith("TensorFlow 2.16.2")
  assert "precision auto: float32" in here.stdout
  assert lines[-1] == "OK"
  broken = _doctor(_fake_nvidia_smi(tmp_path, "NVIDIA A100-SXM4-40GB, 8.0, "
                                    "40960\n"))
  assert broken.returncode == 1
  assert "nvidia-smi lists 1 GPU(s): NVIDIA A100-SXM4-40GB (compute 8.0, " \
      "40960 MiB)" in broken.stdout
  assert broken.stdout.strip().splitlines()[-1].startswith(
      "PROBLEM: nvidia-smi lists 1 GPU(s) but")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return learnable_shards(str(tmp_path_factory.mktemp("learnable")))


def test_mixed_bfloat16_through_every_phase_on_two_replicas(data_dir,
                                                            tmp_path):
  """What auto picks on Ampere and newer: no loss scaling, finite losses
  through the cyclic and both fine-tune phases, float32 probabilities;
  the summary says which precision and why."""
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    config = tiny_config(**{"max_steps_per_epoch": 2,
                            "schedule.fine_tune_max_epochs": 1,
                            "augment.mixup_alpha": 1.0,
                            "augment.freq_masks": 1,
                            "model.backbone": "small_cnn",
                            "model.alpha": 0.25})
    run = trainer.FoldRun(config, data_dir, str(tmp_path / "bf16"),
                          two_cpu_strategy(), 0)
    summary = run.train()
    assert not isinstance(run.optimizer, keras.optimizers.LossScaleOptimizer)
    assert summary["precision"] == "mixed_bfloat16"
    assert "precision_reason" in summary
    history = open(tmp_path / "bf16" / model_dir_lib.HISTORY).read(
        ).splitlines()
    assert [r.split(",")[0] for r in history[1:]] == [
        "cyclic", "fine_tune_1", "fine_tune_2"]
    for row in history[1:]:
      assert all(np.isfinite(float(x)) for x in row.split(",")[2:7]), row
    probs, _ = run.predict_validation()
    assert probs.dtype == np.float32
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_the_gpu_extra_is_tensorflows_own_cuda_set_at_the_pin(tmp_path):
  """pip install -e '.[gpu]' asks for tensorflow[and-cuda] in exactly the
  range of the plain install, constraints.txt pins that TensorFlow (the
  installed one), and that TensorFlow declares the extra with every CUDA
  library pinned (with the constraints the resolver has one answer)."""
  import importlib.metadata as metadata  # pylint: disable=g-import-not-at-top
  subprocess.run([sys.executable, "setup.py", "-q", "egg_info",
                  "--egg-base", str(tmp_path)], cwd=REPO, check=True,
                 capture_output=True)
  (info,) = [p for p in os.listdir(tmp_path) if p.endswith(".egg-info")]
  requires = (tmp_path / info / "requires.txt").read_text()
  tf_range = [l for l in requires.splitlines()
              if l.startswith("tensorflow") and l[len("tensorflow"):][:1]
              in "<>=!~"][0][len("tensorflow"):]
  gpu = requires.split("[gpu]")[1].strip().splitlines()[0]
  assert gpu == f"tensorflow[and-cuda]{tf_range}"
  with open(os.path.join(REPO, "constraints.txt"), encoding="utf-8") as f:
    pinned = [l.split("==")[1].strip() for l in f
              if l.startswith("tensorflow==")]
  assert pinned == [metadata.version("tensorflow")]
  assert "and-cuda" in metadata.metadata("tensorflow").get_all(
      "Provides-Extra")
  cuda = [r for r in metadata.requires("tensorflow") if "and-cuda" in r]
  assert len(cuda) >= 10 and all("==" in r for r in cuda), cuda


def test_the_gpu_check_runs_tiny_on_a_cpu():
  """tools/benchmark_gpu stays working where no GPU is: its last line holds
  the step's and the host's examples/s and their ratio."""
  result = subprocess.run(
      [sys.executable, "-m", "tools.benchmark_gpu", "--batch_size=4",
       "--lengths=48", "--steps=2", "--warmup=1", "--num_records=48",
       "--pipeline_steps=5", "--backbone=small_cnn"], cwd=REPO,
      capture_output=True, text=True,
      timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  assert result.returncode == 0, result.stderr[-3000:]
  last = result.stdout.strip().splitlines()[-1]
  figures = dict(kv.split("=") for kv in last.split())
  assert set(figures) == {"stage1_examples_per_sec",
                          "stage2_examples_per_sec",
                          "host_examples_per_sec", "host_over_step"}
  assert all(float(v) > 0 for v in figures.values())
  assert "float32 (auto: no GPU)" in result.stdout
