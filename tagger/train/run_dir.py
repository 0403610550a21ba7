"""A run's model dir while it trains: its state, checkpoints, best weights,
data description and pairing tables, each written atomically by the chief
alone (model_dir names the files)."""

import csv
import io
from typing import Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from tagger import errors
from tagger import fileio
from tagger.model import model_dir as model_dir_lib
from tagger.shards import data_info
from tagger.train import run_state


class RunDir:
  """model_dir as one run writes it; `chief` False: a worker that writes
  nothing (every write is skipped there)."""

  def __init__(self, path: str, chief: bool):
    self.path, self.chief = path, chief

  def file(self, *names: str) -> str:
    return fileio.join(self.path, *names)

  def exists(self, *names: str) -> bool:
    return fileio.exists(self.file(*names))

  # -- a run's start, resume and end -------------------------------------------

  def start(self, config_json: str, data: model_dir_lib.DataDescription,
            shards_dir: str) -> run_state.RunState:
    """A new run: its config, data description and first state."""
    state = run_state.RunState()
    if self.chief:
      fileio.atomic_write_text(self.file(model_dir_lib.CONFIG), config_json)
      self.write_data_description(data, shards_dir)
      self.save_state(state)
    return state

  def resume(self, same_config: Callable[[dict], bool],
             info: data_info.DataInfo, stage2: bool) -> run_state.RunState:
    """A run's saved state, once its config (same_config of the saved
    config.json) and its data are this run's."""
    config_path = self.file(model_dir_lib.CONFIG)
    if fileio.exists(config_path) and not same_config(
        fileio.read_json(config_path)):
      raise errors.UserError(
          f"{self.path} holds a run with another config (see "
          f"{config_path}); use a new --model_dir to start over")
    state = self.read_state()
    self.check_same_data(info, stage2)
    return state

  def finish(self, state: run_state.RunState, summary: dict) -> None:
    """summary.json, then the state marked done."""
    if self.chief:
      fileio.write_json(self.file(model_dir_lib.SUMMARY), summary)
      state.done = True
      self.save_state(state)

  def summary(self) -> dict:
    return fileio.read_json(self.file(model_dir_lib.SUMMARY))

  # -- state and checkpoints ---------------------------------------------------

  def save_state(self, state: run_state.RunState) -> None:
    if not self.chief:
      return
    fileio.atomic_write_text(self.file(model_dir_lib.STATE), state.to_json())
    fileio.atomic_write_text(self.file(model_dir_lib.HISTORY),
                             run_state.history_csv(state.history))

  def read_state(self) -> run_state.RunState:
    return run_state.RunState.from_value(
        fileio.read_json(self.file(model_dir_lib.STATE)))

  def save_checkpoint(self, state: run_state.RunState, model: keras.Model,
                      optimizer,
                      statistics: Optional[Sequence[np.ndarray]]) -> None:
    """epoch-E[-step-S].npz, then the state naming it; the previous
    checkpoint goes once the new one is named."""
    if not self.chief:
      return
    name = f"epoch-{state.epoch:05d}" + (
        f"-step-{state.epoch_step:06d}" if state.epoch_step else "") + ".npz"
    fileio.makedirs(self.file(model_dir_lib.CHECKPOINTS))
    run_state.save_checkpoint(self.file(model_dir_lib.CHECKPOINTS, name),
                              model, optimizer, statistics)
    previous = state.checkpoint
    state.checkpoint = name
    self.save_state(state)
    if previous and previous != name:
      old = self.file(model_dir_lib.CHECKPOINTS, previous)
      if fileio.exists(old):
        tf.io.gfile.remove(old)

  def checkpoint_path(self, state: run_state.RunState) -> str:
    return self.file(model_dir_lib.CHECKPOINTS, state.checkpoint)

  def save_best(self, model: keras.Model) -> None:
    if self.chief:
      model_dir_lib.save_weights(model, self.file(model_dir_lib.BEST))

  def load_best(self, model: keras.Model) -> bool:
    best = self.file(model_dir_lib.BEST)
    if not fileio.exists(best):
      return False
    model_dir_lib.load_weights(model, best)
    return True

  # -- what the run trains on --------------------------------------------------

  def check_same_data(self, info: data_info.DataInfo, stage2: bool) -> None:
    """A model dir resumed on other shards (another --data_dir) is one
    line, not a shape error deep in Keras."""
    if not self.exists(model_dir_lib.DATA):
      return
    data = model_dir_lib.read_data(self.path)
    ours = {"labels": list(info.labels), "num_mels": info.num_mels,
            "pca_dim": info.pca_dim if stage2 else data.pca_dim}
    theirs = data.data_dir or "see its data.json"
    for key, value in ours.items():
      if getattr(data, key) != value:
        raise errors.UserError(
            f"{self.path} holds a run on other data ({key} differ from "
            f"{info.data_dir}'s; the run's data: {theirs}); resume it "
            "with its own --data_dir, or use a new --model_dir")

  def write_data_description(self, data: model_dir_lib.DataDescription,
                             shards_dir: str) -> None:
    """data.json and pca.npz: a model dir is enough to score and export."""
    model_dir_lib.write_data(self.path, data)
    fit = fileio.join(shards_dir, model_dir_lib.PCA_FIT)
    if fileio.exists(fit):
      tf.io.gfile.copy(fit, self.file(model_dir_lib.PCA_FIT), overwrite=True)

  def write_pairing(self, epoch: int, worker: int, table) -> None:
    """A pairing table (primary, partner rows): epoch-00000.csv from the
    first pipeline, epoch-00000-worker{k}.csv from worker k's."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["primary", "partner"])
    writer.writerows(table)
    fileio.makedirs(self.file(model_dir_lib.PAIRING))
    fileio.atomic_write_text(
        self.file(model_dir_lib.PAIRING, f"epoch-{epoch:05d}"
                  f"{f'-worker{worker}' if worker else ''}.csv"),
        buffer.getvalue())
