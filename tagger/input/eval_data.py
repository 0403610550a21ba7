"""Validation batches: every clip of the folds once per fixed length, in
file order, split over replicas so that no replica gets an empty slice."""

from typing import Dict, Optional, Sequence

import tensorflow as tf

from tagger import settings
from tagger.input import batches
from tagger.shards.data_info import DataInfo
from tagger.shards.data_info import InputError


def eval_dataset(info: DataInfo, folds, config: settings.InputConfig,
                 lengths: Sequence[int], *, batch_size: Optional[int] = None,
                 seed: int = 0,
                 input_context: Optional[tf.distribute.InputContext] = None
                 ) -> tf.data.Dataset:
  """Host batches of the folds' clips, in file order, once per length.

  Each length gives ceil(N / batch) batches (the last may be short); a clip
  longer than the length gets a seeded random window; ROW gives each row's
  position (length index * N + clip index). With placement 'host' the
  batches come out as model batches (prepare_eval_batch).

  With an input_context (evaluation on replicas) the batches are per
  replica (batch_size / replicas rows), every batch is full and every
  replica of every step gets one: short batches are filled up with copies
  of their first row and whole padding batches are added, all with ROW -1;
  pipeline k takes batches k, k + pipelines, ... So no replica ever gets an
  empty slice, and the caller keeps the rows with ROW >= 0.
  """
  files = info.files(folds)
  if not files:
    raise InputError(f"no shards for folds {list(folds)} in {info.data_dir}")
  batch_size = batch_size or config.batch_size
  replicas, pipelines, pipeline_id = 1, 1, 0
  if input_context is not None:
    replicas = input_context.num_replicas_in_sync
    pipelines = input_context.num_input_pipelines
    pipeline_id = input_context.input_pipeline_id
    batch_size = -(-batch_size // replicas)  # rows per replica
  num_clips = info.num_records(folds)
  serialized = tf.data.TFRecordDataset(
      files, info.compression, buffer_size=config.read_buffer_mb << 20)
  ds = batches.eval_host_batches(
      serialized, info.batch_spec, lengths, clips_per_batch=batch_size,
      seed=seed, num_clips=num_clips)
  if input_context is not None:
    ds = ds.map(lambda batch: _fill_batch(batch, batch_size),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    count = len(lengths) * -(-num_clips // batch_size)
    extra = -count % replicas
    if extra:
      padding = ds.take(1).map(
          lambda b: {**b, batches.ROW: -tf.ones_like(b[batches.ROW])})
      ds = ds.concatenate(padding.repeat(extra))
    if pipelines > 1:
      ds = ds.shard(pipelines, pipeline_id)
  if config.placement == "host":
    ds = ds.map(lambda batch: batches.prepare_eval_batch(batch,
                                                         info.batch_spec),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def _fill_batch(batch: Dict[str, tf.Tensor], rows: int):
  """Fills a batch up to `rows` rows with copies of its first row, marked
  ROW -1."""
  row = batches.ROW
  have = tf.shape(batch[row])[0]
  index = tf.concat([tf.range(have), tf.zeros([rows - have], tf.int32)], 0)
  out = {k: tf.gather(v, index) for k, v in batch.items()}
  out[row] = tf.concat([batch[row], -tf.ones([rows - have], tf.int64)], 0)
  return out
