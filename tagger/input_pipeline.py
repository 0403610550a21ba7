"""Shards -> paired, bucketed batches -> replicas: the training input.

Host side (tf.data, `train_dataset`). Per epoch, the pairing table decides
which clip is mixed with which: position i of the primary order is mixed
with position i of the partner order, so every clip is once a primary and
once a partner per epoch (but the n % batch left over). Where the partners
come from depends on `InputConfig.pairing`:
  global       the reference's table: the train records of this input
               pipeline are held in host memory (read once, at start), and
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

Device side (`augment_batch`, inside each replica's compiled step on its
slice of the batch): crop/pad (random offset, 'symmetric' padding), shift and
flip as one gather, normalisation, random erasing, SpecAugment, mixup.
`InputConfig.placement = 'host'` runs the same function in tf.data instead.

Everything random is stateless and keyed by (seed, epoch, step), so an epoch
is reproducible on its own: a resumed run rebuilds the dataset from its
epoch and gets the batches an uninterrupted run would have had.
"""

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tagger import augment
from tagger import features
from tagger import fileio
from tagger import records
from tagger import settings

PLACEMENTS = ("device", "host")
PAIRINGS = ("auto", "global", "block", "independent")

# Keys of a host batch (besides the record keys that records.py owns).
SEED = "seed"            # int64 [b, 2]: per-row seeds; a slice uses its row 0
ROW = "row"              # int64 [b]: eval batches: position in the eval order
PARTNER = "partner_"     # prefix of the mixup partner's keys
# Keys of a model batch (what augment_batch / prepare_eval_batch return).
TARGET = "target"        # float32 [b, C] one-hot (mixed) labels
WEIGHT = "verified"      # float32 [b] manually_verified (mixed)


# The settings this module reads (tagger/settings.py defines them).
InputConfig = settings.InputConfig
AugmentConfig = settings.AugmentConfig
from_mapping = settings.from_mapping


class InputError(settings.SettingsError):
  """Shards or settings the pipeline cannot use; the message says why."""


# ---------------------------------------------------------------------------
# The shards, as the manifest describes them.


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """A shard folder and its manifest.json."""
  data_dir: str
  manifest: dict

  @property
  def labels(self) -> Sequence[str]:
    return self.manifest["labels"]

  @property
  def num_classes(self) -> int:
    return len(self.manifest["labels"])

  @property
  def pca_dim(self) -> int:
    return int(self.manifest["pca"]["dim"])

  @property
  def num_mels(self) -> int:
    return int(self.manifest["log_mel"]["num_mels"])

  @property
  def normalization(self) -> Tuple[float, float]:
    norm = self.manifest["normalization"]
    return float(norm["min_db"]), float(norm["max_db"])

  @property
  def compression(self) -> str:
    return "GZIP" if self.manifest["compression"] == "gzip" else ""

  @property
  def folds(self) -> Tuple[int, ...]:
    """The folds that can be validated (not -1: train-only clips)."""
    return tuple(sorted({int(s["fold"]) for s in self.manifest["shards"]
                         if int(s["fold"]) >= 0}))

  @property
  def train_only(self) -> Tuple[int, ...]:
    """(-1,) when some shards hold clips that train in every fold (their
    class has one clip), else ()."""
    return (-1,) if any(int(s["fold"]) < 0 for s in
                        self.manifest["shards"]) else ()

  def shards(self, folds: Sequence[int]) -> list:
    return [s for s in self.manifest["shards"] if int(s["fold"]) in folds]

  def files(self, folds: Sequence[int]) -> list:
    return [fileio.join(self.data_dir, s["file"]) for s in self.shards(folds)]

  def num_records(self, folds: Sequence[int]) -> int:
    return sum(int(s["records"]) for s in self.shards(folds))

  def class_counts(self) -> np.ndarray:
    counts = self.manifest.get("per_class_counts") or {}
    return np.array([counts.get(l, 0) for l in self.labels], np.int64)


def load_data_info(data_dir: str, verify: bool = False) -> DataInfo:
  """Reads data_dir/manifest.json and checks the pipeline can use it: every
  shard there at its size, and with verify its sha256 as the manifest's
  (a flipped byte is named here, not by a reader error mid-run)."""
  try:
    manifest = records.read_manifest(data_dir)
  except records.ManifestError as e:
    raise InputError(str(e)) from e
  check_shards(data_dir, manifest, verify)
  return DataInfo(data_dir, manifest)


