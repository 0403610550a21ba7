"""The model and the trainer: counts, stages, replicas, precision, resume."""

import json
import os
import re
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
from tagger.model import model_dir as model_dir_lib
from tagger.model import architecture as architecture_lib
from tagger.model import networks as model_lib
from tagger.train import fold_parts
from tagger.train import run_state
from tagger.train import trainer
from conftest import learnable_shards, tiny_config, two_cpu_strategy  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_parameter_counts_as_the_write_up():
  stage1 = model_lib.build_model(architecture_lib.Architecture(41))
  stage2 = model_lib.build_model(architecture_lib.Architecture(41, 350))
  assert model_lib.parameter_counts(stage1)["total"] == 4_839_330
  assert model_lib.parameter_counts(stage2) == {"total": 5_378_330,
                                                "trainable": 5_339_676}


def test_bn_momentum_is_set_everywhere():
  model = model_lib.build_model(
      architecture_lib.Architecture(5), architecture_lib.TrainOptions(bn_momentum=0.9))
  bns = [l for l in model_lib._all_layers(model)  # pylint: disable=protected-access
         if isinstance(l, keras.layers.BatchNormalization)]
  assert len(bns) > 50 and {l.momentum for l in bns} == {0.9}


def test_imagenet_offline_gives_a_clear_error(tmp_path, monkeypatch):
  monkeypatch.setenv("KERAS_HOME", str(tmp_path))
  with pytest.raises(model_lib.ModelError, match="no internet"):
    model_lib.build_model(
        architecture_lib.Architecture(5),
        architecture_lib.TrainOptions(backbone_weights="imagenet"))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return learnable_shards(str(tmp_path_factory.mktemp("learnable")))


def test_loss_falls_under_mirrored_strategy_on_two_cpus(data_dir, tmp_path):
  keras.mixed_precision.set_global_policy("float32")
  config = tiny_config(**{"schedule.cyclic_epochs": 4,
                          "model.backbone": "small_cnn",
                          "augment.mixup_alpha": 0.0,
                          "augment.erase_probability": 0.0,
                          "log_pairing": True})
  summary = trainer.train(config, data_dir, str(tmp_path / "run"),
                          two_cpu_strategy())
  history = open(tmp_path / "run" / model_dir_lib.HISTORY).read().splitlines()
  losses = [float(row.split(",")[3]) for row in history[1:]]
  val_map3 = [float(row.split(",")[6]) for row in history[1:]]
  assert len(losses) == 4 and min(losses[2:]) < 0.8 * losses[0], losses
  assert max(val_map3) > 0.7, val_map3  # chance for 4 classes: 0.46
  assert summary["strategy"] == "MirroredStrategy with 2 replica(s)"
  assert summary["traces"]["train"] == 1  # several lengths, one trace
  for name in (model_dir_lib.BEST, model_dir_lib.SUMMARY,
               model_dir_lib.CONFUSION, model_dir_lib.CONFIG):
    assert os.path.exists(tmp_path / "run" / name)
  assert os.listdir(tmp_path / "run" / model_dir_lib.TENSORBOARD)
  tables = sorted(os.listdir(tmp_path / "run" / model_dir_lib.PAIRING))
  assert tables[0] == "epoch-00000.csv" and len(tables) >= 4
  rows = open(tmp_path / "run" / model_dir_lib.PAIRING /
              tables[0]).read().split()
  steps = summary["steps"] // 4
  assert len(rows) == 1 + steps * 16  # header + every pair of the epoch


def test_stage2_starts_from_stage1_weights(data_dir, tmp_path):
  keras.mixed_precision.set_global_policy("float32")
  stage1_dir = tmp_path / "stage1" / "fold0"
  os.makedirs(stage1_dir)
  stage1 = model_lib.build_model(
      architecture_lib.Architecture(4, 0), architecture_lib.TrainOptions(bn_momentum=0.9))
  for w in stage1.weights:
    w.assign(np.random.default_rng(0).normal(size=w.shape).astype(
        w.dtype))
  model_dir_lib.save_weights(stage1, str(stage1_dir / model_dir_lib.BEST))
  config = tiny_config(**{
      "stage": 2, "model.init_from": str(tmp_path / "stage1" / "fold{fold}"),
      "model.backbone": "mobilenet_v2", "model.alpha": 1.0})
  run = trainer.FoldRun(config, data_dir, str(tmp_path / "s2"),
                        tf.distribute.get_strategy(), 0)
  copied = run.init_from()
  assert "backbone" in copied and "mel_conv3" in copied
  assert "fc1536" not in copied  # its input grew by the PCA width
  for name in ("mel_bn", "mel_conv10", "backbone", "probs"):
    for a, b in zip(run.model.get_layer(name).get_weights(),
                    stage1.get_layer(name).get_weights()):
      np.testing.assert_array_equal(a, b)


