"""Shards -> paired, bucketed batches -> replicas: the training input.

Host side (tf.data, `train_dataset`). Per epoch, the pairing table decides
which clip is mixed with which: position i of the primary order is mixed
with position i of the partner order, so every clip is once a primary and
once a partner per epoch (but the n % batch left over). Where the partners
come from depends on `InputConfig.pairing`:
  global       the reference's table: the train records of this input
               pipeline are held in host memory (read once per dataset,
               in the graph, and cached; so a tf.data service worker
               runs the same graph), and
               every epoch draws two independent random orders of all of
               them (the second over the same n - n % batch records as the
               first); a partner can be any clip of the set.
  block        reads the shards once per epoch in a seeded random order
               (shards shuffled, interleaved, a shuffle buffer), cuts the
               stream into blocks of pairing_block records and pairs each
               block under two independent permutations: a partner comes
               from the same block. Memory: a block, not the set.
  independent  zips two independent shuffled readers of the shards (reads
               twice): the partner order is independent of the primary's,
               but each order is only as random as shard shuffling plus a
               shuffle_buffer allows.
  auto         (default) global when the records fit pairing_memory_mb,
               else block.
Both streams are batched; each global batch gets one target length L drawn
uniformly from the crop range and rounded to a quantum; each record is cut
to a window of at most L frames straight from its raw bytes
(`records.parse_windows`: a clip longer than L gets a random window of L, a
shorter one is shipped whole and zero-filled). So the host only reads,
pairs, batches and cuts, and ships at most L frames per clip.

Device side (`batches.augment_batch`, inside each replica's compiled step
on its slice of the batch): crop/pad (random offset, 'symmetric' padding),
shift and flip as one gather, normalisation, the config's image ops (random
erasing, SpecAugment), mixup. `InputConfig.placement = 'host'` runs the same
function in tf.data instead.

Evaluation (`eval_dataset`): every clip once per fixed length, built by
`batches.eval_host_batches` (the scorer's builder too), spread evenly over
replicas.

With `InputConfig.data_service` the host side runs on tf.data service
workers, each making its share of the batches (data_service.py says what
stays and what changes).

Everything random is stateless and keyed by (seed, epoch, step), so an epoch
is reproducible on its own: a resumed run rebuilds the dataset from its
epoch and gets the batches an uninterrupted run would have had.
"""

import contextlib
import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.python.eager import context  # pylint: disable=g-direct-tensorflow-import

from tagger import settings
from tagger.input import batches
from tagger.input import data_service
from tagger.input import label_fixes as label_fixes_lib
from tagger.input import lengths as lengths_lib
from tagger.shards import records
from tagger.shards.data_info import DataInfo
from tagger.shards.data_info import InputError

PLACEMENTS = ("device", "host")
PAIRINGS = ("auto", "global", "block", "independent")

InputConfig = settings.InputConfig
AugmentConfig = settings.AugmentConfig


# ---------------------------------------------------------------------------
# Host: shards -> paired record batches.

def _shuffled_records(files: Sequence[str], info: DataInfo,
                      config: InputConfig, seed: tf.Tensor,
                      shard: Optional[Tuple[int, int]]) -> tf.data.Dataset:
  """One epoch of serialized records in a seeded random order."""
  names = tf.data.Dataset.from_tensor_slices(list(files)).shuffle(
      len(files), seed=seed)
  parallel = max(1, min(config.file_parallelism, len(files)))
  stream = names.interleave(
      lambda f: tf.data.TFRecordDataset(
          f, info.compression, buffer_size=config.read_buffer_mb << 20),
      cycle_length=parallel, block_length=1, num_parallel_calls=parallel,
      deterministic=True)
  if shard is not None:
    stream = stream.shard(*shard)
  if config.shuffle_buffer <= 1:
    return stream
  return stream.shuffle(config.shuffle_buffer, seed=seed + 1)


@dataclasses.dataclass(frozen=True)
class _Layout:
  """How one input pipeline's batches map onto global steps."""
  per_replica_batch: int
  local_replicas: int       # replicas fed by this pipeline, in turn
  num_pipelines: int
  pipeline_id: int
  steps: int                # batches per epoch from this pipeline


