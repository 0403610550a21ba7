"""The model and the trainer: counts, stages, replicas, precision, resume."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from tagger import distribute
from tagger import model as model_lib
from tagger import synthetic
from tagger import trainer
from conftest import tiny_config  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parameter_counts_as_the_write_up():
  stage1 = model_lib.build_model(41)
  stage2 = model_lib.build_model(41, 350)
  assert model_lib.parameter_counts(stage1)["total"] == 4_839_330
  assert model_lib.parameter_counts(stage2) == {"total": 5_378_330,
                                                "trainable": 5_339_676}


def test_bn_momentum_is_set_everywhere():
  model = model_lib.build_model(5, bn_momentum=0.9)
  bns = [l for l in model_lib._all_layers(model)  # pylint: disable=protected-access
         if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bns) > 50 and {l.momentum for l in bns} == {0.9}


def test_imagenet_offline_gives_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path))
  with pytest.raises(model_lib.ModelError, match="no internet"):
    model_lib.build_model(5, backbone_weights="imagenet")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("learnable"))
  synthetic.write_synthetic_shards(
      path, 96, num_classes=4, num_folds=3, pca_dim=6, median_frames=40,
      sigma=0.2, seed=1, learnable=True)
  return path


def two_cpu_strategy():
  devices = tf.config.list_logical_devices("CPU")
  return tf.distribute.MirroredStrategy([d.name for d in devices])


def test_loss_falls_under_mirrored_strategy_on_two_cpus(data_dir, tmp_path):
  keras.mixed_precision.set_global_policy("float32")
  config = tiny_config(**{"schedule.cyclic_epochs": 4,
                          "augment.mixup_alpha": 0.0,
                          "augment.erase_probability": 0.0,
                          "log_pairing": True})
  summary = trainer.train(config, data_dir, str(tmp_path / "run"),
                          two_cpu_strategy())
  history = open(tmp_path / "run" / trainer.HISTORY).read().splitlines()
  losses = [float(row.split(",")[3]) for row in history[1:]]
  val_map3 = [float(row.split(",")[6]) for row in history[1:]]
  assert len(losses) == 4 and min(losses[2:]) < 0.8 * losses[0], losses
  assert max(val_map3) > 0.7, val_map3  # chance for 4 classes: 0.46
  assert summary["strategy"] == "MirroredStrategy with 2 replica(s)"
  assert summary["traces"]["train"] == 1  # several lengths, one trace
  for name in (trainer.BEST, trainer.SUMMARY, trainer.CONFUSION,
               trainer.CONFIG):
    assert os.path.exists(tmp_path / "run" / name)
  assert os.listdir(tmp_path / "run" / trainer.TENSORBOARD)
  tables = sorted(os.listdir(tmp_path / "run" / trainer.PAIRING))
  assert tables[0] == "epoch-00000.csv" and len(tables) >= 4
  rows = open(tmp_path / "run" / trainer.PAIRING / tables[0]).read().split()
  steps = summary["steps"] // 4
  assert len(rows) == 1 + steps * 16  # header + every pair of the epoch


def test_stage2_starts_from_stage1_weights(data_dir, tmp_path):
  keras.mixed_precision.set_global_policy("float32")
  stage1_dir = tmp_path / "stage1" / "fold0"
  os.makedirs(stage1_dir)
  stage1 = model_lib.build_model(4, 0, bn_momentum=0.9)
  for w in stage1.weights:
    w.assign(np.random.default_rng(0).normal(size=w.shape).astype(
        w.dtype))
  trainer.save_weights(stage1, str(stage1_dir / trainer.BEST))
  config = tiny_config(**{
      "stage": 2, "model.init_from": str(tmp_path / "stage1" / "fold{fold}")})
  run = trainer.FoldRun(config, data_dir, str(tmp_path / "s2"),
                        tf.distribute.get_strategy(), 0)
  run.build()
  copied = run.init_from()
  assert "backbone" in copied and "mel_conv3" in copied
  assert "fc1536" not in copied  # its input grew by the PCA width
  for name in ("mel_bn", "mel_conv10", "backbone", "probs"):
    for a, b in zip(run.model.get_layer(name).get_weights(),
                    stage1.get_layer(name).get_weights()):
      np.testing.assert_array_equal(a, b)


def test_mixed_float16_step(data_dir, tmp_path):
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    config = tiny_config(**{"input.batch_size": 4,
                            "input.length_range": (32, 33),
                            "input.length_quantum": 32})
    run = trainer.FoldRun(config, data_dir, str(tmp_path / "mp"),
                          tf.distribute.get_strategy(), 0)
    run.build()
    run.datasets(0)
    run.compile_steps()
    assert isinstance(run.optimizer, keras.optimizers.LossScaleOptimizer)
    loss = run.train_step(next(iter(run.train_data)), tf.constant(1e-3))
    assert np.isfinite(loss.numpy())
    probs, _ = run.eval_step(next(iter(run.eval_data)))
    assert probs.dtype == tf.float32
    np.testing.assert_allclose(probs.numpy().sum(axis=1), 1, atol=1e-3)
  finally:
    keras.mixed_precision.set_global_policy("float32")


CONFIG_FILE = """
from tagger import trainer
def get_config():
  config = trainer.default_config()
  config.deterministic = True
  config.input.batch_size = 16
  config.input.length_range = (32, 48)
  config.input.length_quantum = 16
  config.input.eval_lengths = (32,)
  config.input.pairing_block = 32
  config.input.shuffle_buffer = 32
  config.model.bn_momentum = 0.9
  config.schedule.cyclic_epochs = 2
  config.schedule.fine_tune_max_epochs = 2
  config.schedule.early_stop_patience = 5
  config.tensorboard_images = 0
  config.eval_batch_size = 32
  return config