def test_mixed_float16_through_every_phase_on_two_replicas(data_dir,
                                                           tmp_path):
  """The GPU default (mixed_float16 + MirroredStrategy), with the full
  augmentation, through the cyclic and both fine-tune phases: finite losses,
  and the loss scale survives each phase's fresh optimizer."""
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    # small_cnn: mixed_float16 on a CPU is emulated, and MobileNetV2 made
    # this test take 55-150 s; what it checks (loss scaling through the
    # phases' fresh optimizers) does not depend on the backbone.
    config = tiny_config(**{"max_steps_per_epoch": 2,
                            "model.backbone": "small_cnn",
                            "model.alpha": 0.25,
                            "schedule.fine_tune_max_epochs": 1,
                            "augment.mixup_alpha": 1.0,
                            "augment.erase_probability": 0.5,
                            "augment.freq_masks": 1,
                            "augment.time_masks": 1})
    run = trainer.FoldRun(config, data_dir, str(tmp_path / "mp"),
                          two_cpu_strategy(), 0)
    summary = run.train()
    assert isinstance(run.optimizer, keras.optimizers.LossScaleOptimizer)
    assert summary["precision"] == "mixed_float16"
    history = open(tmp_path / "mp" / model_dir_lib.HISTORY).read().splitlines()
    phases = [row.split(",")[0] for row in history[1:]]
    assert phases == ["cyclic", "fine_tune_1", "fine_tune_2"], phases
    for row in history[1:]:
      assert all(np.isfinite(float(x)) for x in row.split(",")[2:7]), row
    assert run_state.loss_scale(run.optimizer) >= 1.0
    probs, _ = run.predict_validation()
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=2), 1, atol=1e-3)
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_fresh_phase_keeps_the_loss_scale():
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.LossScaleOptimizer(
        keras.optimizers.Adam(1e-3))
    optimizer.build(model.trainable_variables)
    optimizer.inner_optimizer.iterations.assign(7)
    for v in optimizer.inner_optimizer.variables:
      if "momentum" in v.path:
        v.assign(tf.ones(v.shape, v.dtype))
    scale = run_state.loss_scale(optimizer)
    run_state.reset_optimizer(optimizer)
    assert run_state.loss_scale(optimizer) == scale > 1
    assert int(optimizer.inner_optimizer.iterations.numpy()) == 0
    for v in optimizer.inner_optimizer.variables:
      if "momentum" in v.path or "velocity" in v.path:
        assert not np.any(v.numpy())
    assert float(optimizer.inner_optimizer.learning_rate.numpy()) > 0
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_evaluation_on_replicas_counts_every_clip_once(data_dir, tmp_path):
  """Validation split over 2 replicas equals validation on one device:
  32 clips in per-replica batches of 7 leave a short batch per length, and
  3 lengths x 5 batches an odd count (one padding batch)."""
  keras.mixed_precision.set_global_policy("float32")
  results = []
  for strategy in (tf.distribute.get_strategy(), two_cpu_strategy()):
    keras.utils.set_random_seed(3)   # the same initial weights
    run = trainer.FoldRun(tiny_config(eval_batch_size=14,
                                      **{"input.eval_lengths": (32, 48, 40)}),
                          data_dir, str(tmp_path / "e"), strategy, 0)
    assert run.data.num_validation_clips == 32
    run.prepare(0)
    results.append(run.predict_validation())
  (p1, l1), (p2, l2) = results
  assert p1.shape == p2.shape == (3, 32, 4)
  np.testing.assert_array_equal(l1, l2)
  np.testing.assert_allclose(p1, p2, atol=1e-5)


CONFIG_FILE = """
from tagger import settings
def get_config():
  config = settings.default_config()
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
  config.max_steps_per_epoch = 2
  return config
"""