def _layout(info: DataInfo, folds, config: InputConfig,
            input_context: Optional[tf.distribute.InputContext],
            max_steps: int = 0) -> _Layout:
  """max_steps > 0 cuts every epoch to that many global steps."""
  if input_context is None:
    replicas, pipelines, pipeline_id = 1, 1, 0
  else:
    replicas = input_context.num_replicas_in_sync
    pipelines = input_context.num_input_pipelines
    pipeline_id = input_context.input_pipeline_id
  if config.batch_size % replicas:
    raise InputError(f"batch size {config.batch_size} does not split over "
                     f"{replicas} replicas")
  per_replica = config.batch_size // replicas
  local = max(1, replicas // pipelines)
  records_here = info.num_records(folds) // pipelines
  steps = (records_here // per_replica) // local * local
  if steps == 0:
    raise InputError(
        f"{info.num_records(folds)} records in folds {list(folds)} of "
        f"{info.data_dir} are fewer than one batch "
        f"(config.input.batch_size={config.batch_size}); lower "
        "config.input.batch_size")
  if max_steps > 0:
    steps = min(steps, max_steps * local)
  return _Layout(per_replica, local, pipelines, pipeline_id, steps)


def steps_per_epoch(info: DataInfo, folds, config: InputConfig,
                    num_replicas: int = 1, num_pipelines: int = 1) -> int:
  """Global training steps per epoch (full batches only)."""
  context = tf.distribute.InputContext(num_pipelines, 0, num_replicas)
  layout = _layout(info, folds, config, context)
  return layout.steps // layout.local_replicas


def _permutation(n: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
  """int32 [n]: a uniform random permutation of range(n)."""
  return tf.argsort(tf.random.stateless_uniform([n], key))


def paired_orders(n: tf.Tensor, batch: int,
                  key: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """(primary, partner), int32 [n // batch, batch] each: the pairing
  table of n records. Primary order and partner order are two independent
  permutations of the same n - n % batch records (each used once as a
  primary and once as a partner); key [2] seeds both."""
  used = n // batch * batch
  primary = _permutation(n, key)[:used]
  partner = tf.gather(primary, _permutation(used, key + [0, 1]))
  return tf.reshape(primary, [-1, batch]), tf.reshape(partner, [-1, batch])


def _block_pairs(block: tf.Tensor, batch: int,
                 key: tf.Tensor) -> tf.data.Dataset:
  """A block of records [n] -> batches (block, primary [batch], partner
  [batch]) of indices into it.

  The pairs are paired_orders' of the block. Every element refers to the
  one block tensor (no copy); the records are gathered later, in parallel.
  """
  indices = tf.data.Dataset.from_tensor_slices(
      paired_orders(tf.shape(block)[0], batch, key))
  return indices.map(lambda p, q: (block, p, q))


def _pipeline_shard(layout: _Layout) -> Optional[Tuple[int, int]]:
  """(pipelines, this pipeline) when the records are split between input
  pipelines, else None."""
  if layout.num_pipelines > 1:
    return layout.num_pipelines, layout.pipeline_id
  return None


def _every_record(info: DataInfo, folds,
                  shard: Optional[Tuple[int, int]]) -> tf.data.Dataset:
  """A one-element dataset: every record of the files (this pipeline's
  share, in file order) as one string tensor [n].

  Read in the graph (file names are all it captures), so the same graph
  runs in this process or on a tf.data service worker.
  """
  n = info.num_records(folds)
  stream = tf.data.TFRecordDataset(info.files(folds), info.compression,
                                   buffer_size=8 << 20)
  if shard is not None:
    stream = stream.shard(*shard)
    n = len(range(shard[1], n, shard[0]))
  # batch(n), not a larger bound: batch reserves its size up front.
  return stream.batch(max(n, 1))


def pairing_mode(info: DataInfo, folds, config: InputConfig,
                 num_pipelines: int = 1) -> str:
  """The pairing a config gets ('auto' resolved by the records' size)."""
  if config.pairing not in PAIRINGS:
    raise InputError(f"pairing must be one of {PAIRINGS}, not "
                     f"{config.pairing!r}")
  if config.pairing != "auto":
    return config.pairing
  size_mb = sum(s.bytes for s in info.shards(folds)) / 2**20
  fits = size_mb / max(num_pipelines, 1) <= config.pairing_memory_mb
  return "global" if fits and not info.compression else "block"


def _epoch_pairs(info: DataInfo, folds, config: InputConfig, epoch,
                 layout: _Layout, every_record=None) -> tf.data.Dataset:
  """One epoch of (primary, partner) record batches: the pairing table
  (the module docstring says what each pairing mode does).

  every_record: string [n], this pipeline's records ('global' pairing).
  """
  files = info.files(folds)
  shard = _pipeline_shard(layout)
  # base: seed * 1_000_003 + 4 epoch (batches.key's first half), from which
  # the epoch's shuffles and permutations take base, base + 1, base + 2.
  base = batches.key(config.seed, tf.cast(epoch, tf.int64) * 4, 0)[0]
  b = layout.per_replica_batch
  mode = pairing_mode(info, folds, config, layout.num_pipelines)
  if mode == "global":
    pairs = tf.data.Dataset.from_tensor_slices(paired_orders(
        tf.shape(every_record)[0], b, tf.stack([base + 1, 0])))
    pairs = pairs.map(
        lambda p, q: (tf.gather(every_record, p),
                      tf.gather(every_record, q)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  elif mode == "independent":
    primary = _shuffled_records(files, info, config, base, shard)
    partner = _shuffled_records(files, info, config, base + 2, shard)
    # prefetch: each reader shuffles and batches in its own thread.
    pairs = tf.data.Dataset.zip(
        primary.batch(b, drop_remainder=True).prefetch(2),
        partner.batch(b, drop_remainder=True).prefetch(2))
  else:  # block
    block = max(b, config.pairing_block // b * b)
    # prefetch(1): the next block is read while this one is consumed.
    pairs = _shuffled_records(files, info, config, base, shard).batch(
        block, num_parallel_calls=2, deterministic=True
    ).prefetch(1).enumerate().flat_map(
            lambda k, records_: _block_pairs(records_, b,
                                             tf.stack([base + 1, k])))
    pairs = pairs.map(lambda block_, p, q: (tf.gather(block_, p),
                                            tf.gather(block_, q)),
                      num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return pairs.take(layout.steps)


@contextlib.contextmanager
def _no_global_seed():
  """The pipeline is built as if no TF global seed were set, and the
  caller's is set again after: its shuffles take their own tensor seeds
  (the order is a function of config.seed alone), and tf.data mixes a
  global seed into them (a user's tf.random.set_seed(0) made every
  shuffle fail to build: 'symbolic Tensor as a Python bool')."""
  saved = (context.global_seed() if tf.executing_eagerly()
           else tf.compat.v1.get_default_graph().seed)
  if saved is None:
    yield
    return
  tf.random.set_seed(None)
  try:
    yield
  finally:
    tf.random.set_seed(saved)


def train_dataset(info: DataInfo, folds, config: InputConfig,
                  augment_config: AugmentConfig = AugmentConfig(), *,
                  start_epoch: int = 0, num_epochs: Optional[int] = None,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  max_steps_per_epoch: int = 0,
                  label_fixes: Optional[label_fixes_lib.LabelFixes] = None
                  ) -> tf.data.Dataset:
  """Paired, bucketed training batches from start_epoch on.

  max_steps_per_epoch > 0 ends every epoch after that many global steps
  (the epoch's pairing and lengths stay those of the whole epoch).
  label_fixes: clips relabelled or weighted (label_fixes.py); the batches
  carry CLIP_WEIGHT only when there is one.
  Yields host batches (placement 'device': feed them to augment_batch in
  the step) or model batches (placement 'host'). With an input_context the
  batches are per replica, and consecutive batches of one pipeline feed its
  replicas in turn, all at the same target length.
  """
  if config.placement not in PLACEMENTS:
    raise InputError(f"placement must be one of {PLACEMENTS}, not "
                     f"{config.placement!r}")
  layout = _layout(info, folds, config, input_context, max_steps_per_epoch)
  spec = info.batch_spec
  with _no_global_seed():
    ds = _paired_epochs(info, folds, config, layout, start_epoch, num_epochs)
  if config.data_service:  # each worker cuts its own share of the batches
    ds = data_service.split_by_worker(ds)
  ds = ds.map(_host_batch_fn(config, layout, spec,
                             lengths_lib.length_range(info, config),
                             label_fixes),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if config.placement == "host":
    ds = ds.map(lambda batch: {**batches.augment_batch(batch, spec,
                                                       augment_config),
                               batches.EPOCH: batch[batches.EPOCH]},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if config.data_service:
    ds = data_service.read_from_service(ds, config.data_service)
  return ds.prefetch(tf.data.AUTOTUNE)


def _paired_epochs(info: DataInfo, folds, config: InputConfig,
                   layout: _Layout, start_epoch: int,
                   num_epochs: Optional[int]) -> tf.data.Dataset:
  """(epoch, j, primary [b], partner [b]) record batches, epoch after
  epoch (without end when num_epochs is None)."""
  def epoch_batches(epoch, every_record=None):
    pairs = _epoch_pairs(info, folds, config, epoch, layout, every_record)
    return pairs.enumerate().map(lambda j, pq: (epoch, j, pq[0], pq[1]))

  last = None if num_epochs is None else start_epoch + num_epochs
  epochs = (tf.data.Dataset.range(start_epoch, last) if last is not None
            else tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max))
  if pairing_mode(info, folds, config, layout.num_pipelines) == "global":
    # Read once, then kept: the cache hands every epoch the same tensor.
    every_record = _every_record(info, folds, _pipeline_shard(layout))
    epochs = tf.data.Dataset.zip(epochs, every_record.cache().repeat())
  # Two epochs open at once, each yielding exactly its `steps` batches in
  # turn: the next epoch's readers fill their buffers while this one runs
  # (no stall at epoch starts), and the order is still epoch after epoch.
  # The experimental form is the one whose per-epoch buffer can be bounded
  # (2 batches); Dataset.interleave's autotuned buffer held a whole epoch.
  return epochs.apply(tf.data.experimental.parallel_interleave(
      epoch_batches, cycle_length=2, block_length=layout.steps,
      sloppy=False, buffer_output_elements=2, prefetch_input_elements=0))


def _host_batch_fn(config: InputConfig, layout: _Layout, spec,
                   length_range: Tuple[int, int],
                   label_fixes: Optional[label_fixes_lib.LabelFixes] = None):
  """(epoch, j, primary, partner) -> the host batch: both windowed at the
  step's target length (with their label fixes, if any), each row's seed,
  the epoch."""
  lo, hi = length_range
  b = layout.per_replica_batch
  lookup = label_fixes.lookup() if label_fixes else None

  def host_batch(epoch, j, primary, partner):
    step = j // layout.local_replicas
    replica = (layout.pipeline_id * layout.local_replicas +
               j % layout.local_replicas)
    length = lengths_lib.target_length(config.seed, epoch, step, lo, hi,
                                       config.length_quantum)
    key = batches.key(config.seed, epoch, step)
    out = batches.window_batch(primary, spec, length, key + [0, 1 << 40])
    for k, v in batches.window_batch(partner, spec, length,
                                     key + [0, 2 << 40]).items():
      out[batches.PARTNER + k] = v
    if lookup is not None:
      out = label_fixes_lib.apply(out, primary, lookup)
      out = label_fixes_lib.apply(out, partner, lookup, batches.PARTNER)
    out[batches.SEED] = batches.row_seeds(key, replica * b, b)
    out[batches.EPOCH] = tf.cast(epoch, tf.int64)
    return out
  return host_batch


def pairing_table(info: DataInfo, folds, config: InputConfig, epoch: int,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  max_steps_per_epoch: int = 0) -> list:
  """[(primary fname, partner fname)] of one epoch, as train_dataset pairs
  them (reads the epoch's records; for logging and checks)."""
  layout = _layout(info, folds, config, input_context, max_steps_per_epoch)
  spec = {records.FNAME: tf.io.FixedLenFeature([], tf.string)}
  every_record = None
  if pairing_mode(info, folds, config, layout.num_pipelines) == "global":
    every_record = _every_record(info, folds, _pipeline_shard(layout)
                                 ).get_single_element()
  with _no_global_seed():
    names = _epoch_pairs(info, folds, config, epoch, layout, every_record)
  names = names.map(
      lambda p, q: (tf.io.parse_example(p, spec)[records.FNAME],
                    tf.io.parse_example(q, spec)[records.FNAME]))
  table = []
  for p, q in names.as_numpy_iterator():
    table += [(a.decode(), c.decode()) for a, c in zip(p, q)]
  return table