"""


def train_command(config_path, data_dir, model_dir, *extra):
  return [sys.executable, "-m", "tools.train", f"--config={config_path}",
          f"--data_dir={data_dir}", f"--model_dir={model_dir}", *extra]


def _env():
  return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
          "PYTHONPATH": REPO, "CUDA_VISIBLE_DEVICES": ""}


def _comparable(model_dir):
  rows = open(os.path.join(model_dir, trainer.HISTORY)).read().splitlines()
  keep = lambda r: r.split(",")[:7]  # without examples/s and seconds
  return [keep(r) for r in rows]


def test_kill_and_resume_ends_where_an_uninterrupted_run_does(data_dir,
                                                              tmp_path):
  config_path = tmp_path / "tiny.py"
  config_path.write_text(CONFIG_FILE)
  straight = str(tmp_path / "straight")
  subprocess.run(train_command(config_path, data_dir, straight), check=True,
                 cwd=REPO, env=_env(), capture_output=True)
  killed = str(tmp_path / "killed")
  proc = subprocess.Popen(train_command(config_path, data_dir, killed),
                          cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  state_path = os.path.join(killed, trainer.STATE)
  deadline = time.time() + 300
  while time.time() < deadline:  # kill in phase fine_tune_1's first epoch
    if os.path.exists(state_path):
      try:
        state = json.load(open(state_path))
      except ValueError:
        state = {}
      if state.get("epoch", 0) >= 3:
        break
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  state = json.load(open(state_path))
  assert 3 <= state["epoch"] < 6 and not state["done"]
  result = subprocess.run(train_command(config_path, data_dir, killed),
                          cwd=REPO, env=_env(), capture_output=True,
                          text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resuming" in result.stderr
  assert _comparable(killed) == _comparable(straight)
  a = keras.Model  # weights equal bit for bit
  del a
  w1 = model_lib.build_model(4, 0)
  w2 = model_lib.build_model(4, 0)
  trainer.load_weights(w1, os.path.join(straight, trainer.BEST))
  trainer.load_weights(w2, os.path.join(killed, trainer.BEST))
  for x, y in zip(w1.get_weights(), w2.get_weights()):
    np.testing.assert_array_equal(x, y)
  # A finished run is not trained again.
  again = subprocess.run(train_command(config_path, data_dir, killed),
                         cwd=REPO, env=_env(), capture_output=True, text=True)
  assert again.returncode == 0 and "nothing to do" in again.stderr


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def test_two_workers_with_multi_worker_mirrored_strategy(data_dir, tmp_path):
  config_path = tmp_path / "tiny.py"
  config_path.write_text(CONFIG_FILE.replace(
      "config.schedule.fine_tune_max_epochs = 2",
      "config.schedule.fine_tune_max_epochs = 0").replace(
          "config.schedule.cyclic_epochs = 2",
          "config.schedule.cyclic_epochs = 1\n"
          "  config.max_steps_per_epoch = 3"))
  cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
  model_dir = str(tmp_path / "mw")
  procs = []
  for index in range(2):
    env = {**_env(), "TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}})}
    procs.append(subprocess.Popen(
        train_command(config_path, data_dir, model_dir,
                      "--strategy=multi_worker"),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True))
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  summary = json.load(open(os.path.join(model_dir, trainer.SUMMARY)))
  assert summary["strategy"] == ("MultiWorkerMirroredStrategy with 2 "
                                 "replica(s)")
  assert summary["steps"] == 3


def test_strategy_and_precision_choices():
  with pytest.raises(distribute.DistributeError, match="TF_CONFIG"):
    if "TF_CONFIG" not in os.environ:
      distribute.make_strategy("multi_worker")
    else:
      raise distribute.DistributeError("TF_CONFIG")
  assert distribute.choose_precision("auto") == "float32"  # no GPU here
  with pytest.raises(distribute.DistributeError, match="precision"):
    distribute.choose_precision("fp8")