def train_command(config_path, data_dir, model_dir, *extra):
  return [sys.executable, "-m", "tools.train", f"--config={config_path}",
          f"--data_dir={data_dir}", f"--model_dir={model_dir}", *extra]


def _env():
  return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
          "PYTHONPATH": REPO, "CUDA_VISIBLE_DEVICES": ""}


def _comparable(model_dir):
  rows = open(os.path.join(model_dir,
                           model_dir_lib.HISTORY)).read().splitlines()
  keep = lambda r: r.split(",")[:7]  # without examples/s and seconds
  return [keep(r) for r in rows]


# The GPU default: mixed_float16 on a MirroredStrategy (here 2 CPU replicas).
GPU_LIKE = ("--precision=mixed_float16", "--strategy=mirrored",
            "--cpu_replicas=2")


def _assert_same_best_weights(a: str, b: str) -> None:
  """The best weights of two small_cnn (alpha 0.25) model dirs of 4
  classes are equal bit for bit."""
  w1 = model_lib.build_model(
      architecture_lib.Architecture(4, 0, backbone="small_cnn", alpha=0.25))
  w2 = model_lib.build_model(
      architecture_lib.Architecture(4, 0, backbone="small_cnn", alpha=0.25))
  model_dir_lib.load_weights(w1, os.path.join(a, model_dir_lib.BEST))
  model_dir_lib.load_weights(w2, os.path.join(b, model_dir_lib.BEST))
  for x, y in zip(w1.get_weights(), w2.get_weights()):
    np.testing.assert_array_equal(x, y)