def check_shards(data_dir: str, manifest: dict, verify: bool = False) -> None:
  """Every shard the manifest lists is there at its size (a stat each) and,
  with verify, has the manifest's sha256 (reads every shard once: about a
  second per GB here)."""
  for shard in manifest.get("shards", []):
    path = fileio.join(data_dir, shard["file"])
    if not fileio.exists(path):
      raise InputError(f"{path}: shard listed in the manifest is missing; "
                       "re-make the shards (tools/make_tfrecords --resume)")
    size = tf.io.gfile.stat(path).length
    if "bytes" in shard and size != int(shard["bytes"]):
      raise InputError(f"{path}: {size} bytes, the manifest says "
                       f"{shard['bytes']}: truncated or replaced; re-make "
                       "the shards")
    if verify and "sha256" in shard and fileio.sha256(path) != shard["sha256"]:
      raise InputError(f"{path}: sha256 differs from the manifest's: the "
                       "file is corrupted (flipped bytes) or was replaced; "
                       "re-make the shards")


def explain_data_loss(data_dir: str, manifest: dict, error: Exception):
  """An InputError naming the damaged shard behind a reader's DataLossError
  (which names no file), or the error itself if every shard checks out."""
  try:
    check_shards(data_dir, manifest, verify=True)
  except InputError as named:
    return named
  return error


def select_folds(info: DataInfo, fold, split: str) -> Tuple[int, ...]:
  """Folds of a split: train = all but `fold`, validation = `fold`.

  fold 'all' (or None) trains on every fold and has no validation split.
  Train-only clips (fold -1) are in every train split.
  """
  if fold in (None, "all"):
    return info.folds + info.train_only if split == "train" else ()
  fold = int(fold)
  if fold not in info.folds:
    raise InputError(f"fold {fold} is not in {info.data_dir} (folds "
                     f"{list(info.folds)})")
  if split == "train":
    return tuple(f for f in info.folds if f != fold) + info.train_only
  if split == "validation":
    return (fold,)
  raise InputError(f"split must be train or validation, not {split!r}")


def length_range(info: DataInfo, config: InputConfig) -> Tuple[int, int]:
  """[lo, hi) of the training target lengths (the manifest's by default)."""
  lo, hi = config.length_range or info.manifest["crop_range"]
  if not 0 < lo < hi:
    raise InputError(f"length range [{lo}, {hi}) is empty")
  return int(lo), int(hi)


def possible_lengths(lo: int, hi: int, quantum: int) -> Tuple[int, ...]:
  """Every target length `target_length` can draw: the compiled shapes."""
  return tuple(sorted({_round_length(x, quantum) for x in range(lo, hi)}))


def eval_lengths(info: DataInfo, config: InputConfig) -> Tuple[int, ...]:
  """The fixed validation lengths (the config's, or spread over the crop
  range)."""
  if config.eval_lengths:
    return tuple(int(x) for x in config.eval_lengths)
  lo, hi = info.manifest["crop_range"]
  return tuple(int(round(x)) for x in
               np.linspace(lo, hi, config.num_eval_lengths))


def _round_length(length, quantum: int):
  return max(quantum, int(round(length / quantum)) * quantum)


# ---------------------------------------------------------------------------
# Random numbers keyed by (seed, epoch, step).


def _key(seed: int, epoch, step) -> tf.Tensor:
  """[2] int64 stateless seed for one (seed, epoch, step)."""
  epoch = tf.cast(epoch, tf.int64)
  return tf.stack([tf.cast(seed, tf.int64) * 1_000_003 + epoch,
                   tf.cast(step, tf.int64)])


def target_length(seed: int, epoch, step, lo: int, hi: int,
                  quantum: int) -> tf.Tensor:
  """int32 scalar: one length per global step, uniform in [lo, hi), rounded
  to a multiple of quantum."""
  u = tf.random.stateless_uniform([], _key(seed, epoch, step))
  length = lo + tf.floor(u * (hi - lo))
  rounded = tf.round(length / quantum) * quantum
  return tf.cast(tf.maximum(rounded, quantum), tf.int32)


# ---------------------------------------------------------------------------
# Host: records -> windows.


