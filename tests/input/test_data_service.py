"""Training input through a tf.data service: a dispatcher and two workers
on loopback, started and stopped by the tests."""

import dataclasses
import gc
import hashlib
import json
import os
import threading

import numpy as np
import pytest

from tagger.datasets import synthetic
from tagger.input import data_service
from tagger.input import pipeline as ip
from tagger.shards import data_info
from tagger.train import trainer
from test_pipeline import CONFIG, info  # pylint: disable=g-bad-import-order,unused-import


@pytest.fixture(scope="module")
def cluster():
  two = data_service.loopback_cluster(2)
  yield two
  # Readers still alive (a trainer's endless iterator in a reference
  # cycle) hold open requests that a worker's stop waits out (about a
  # minute): free what can be freed, and stop in the background, so that
  # the next tests of this worker process need not wait.
  gc.collect()
  threading.Thread(target=two.stop, daemon=True).start()


def digest(batch) -> str:
  """One batch's content, every tensor, as a hash."""
  h = hashlib.sha256()
  for key in sorted(batch):
    h.update(key.encode())
    h.update(np.ascontiguousarray(batch[key].numpy()).tobytes())
    h.update(str(batch[key].shape).encode())
  return h.hexdigest()


@pytest.mark.parametrize("pairing", ["global", "block"])
def test_service_batches_are_the_local_batches(info, cluster, pairing):
  folds = data_info.select_folds(info, 1, "train")
  config = dataclasses.replace(CONFIG, pairing=pairing)
  steps = ip.steps_per_epoch(info, folds, config)
  local = [digest(b) for b in ip.train_dataset(info, folds, config,
                                               start_epoch=3, num_epochs=2)]
  served = [digest(b) for b in ip.train_dataset(
      info, folds, dataclasses.replace(config, data_service=cluster.address),
      start_epoch=3, num_epochs=2)]
  assert len(served) == len(local) == 2 * steps
  assert len(set(local)) == len(local)
  # The same batches, each once; the order is the workers' delivery order.
  assert sorted(served) == sorted(local)


def test_a_bad_address_or_worker_list_is_refused():
  with pytest.raises(data_service.DataServiceError, match="host:port"):
    data_service.split_address("nohost")
  with pytest.raises(data_service.DataServiceError, match="addresses"):
    data_service.start_dispatcher(data_service.free_port(), [])
  with pytest.raises(data_service.DataServiceError, match="--work_dir"):
    data_service.start_dispatcher(data_service.free_port(), ["localhost:1"],
                                  work_dir="/proc/no-journal-here")
  with pytest.raises(data_service.DataServiceError, match="no tf.data"):
    data_service.check_reachable(f"localhost:{data_service.free_port()}", 2)


def demo_config_one_epoch(address: str):
  """configs/demo.py:stage1 for one epoch (no fine-tune phases)."""
  from tagger.configs import demo  # pylint: disable=g-import-not-at-top
  config = demo.get_config("stage1")
  config.schedule.cyclic_epochs = 1
  config.schedule.fine_tune_max_epochs = 0
  config.input.data_service = address
  config.verify_shards = False
  return config


def test_demo_config_trains_an_epoch_through_two_workers(cluster, tmp_path):
  data_dir = str(tmp_path / "shards")
  synthetic.write_synthetic_shards(data_dir, synthetic.SyntheticSet(
      96, num_classes=4, num_folds=3, pca_dim=6, median_frames=160, sigma=0.2,
      seed=1, learnable=True))
  from tagger import distribute  # pylint: disable=g-import-not-at-top
  config = demo_config_one_epoch(cluster.address)
  config.schedule.cyclic_epochs = 2   # epoch 0 is counted whole after 1
  config.model.backbone = "small_cnn"  # the demo's input, a small network
  config.model.alpha = 0.25
  summary = trainer.train(config, data_dir, str(tmp_path / "run"),
                          distribute.make_strategy("one_device"))
  history = open(tmp_path / "run" / "history.csv").read().splitlines()
  assert len(history) == 3, history  # header + two epochs
  row = dict(zip(history[0].split(","), history[1].split(",")))
  assert np.isfinite(float(row["train_loss"]))
  assert np.isfinite(float(row["val_loss"]))
  assert summary["steps"] == 2 * 64 // 32  # folds 1, 2 train: 64 clips
  assert summary["input"] == f"tf.data service at {cluster.address}"
  saved = json.load(open(tmp_path / "run" / "config.json"))
  assert saved["input"]["data_service"] == cluster.address