@pytest.fixture(scope="module")
def straight_run(data_dir, tmp_path_factory):
  """(config file, model dir) of an uninterrupted tools.train run under
  GPU_LIKE: the reference the interrupted runs must end at."""
  folder = tmp_path_factory.mktemp("straight")
  config_path = folder / "tiny.py"
  config_path.write_text(CONFIG_FILE.replace(
      "  return config",
      "  config.model.backbone = 'small_cnn'\n"
      "  config.model.alpha = 0.25\n"
      "  config.input.batch_size = 8\n"   # float16 convolutions are slow
      "  config.max_steps_per_epoch = 4\n  return config"))
  straight = str(folder / "straight")
  result = subprocess.run(
      train_command(config_path, data_dir, straight, *GPU_LIKE), cwd=REPO,
      env=_env(), capture_output=True, text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  return config_path, straight


def test_kill_and_resume_ends_where_an_uninterrupted_run_does(data_dir,
                                                              tmp_path,
                                                              straight_run):
  """mixed_float16 on 2 replicas, killed in the first fine-tune phase.

  A small backbone (with BatchNorm): what is checked is the run state
  (optimizer, loss scale, phase, RNG), and each of the three processes
  traces its steps; MobileNetV2 under mixed_float16 on 2 replicas takes
  40 s a trace on 2 cores (its phases are tested in-process above)."""
  config_path, straight = straight_run
  summary = json.load(open(os.path.join(straight, model_dir_lib.SUMMARY)))
  assert summary["precision"] == "mixed_float16"
  assert summary["strategy"] == "MirroredStrategy with 2 replica(s)"
  killed = str(tmp_path / "killed")
  proc = subprocess.Popen(train_command(config_path, data_dir, killed,
                                        *GPU_LIKE),
                          cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  state_path = os.path.join(killed, model_dir_lib.STATE)
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
  assert state["phase"] == 1  # fine_tune_1: a fresh optimizer was made
  result = subprocess.run(train_command(config_path, data_dir, killed,
                                        *GPU_LIKE),
                          cwd=REPO, env=_env(), capture_output=True,
                          text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "resuming" in result.stderr
  assert _comparable(killed) == _comparable(straight)
  _assert_same_best_weights(straight, killed)
  # A finished run is not trained again.
  again = subprocess.run(train_command(config_path, data_dir, killed,
                                       *GPU_LIKE),
                         cwd=REPO, env=_env(), capture_output=True, text=True)
  assert again.returncode == 0 and "nothing to do" in again.stderr


def test_sigterm_inside_an_epoch_checkpoints_and_resumes_exactly(
    data_dir, tmp_path, straight_run):
  """SIGTERM at a random step inside an epoch: the step in flight ends, a
  checkpoint of that step is written, the tool exits 75 with one line;
  the same command resumes at the next step and the run ends bit for bit
  where an uninterrupted one does (history and weights). mixed_float16
  on 2 CPU replicas, as the kill -9 test."""
  import random  # pylint: disable=g-import-not-at-top
  config_path, straight = straight_run
  stopped = str(tmp_path / "stopped")
  proc = subprocess.Popen(train_command(config_path, data_dir, stopped,
                                        *GPU_LIKE),
                          cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  state_path = os.path.join(stopped, model_dir_lib.STATE)
  deadline = time.time() + 300
  while time.time() < deadline:   # after the first epoch, at a random time
    try:
      if json.load(open(state_path)).get("epoch", 0) >= 1:
        break
    except (OSError, ValueError):
      pass
    time.sleep(0.05)
  time.sleep(random.Random(316).uniform(0.0, 0.6))   # seeded: reproducible
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 75, err[-3000:]
  last = err.strip().splitlines()[-1]
  assert last.startswith("train: stopped on SIGTERM in ") and \
      "run the same command again to resume" in last, last
  state = json.load(open(state_path))
  assert 0 < state["epoch_step"] < 4 and not state["done"]
  assert len(state["epoch_losses"]) == state["epoch_step"]
  assert f"-step-{state['epoch_step']:06d}.npz" in state["checkpoint"]
  result = subprocess.run(train_command(config_path, data_dir, stopped,
                                        *GPU_LIKE),
                          cwd=REPO, env=_env(), capture_output=True,
                          text=True)
  assert result.returncode == 0, result.stderr[-3000:]
  assert _comparable(stopped) == _comparable(straight)
  _assert_same_best_weights(straight, stopped)


def test_checkpoints_every_n_steps_change_nothing_else(data_dir, tmp_path):
  """checkpoint_every_steps writes step checkpoints inside epochs; the run
  is the same as without them."""
  keras.mixed_precision.set_global_policy("float32")
  rows = []
  for every in (0, 1):
    config = tiny_config(checkpoint_every_steps=every, deterministic=True,
                         max_steps_per_epoch=3,
                         **{"schedule.fine_tune_max_epochs": 0,
                            "model.backbone": "small_cnn",
                            "model.alpha": 0.25})
    keras.utils.set_random_seed(0)
    model_dir = str(tmp_path / f"every{every}")
    trainer.FoldRun(config, data_dir, model_dir,
                    tf.distribute.get_strategy(), 0).train()
    rows.append(_comparable(model_dir))
  assert rows[0] == rows[1]


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


@pytest.mark.parametrize("service", [False, True],
                         ids=["local_input", "data_service"])
def test_two_workers_with_multi_worker_mirrored_strategy(data_dir, tmp_path,
                                                         service):
  """Two trainer processes; with a tf.data service (a dispatcher and two
  workers on loopback) each trainer's input pipeline reads its half of the
  records through it."""
  extra = []
  if service:
    from tagger.input import data_service  # pylint: disable=g-import-not-at-top
    served = data_service.loopback_cluster(2)
    extra = [f"--config.input.data_service={served.address}"]
  config_path = tmp_path / "tiny.py"
  config_path.write_text(CONFIG_FILE.replace(
      "config.schedule.fine_tune_max_epochs = 2",
      "config.schedule.fine_tune_max_epochs = 0").replace(
          "config.schedule.cyclic_epochs = 2",
          "config.schedule.cyclic_epochs = 1\n"
          "  config.log_pairing = True").replace(
              "config.max_steps_per_epoch = 2",
              "config.max_steps_per_epoch = 3\n"
              "  config.model.backbone = 'small_cnn'\n"
              "  config.model.alpha = 0.25"))
  cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
  model_dir = str(tmp_path / "mw")
  procs = []
  for index in range(2):
    env = {**_env(), "TF_CONFIG": json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}})}
    procs.append(subprocess.Popen(
        train_command(config_path, data_dir, model_dir,
                      "--strategy=multi_worker", *extra),
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True))
  try:
    outputs = [p.communicate(timeout=600) for p in procs]
  finally:
    if service:
      served.stop()
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  summary = json.load(open(os.path.join(model_dir, model_dir_lib.SUMMARY)))
  assert summary["strategy"] == ("MultiWorkerMirroredStrategy with 2 "
                                 "replica(s)")
  assert summary["input"] == (f"tf.data service at {served.address}"
                              if service else "local")
  assert summary["steps"] == 3
  # Each worker read its own half: primaries of the two tables are disjoint.
  tables = [os.path.join(model_dir, model_dir_lib.PAIRING, name) for name in
            ("epoch-00000.csv", "epoch-00000-worker1.csv")]
  primaries = [[row.split(",")[0] for row in open(t).read().split()[1:]]
               for t in tables]
  assert all(primaries) and not set(primaries[0]) & set(primaries[1])
  # ...and both ended with the same weights.
  prints = [re.findall(r"final weights fingerprint (\w+)", err)
            for _, err in outputs]
  assert len(prints[0]) == 1 and prints[0] == prints[1], prints


def test_strategy_and_precision_choices():
  with pytest.raises(distribute.DistributeError, match="TF_CONFIG"):
    if "TF_CONFIG" not in os.environ:
      distribute.make_strategy("multi_worker")
    else:
      raise distribute.DistributeError("TF_CONFIG")


def test_an_overflow_on_one_replica_skips_the_step_on_all():
  """mixed_float16's loss scaling on 2 replicas: one replica's gradient
  overflows, the other's does not. Keras alone applies the step (its
  verdict is the first replica's) and the weights turn non-finite;
  distribute.finite_everywhere makes every replica skip it and halve the
  loss scale, as one device would."""
  strategy = two_cpu_strategy()

  def run(agree: bool):
    with strategy.scope():
      weights = tf.Variable([1.0, 2.0])
      optimizer = keras.optimizers.LossScaleOptimizer(
          keras.optimizers.Adam(0.1))
      optimizer.build([weights])

    @tf.function
    def step(grad):
      def replica(g):
        grads = [g]
        if agree:
          grads = distribute.finite_everywhere(grads)
        optimizer.apply(grads, [weights])
      strategy.run(replica, args=(grad,))

    grads = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant([1.0, 1.0]) if ctx.replica_id_in_sync_group
        == 0 else tf.constant([np.inf, 1.0]))
    scale = float(optimizer.dynamic_scale.numpy())
    step(grads)
    return weights.numpy(), float(optimizer.dynamic_scale.numpy()) / scale

  values, _ = run(agree=False)
  assert not np.isfinite(values).all()  # what Keras alone does
  values, scale_ratio = run(agree=True)
  np.testing.assert_array_equal(values, [1.0, 2.0])  # step skipped
  assert scale_ratio == 0.5