def window_batch(serialized: tf.Tensor, info: DataInfo, length: tf.Tensor,
                 key: tf.Tensor) -> Dict[str, tf.Tensor]:
  """string [b] records -> host batch with log_mel float16 [b, L, M]."""
  fraction = tf.random.stateless_uniform(tf.shape(serialized), key)
  parsed = records.parse_windows(
      serialized, info.pca_dim, info.num_mels, fraction, length,
      keys=(records.PCA, records.LABEL, records.MANUALLY_VERIFIED))
  return {
      records.LOG_MEL: parsed[records.LOG_MEL],
      records.WINDOW_FRAMES: parsed[records.WINDOW_FRAMES],
      records.PCA: parsed[records.PCA],
      records.LABEL: tf.cast(parsed[records.LABEL], tf.int32),
      records.MANUALLY_VERIFIED: tf.cast(parsed[records.MANUALLY_VERIFIED],
                                         tf.int32),
  }


def row_seeds(key: tf.Tensor, first_row, rows) -> tf.Tensor:
  """int64 [rows, 2]: distinct seeds for rows first_row.. of a global batch."""
  row = tf.cast(first_row, tf.int64) + tf.range(rows, dtype=tf.int64)
  return tf.stack([tf.fill([rows], key[0] * 7919 + key[1]), row], axis=1)


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
        f"{info.data_dir} are fewer than one batch of {config.batch_size}")
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