def test_tool_refuses_a_dispatcher_without_its_workers():
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  done = subprocess.run(
      [sys.executable, "-m", "tools.data_service", "--role=dispatcher",
       f"--port={data_service.free_port()}"],
      cwd=repo, capture_output=True, text=True, timeout=120)
  assert done.returncode == 1
  assert "--worker_addresses" in done.stderr.splitlines()[-1]


def test_a_stopped_worker_stops_the_run_in_one_line(tmp_path):
  """One of two workers stops: the other goes on into later epochs and
  the stopped one's share never comes. The trainer counts each epoch's
  batches and stops with one line instead of training on half the data."""
  data_dir = str(tmp_path / "shards")
  synthetic.write_synthetic_shards(data_dir, synthetic.SyntheticSet(
      96, num_classes=4, num_folds=3, pca_dim=6, median_frames=160, sigma=0.2,
      seed=1, learnable=True))
  cluster = data_service.loopback_cluster(2)
  try:
    cluster.workers[1]._stop()  # pylint: disable=protected-access
    config = demo_config_one_epoch(cluster.address)
    config.schedule.cyclic_epochs = 3
    config.input.lost_batches_after = 4  # epoch 0 is lost after epoch 2
    config.model.backbone = "small_cnn"  # the batch count is checked
    config.model.alpha = 0.25
    from tagger import distribute  # pylint: disable=g-import-not-at-top
    with pytest.raises(data_service.LostBatchesError,
                       match=r"delivered 1 of epoch 0's 2 batches while 5 "
                       r"batches of later epochs came .* a "
                       "worker stopped") as caught:
      trainer.train(config, data_dir, str(tmp_path / "run"),
                    distribute.make_strategy("one_device"))
    # The traceback holds the trainer's service iterator: freed after the
    # cluster stopped, it waits ~40 s for the dispatcher in a later test.
    del caught
  finally:
    gc.collect()
    cluster.stop()


def test_a_late_epoch_is_not_a_lost_one():
  """A fast worker runs epochs ahead of a slow one: the slow one's batch of
  epoch 0 comes late, and that is no loss; one missing for good is."""
  account = data_service.BatchAccount(per_epoch=2, first_epoch=0,
                                      address="h:1", lost_after=8)
  for epoch in range(7):     # the fast worker: its half of epochs 0..6
    account.add([epoch])
    account.check()
  account.add([0])           # the slow one, late
  account.check()
  for epoch in range(7, 10):
    account.add([epoch])
  with pytest.raises(data_service.LostBatchesError,
                     match="delivered 1 of epoch 1's 2 batches while 8 "):
    account.check()


def test_a_restarted_dispatcher_resumes_its_job(info, tmp_path):
  """A fault-tolerant dispatcher (work_dir) stopped mid-epoch and started
  again on its port with its journal: the workers and the reader wait for
  it and go on, and the epochs still hold every batch exactly once."""
  folds = data_info.select_folds(info, 1, "train")
  config = CONFIG
  local = [digest(b) for b in ip.train_dataset(info, folds, config,
                                               start_epoch=0, num_epochs=2)]
  work_dir = str(tmp_path / "dispatcher")
  cluster = data_service.loopback_cluster(2, work_dir=work_dir)
  port = int(cluster.address.rpartition(":")[2])
  try:
    served = ip.train_dataset(
        info, folds, dataclasses.replace(config, data_service=cluster.address),
        start_epoch=0, num_epochs=2)
    batches = iter(served)
    got = [digest(next(batches)) for _ in range(3)]
    cluster.dispatcher._stop()  # pylint: disable=protected-access
    cluster.dispatcher = data_service.start_dispatcher(
        port, cluster.worker_addresses, work_dir=work_dir)
    got += [digest(b) for b in batches]
    del batches, served   # the reader ends while its dispatcher is up
  finally:
    gc.collect()
    cluster.stop()
  assert os.listdir(work_dir)   # the journal
  assert sorted(got) == sorted(local)


def test_a_dispatcher_restarted_without_journal_is_one_line():
  """The service's own message (TF 2.16) for a job a restarted dispatcher
  never heard of becomes one line saying what to do."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  lost = tf.errors.NotFoundError(
      None, None, "Failed to get tasks: Unknown iteration client id 3000. "
      "The dispatcher is not configured to be fault tolerant, so this could "
      "be caused by a dispatcher restart.")
  error = data_service.explain_lost_job("dispatcher-host:5050", lost)
  assert isinstance(error, data_service.DataServiceError)
  assert "dispatcher-host:5050" in str(error) and "--work_dir" in str(error)
  other = tf.errors.NotFoundError(None, None, "no such file")
  assert data_service.explain_lost_job("h:1", other) is other
