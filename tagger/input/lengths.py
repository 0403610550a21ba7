"""Clip lengths in frames: the training's target lengths (one per global
step, drawn in the graph and rounded to a quantum), every length that draw
can give (the shapes the training step is compiled for), and the fixed
validation and scoring lengths. The one place a length is rounded."""

from typing import Tuple

import numpy as np
import tensorflow as tf

from tagger import settings
from tagger.input import batches
from tagger.shards.data_info import DataInfo
from tagger.shards.data_info import InputError


def target_length(seed: int, epoch, step, lo: int, hi: int,
                  quantum: int) -> tf.Tensor:
  """int32 scalar: one length per global step, uniform in [lo, hi), rounded
  to a multiple of quantum."""
  u = tf.random.stateless_uniform([], batches.key(seed, epoch, step))
  length = lo + tf.floor(u * (hi - lo))
  rounded = tf.round(length / quantum) * quantum
  return tf.cast(tf.maximum(rounded, quantum), tf.int32)


def length_range(info: DataInfo,
                 config: settings.InputConfig) -> Tuple[int, int]:
  """[lo, hi) of the training target lengths (the manifest's by default)."""
  lo, hi = config.length_range or info.manifest.crop_range
  if not 0 < lo < hi:
    raise InputError(f"length range [{lo}, {hi}) is empty")
  return int(lo), int(hi)


def possible_lengths(lo: int, hi: int, quantum: int) -> Tuple[int, ...]:
  """Every target length `target_length` can draw: the compiled shapes."""
  return tuple(sorted({round_length(x, quantum) for x in range(lo, hi)}))


def eval_lengths(info: DataInfo,
                 config: settings.InputConfig) -> Tuple[int, ...]:
  """The fixed validation lengths (the config's, or spread over the crop
  range)."""
  if config.eval_lengths:
    return tuple(int(x) for x in config.eval_lengths)
  lo, hi = info.manifest.crop_range
  return tuple(int(round(x)) for x in
               np.linspace(lo, hi, config.num_eval_lengths))


def round_length(length, quantum: int) -> int:
  """length rounded to the nearest multiple of quantum (half to even, as
  target_length's tf.round), at least quantum."""
  return max(quantum, int(round(length / quantum)) * quantum)