def _block_pairs(block: tf.Tensor, batch: int,
                 key: tf.Tensor) -> tf.data.Dataset:
  """A block of records [n] -> batches (block, primary [batch], partner
  [batch]) of indices into it.

  Primary order and partner order are two independent permutations of the
  same n - n % batch records of the block. Every element refers to the one
  block tensor (no copy); the records are gathered later, in parallel.
  """
  n = tf.shape(block)[0]
  used = n // batch * batch
  primary = _permutation(n, key)[:used]
  partner = tf.gather(primary, _permutation(used, key + [0, 1]))
  shape = tf.stack([used // batch, batch])
  indices = tf.data.Dataset.from_tensor_slices(
      (tf.reshape(primary, shape), tf.reshape(partner, shape)))
  return indices.map(lambda p, q: (block, p, q))


_RECORDS_IN_MEMORY = {}  # (files, shard) -> lookup table of the records


def records_in_memory(files: Sequence[str], info: DataInfo,
                      shard: Optional[Tuple[int, int]]):
  """(table, n): every record of the files (this pipeline's share) in a
  host-side lookup table index -> serialized record, read once and kept for
  the process (a table, not a constant: tf.data functions capture it by
  handle, never by value)."""
  key = (tuple(files), shard)
  if key not in _RECORDS_IN_MEMORY:
    # Called while tf.data traces the epoch function: read eagerly.
    with tf.init_scope(), tf.device("/cpu:0"):
      stream = tf.data.TFRecordDataset(list(files), info.compression,
                                       buffer_size=8 << 20)
      if shard is not None:
        stream = stream.shard(*shard)
      values = tf.concat(list(stream.batch(4096)), axis=0)
      n = int(values.shape[0])
      table = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(
              tf.range(n, dtype=tf.int64), values), default_value="")
    del values
    _RECORDS_IN_MEMORY[key] = (table, n)
  return _RECORDS_IN_MEMORY[key]


def pairing_mode(info: DataInfo, folds, config: InputConfig,
                 num_pipelines: int = 1) -> str:
  """The pairing a config gets ('auto' resolved by the records' size)."""
  if config.pairing not in PAIRINGS:
    raise InputError(f"pairing must be one of {PAIRINGS}, not "
                     f"{config.pairing!r}")
  if config.pairing != "auto":
    return config.pairing
  size_mb = sum(int(s.get("bytes", 0)) for s in info.shards(folds)) / 2**20
  fits = size_mb / max(num_pipelines, 1) <= config.pairing_memory_mb
  return "global" if fits and not info.compression else "block"


def _epoch_pairs(info: DataInfo, folds, config: InputConfig, epoch,
                 layout: _Layout) -> tf.data.Dataset:
  """One epoch of (primary, partner) record batches: the pairing table
  (the module docstring says what each pairing mode does)."""
  files = info.files(folds)
  shard = ((layout.num_pipelines, layout.pipeline_id)
           if layout.num_pipelines > 1 else None)
  base = tf.cast(config.seed, tf.int64) * 1_000_003 + tf.cast(
      epoch, tf.int64) * 4
  b = layout.per_replica_batch
  mode = pairing_mode(info, folds, config, layout.num_pipelines)
  if mode == "global":
    table, n = records_in_memory(files, info, shard)
    used = n // b * b
    key = tf.stack([base + 1, 0])
    primary = _permutation(n, key)[:used]
    # An independent order of the same records: each once a partner.
    partner = tf.gather(primary, _permutation(used, key + [0, 1]))
    pairs = tf.data.Dataset.from_tensor_slices(
        (tf.reshape(primary, [-1, b]), tf.reshape(partner, [-1, b])))
    pairs = pairs.map(
        lambda p, q: (table.lookup(tf.cast(p, tf.int64)),
                      table.lookup(tf.cast(q, tf.int64))),
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


def train_dataset(info: DataInfo, folds, config: InputConfig,
                  augment_config: AugmentConfig = AugmentConfig(), *,
                  start_epoch: int = 0, num_epochs: Optional[int] = None,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  max_steps_per_epoch: int = 0) -> tf.data.Dataset:
  """Paired, bucketed training batches from start_epoch on.

  max_steps_per_epoch > 0 ends every epoch after that many global steps
  (the epoch's pairing and lengths stay those of the whole epoch).
  Yields host batches (placement 'device': feed them to augment_batch in
  the step) or model batches (placement 'host'). With an input_context the
  batches are per replica, and consecutive batches of one pipeline feed its
  replicas in turn, all at the same target length.
  """
  if config.placement not in PLACEMENTS:
    raise InputError(f"placement must be one of {PLACEMENTS}, not "
                     f"{config.placement!r}")
  layout = _layout(info, folds, config, input_context, max_steps_per_epoch)
  lo, hi = length_range(info, config)
  b = layout.per_replica_batch

  def epoch_batches(epoch):
    pairs = _epoch_pairs(info, folds, config, epoch, layout)
    return pairs.enumerate().map(lambda j, pq: (epoch, j, pq[0], pq[1]))

  def host_batch(epoch, j, primary, partner):
    step = j // layout.local_replicas
    replica = (layout.pipeline_id * layout.local_replicas +
               j % layout.local_replicas)
    length = target_length(config.seed, epoch, step, lo, hi,
                           config.length_quantum)
    key = _key(config.seed, epoch, step)
    out = window_batch(primary, info, length, key + [0, 1 << 40])
    for k, v in window_batch(partner, info, length,
                              key + [0, 2 << 40]).items():
      out[PARTNER + k] = v
    out[SEED] = row_seeds(key, replica * b, b)
    return out

  last = None if num_epochs is None else start_epoch + num_epochs
  epochs = (tf.data.Dataset.range(start_epoch, last) if last is not None
            else tf.data.Dataset.range(start_epoch, np.iinfo(np.int64).max))
  # Two epochs open at once, each yielding exactly its `steps` batches in
  # turn: the next epoch's readers fill their buffers while this one runs
  # (no stall at epoch starts), and the order is still epoch after epoch.
  # The experimental form is the one whose per-epoch buffer can be bounded
  # (2 batches); Dataset.interleave's autotuned buffer held a whole epoch.
  ds = epochs.apply(tf.data.experimental.parallel_interleave(
      epoch_batches, cycle_length=2, block_length=layout.steps,
      sloppy=False, buffer_output_elements=2, prefetch_input_elements=0))
  ds = ds.map(host_batch, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  if config.placement == "host":
    ds = ds.map(lambda batch: augment_batch(batch, info, augment_config),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def pairing_table(info: DataInfo, folds, config: InputConfig, epoch: int,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  max_steps_per_epoch: int = 0) -> list:
  """[(primary fname, partner fname)] of one epoch, as train_dataset pairs
  them (reads the epoch's records; for logging and checks)."""
  layout = _layout(info, folds, config, input_context, max_steps_per_epoch)
  spec = {records.FNAME: tf.io.FixedLenFeature([], tf.string)}
  names = _epoch_pairs(info, folds, config, epoch, layout).map(
      lambda p, q: (tf.io.parse_example(p, spec)[records.FNAME],
                    tf.io.parse_example(q, spec)[records.FNAME]))
  table = []
  for p, q in names.as_numpy_iterator():
    table += [(a.decode(), c.decode()) for a, c in zip(p, q)]
  return table


# ---------------------------------------------------------------------------
# Evaluation: every clip once per fixed length.


def eval_dataset(info: DataInfo, folds, config: InputConfig,
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

  def at_length(index, length):
    stream = tf.data.TFRecordDataset(
        files, info.compression,
        buffer_size=config.read_buffer_mb << 20).batch(batch_size)
    return stream.enumerate().map(lambda j, s: (index, j, length, s))

  def host_batch(index, j, length, serialized):
    key = _key(seed, index, j)
    out = window_batch(serialized, info, length, key)
    rows = tf.shape(serialized)[0]
    out[SEED] = row_seeds(key, 0, rows)
    out[ROW] = (index * num_clips + j * batch_size +
                tf.range(rows, dtype=tf.int64))
    if input_context is not None:
      out = _fill_batch(out, batch_size)
    return out

  lengths = [int(x) for x in lengths]
  ds = tf.data.Dataset.from_tensor_slices(
      (tf.range(len(lengths), dtype=tf.int64),
       tf.constant(lengths, tf.int32))).flat_map(at_length)
  ds = ds.map(host_batch, num_parallel_calls=tf.data.AUTOTUNE,
              deterministic=True)
  if input_context is not None:
    count = len(lengths) * -(-num_clips // batch_size)
    extra = -count % replicas
    if extra:
      padding = ds.take(1).map(lambda b: {**b, ROW: -tf.ones_like(b[ROW])})
      ds = ds.concatenate(padding.repeat(extra))
    if pipelines > 1:
      ds = ds.shard(pipelines, pipeline_id)
  if config.placement == "host":
    ds = ds.map(lambda batch: prepare_eval_batch(batch, info),
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


def _fill_batch(batch: Dict[str, tf.Tensor], rows: int):
  """Fills a batch up to `rows` rows with copies of its first row, marked
  ROW -1."""
  have = tf.shape(batch[ROW])[0]
  index = tf.concat([tf.range(have), tf.zeros([rows - have], tf.int32)], 0)
  out = {k: tf.gather(v, index) for k, v in batch.items()}
  out[ROW] = tf.concat([batch[ROW], -tf.ones([rows - have], tf.int64)], 0)
  return out


# ---------------------------------------------------------------------------
# Device: host batch -> model batch. TF ops only; run in the replica step.


def _normalize(log_mel_db: tf.Tensor, info: DataInfo) -> tf.Tensor:
  return features.normalize(tf.cast(log_mel_db, tf.float32),
                            *info.normalization)


def _view(batch: Dict[str, tf.Tensor], prefix: str, info: DataInfo,
          aug: AugmentConfig, seed: tf.Tensor, train: bool) -> tf.Tensor:
  """One side of a batch -> float32 [b, M, L, 1] crop/padded, augmented."""
  log_mel = batch[prefix + records.LOG_MEL]
  # log_mel: [b, L, M] float16 dB (moved as 16 bits until the cast)
  seeds = augment.split_seed(seed, 3)
  length = tf.shape(log_mel)[1]
  index, valid = augment.time_indices(
      batch[prefix + records.WINDOW_FRAMES], length, seeds[0],
      pad_mode=aug.pad_mode,
      shift_fraction=aug.shift_fraction if train else 0.0,
      flip_probability=aug.flip_probability if train else 0.0)
  lo, _ = info.normalization
  # 'constant' padding fills silence: lo dB, 0 after normalisation.
  image = tf.transpose(augment.gather_time(log_mel, index, valid, fill=lo),
                       [0, 2, 1])
  image = _normalize(image, info)
  # image: [b, M, L] float32 in [0, 1]
  if train and aug.erase_probability > 0:
    image = augment.random_erasing(
        image, seeds[1], probability=aug.erase_probability,
        area_range=aug.erase_area, aspect_range=aug.erase_aspect,
        fill_range=aug.erase_fill)
  if train:
    image = augment.spec_augment(
        image, seeds[2], freq_masks=aug.freq_masks,
        freq_width=aug.freq_mask_width, time_masks=aug.time_masks,
        time_fraction=aug.time_mask_fraction)
  return image[..., None]


def _one_hot(batch, prefix: str, info: DataInfo) -> tf.Tensor:
  return tf.one_hot(batch[prefix + records.LABEL], info.num_classes)


def _side(batch, prefix: str, info: DataInfo, aug: AugmentConfig,
          seed: tf.Tensor) -> Dict[str, tf.Tensor]:
  return {
      records.LOG_MEL: _view(batch, prefix, info, aug, seed, train=True),
      records.PCA: batch[prefix + records.PCA],
      TARGET: _one_hot(batch, prefix, info),
      WEIGHT: tf.cast(batch[prefix + records.MANUALLY_VERIFIED], tf.float32),
  }


def _slice_seed(batch) -> tf.Tensor:
  """[2]: the seed of a replica's slice (its first row's; replicas draw
  different numbers). A slice may be empty (the last, uneven batch split
  over replicas): then any seed will do."""
  seeds = batch[SEED]
  return tf.concat([seeds, tf.zeros([1, 2], seeds.dtype)], axis=0)[0]


def augment_parts(batch: Dict[str, tf.Tensor], info: DataInfo,
                  aug: AugmentConfig):
  """(primary, partner, mixup weight [b]) of augment_batch, before mixing.

  partner and weight are None when mixup is off (alpha <= 0).
  """
  seed = _slice_seed(batch)
  # seed: [2]
  seeds = augment.split_seed(seed, 3)
  primary = _side(batch, "", info, aug, seeds[0])
  if aug.mixup_alpha <= 0:
    return primary, None, None
  partner = _side(batch, PARTNER, info, aug, seeds[1])
  weight = augment.sample_beta(tf.shape(batch[SEED])[:1], aug.mixup_alpha,
                               seeds[2])
  # weight: [b] in [0, 1]
  return primary, partner, weight


def augment_batch(batch: Dict[str, tf.Tensor], info: DataInfo,
                  aug: AugmentConfig) -> Dict[str, tf.Tensor]:
  """Host batch -> model batch: crop/pad, augment, mixup.

  Returns log_mel float32 [b, M, L, 1] in [0, 1], pca [b, P],
  target float32 [b, C] (rows sum to 1), verified float32 [b].
  """
  primary, partner, weight = augment_parts(batch, info, aug)
  if partner is None:
    return primary
  return augment.mixup(primary, partner, weight)


def prepare_eval_batch(batch: Dict[str, tf.Tensor], info: DataInfo,
                       pad_mode: str = "symmetric") -> Dict[str, tf.Tensor]:
  """Host eval batch -> model batch: crop/pad only, one-hot targets (and
  the rows' positions, when the batch has them)."""
  aug = AugmentConfig(pad_mode=pad_mode)
  out = {
      records.LOG_MEL: _view(batch, "", info, aug, _slice_seed(batch),
                             train=False),
      records.PCA: batch[records.PCA],
      TARGET: _one_hot(batch, "", info),
      WEIGHT: tf.cast(batch[records.MANUALLY_VERIFIED], tf.float32),
  }
  if ROW in batch:
    out[ROW] = batch[ROW]
  return out


def batch_picture(info: DataInfo, config: InputConfig, aug: AugmentConfig,
                  fold=0, rows: int = 6, epoch: int = 0) -> bytes:
  """PNG of the first training batch of an epoch, stage by stage: the
  window cropped/padded only, augmented, its augmented mixup partner, and
  the mix the model sees."""
  from tagger import plots  # pylint: disable=g-import-not-at-top
  folds = select_folds(info, fold, "train")
  batch = next(iter(train_dataset(info, folds, config, aug,
                                  start_epoch=epoch, num_epochs=1)))
  plain = prepare_eval_batch(batch, info, aug.pad_mode)[records.LOG_MEL]
  primary, partner, weight = augment_parts(batch, info, aug)
  columns = [plain, primary[records.LOG_MEL]]
  titles = ["cropped/padded", "augmented"]
  labels = [info.labels[i] for i in batch[records.LABEL].numpy()[:rows]]
  if partner is not None:
    mixed = augment.mixup(primary, partner, weight)[records.LOG_MEL]
    columns += [partner[records.LOG_MEL], mixed]
    titles += ["mixup partner (augmented)", "mixed: model input"]
    names = [info.labels[i] for i in
             batch[PARTNER + records.LABEL].numpy()[:rows]]
    labels = [f"{w:.2f} {a}\n+ {1 - w:.2f} {b}" for a, b, w in
              zip(labels, names, weight.numpy()[:rows])]
  length = int(batch[records.LOG_MEL].shape[1])
  return plots.batch_grid(
      [c.numpy()[:rows, :, :, 0] for c in columns], titles, labels,
      title=f"{info.data_dir}: epoch {epoch}, first batch, length {length}")