def test_a_run_from_before_an_upgrade_resumes_but_not_another_config():
  """config.json without settings added later (at their defaults) is the
  same config; any changed value is not."""
  config = tiny_config()
  saved = json.loads(fold_parts.config_json(config))
  del saved["checkpoint_every_steps"], saved["model"]["freeze_backbone"]
  assert fold_parts.same_config(saved, config)
  config.checkpoint_every_steps = 100
  assert not fold_parts.same_config(saved, config)
  config.checkpoint_every_steps = 0
  config.schedule.max_lr = 0.5
  assert not fold_parts.same_config(saved, config)


def test_a_model_dir_in_use_is_refused_in_one_line(data_dir, tmp_path):
  """Two runs on one --model_dir: the second stops before training, naming
  the holder (here this process holds the lock)."""
  from tagger import fileio  # pylint: disable=g-import-not-at-top
  model_dir = tmp_path / "busy"
  model_dir.mkdir()
  fileio.lock_dir(str(model_dir), "tools/train", "--model_dir")
  try:
    config_path = tmp_path / "tiny.py"
    config_path.write_text(CONFIG_FILE)
    result = subprocess.run(train_command(config_path, data_dir,
                                          str(model_dir)),
                            cwd=REPO, env=_env(), capture_output=True,
                            text=True, timeout=300)
  finally:
    fileio.release_dir(str(model_dir))
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last == (f"train: {model_dir} is in use by a running tools/train "
                  f"(pid {os.getpid()}); wait for it to end, or use another "
                  "--model_dir"), last
  assert not (model_dir / model_dir_lib.STATE).exists()
