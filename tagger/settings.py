"""Every training setting and its default, without TensorFlow: configs
(configs/*.py) and tools load these cheaply.

`default_config()` lists every field with the reference's value (stage 1);
configs change what differs. `RunConfig`, `InputConfig`, `AugmentConfig`,
`ModelConfig` and `ScheduleConfig` are the typed views of the config's top
level, config.input, config.augment, config.model and config.schedule:
each holds its fields' defaults (the one place they are written) and
checks its own values. Code reads a config through these views only.
"""

import dataclasses
import importlib.util
import os
from typing import Optional, Tuple

import ml_collections

from tagger import errors


class SettingsError(errors.UserError):
  """A setting that does not exist or cannot work; the message says why."""


# What config.select_best may monitor (train/validation.py computes them).
SELECT_BEST = ("val_loss", "val_map3", "val_lwlrap")
# What a training does with the clips of a label issues file (input/
# label_fixes.py says what each means).
LABEL_ISSUE_ACTIONS = ("drop", "weight", "relabel")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """The run's own settings (the config's top level, below its sections)."""
  stage: int = 1               # 1: log-mel only; 2: log-mel + PCA
  fold: str = "0"              # 'k', 'all' (each in turn), 'none' (no val)
  seed: int = 0
  strategy: str = "auto"       # auto | mirrored | multi_worker | one_device
  precision: str = "auto"      # auto | float32 | mixed_float16 | ..bfloat16
  deterministic: bool = False  # tf op determinism (slower; for tests)
  verify_shards: bool = True   # sha256 of every shard before training
  class_weights: bool = False  # stage 2: weights 1 / class count
  # The monitored value (best weights, plateau, early stop): val_loss (the
  # reference) or val_map3 (the competition's metric; small noisy sets).
  # Multi-label data: val_lwlrap (FSDKaggle2019's metric) too.
  select_best: str = "val_loss"
  # Loss weight per source of the clips (make_tfrecords --sources), e.g.
  # "noisy=0.5"; sources not named weigh 1.
  source_weights: str = ""
  verified_weight: float = 1.0  # loss weight of manually verified clips
  # A label_issues.csv (written by --config.fold=all) whose clips this
  # training acts on: drop, weight (by issue_weight) or relabel (the
  # suggested label); manually verified clips only with fix_verified, and
  # never relabelled.
  label_issues: str = ""
  on_label_issue: str = "drop"
  issue_weight: float = 0.3
  fix_verified: bool = False
  eval_batch_size: int = 128
  max_steps_per_epoch: int = 0  # 0: whole epochs
  # A checkpoint also every N steps inside an epoch (0: at epoch ends
  # only); SIGTERM / SIGINT always write one before the run stops.
  checkpoint_every_steps: int = 0
  # XLA for the training step (one compilation per input length: see
  # input.length_quantum). Off: measured slower on CPUs (BUILD.md, "The
  # GPU user's path").
  jit_compile: bool = False
  log_pairing: bool = False    # write each epoch's pairing table (CSV)
  tensorboard_images: int = 6

  def __post_init__(self):
    _check("stage", self.stage, self.stage in (1, 2), "1 or 2")
    _check("fold", self.fold, self.fold in ("all", "none") or
           self.fold.isdigit(), "a fold number, 'all' or 'none'")
    _check("select_best", self.select_best, self.select_best in SELECT_BEST,
           "val_loss, val_map3 or (multi-label data) val_lwlrap")
    _check("eval_batch_size", self.eval_batch_size, self.eval_batch_size > 0,
           "above 0")
    _check("on_label_issue", self.on_label_issue,
           self.on_label_issue in LABEL_ISSUE_ACTIONS,
           " or ".join(LABEL_ISSUE_ACTIONS))
    _check("issue_weight", self.issue_weight,
           0.0 <= self.issue_weight <= 1.0, "in [0, 1]")
    for name in ("max_steps_per_epoch", "checkpoint_every_steps",
                 "tensorboard_images"):
      _check(name, getattr(self, name), getattr(self, name) >= 0,
             "0 or more")

  @property
  def stage2(self) -> bool:
    return self.stage == 2


SECTIONS = ("input", "augment", "model", "schedule")
# A recipe's own top-level keys (recipe_config): its members' settings.
RECIPE_KEYS = ("members", "train_order", "choose_members")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Per-example augmentation; every part can be switched off."""
  pad_mode: str = "symmetric"          # symmetric (reference), constant, wrap
  shift_fraction: float = 0.6          # random shift up to 60% of the width
  flip_probability: float = 0.5        # random time flip
  erase_probability: float = 0.5       # random erasing (cutout)
  erase_area: Tuple[float, float] = (0.02, 0.4)
  erase_aspect: Tuple[float, float] = (0.3, 1 / 0.3)
  erase_fill: Tuple[float, float] = (0.0, 1.0)
  freq_masks: int = 0                  # SpecAugment (off in the reference)
  freq_mask_width: int = 8
  time_masks: int = 0
  time_mask_fraction: float = 0.05
  mixup_alpha: float = 1.0             # Beta(alpha, alpha); 0 disables mixup
  # The ops on the normalised image, in order (augment.IMAGE_OPS), and the
  # keyword arguments of ops that take them: {"op": {"name": value}}.
  image_ops: Tuple[str, ...] = ("random_erasing", "spec_augment")
  # Ops on the log-mel in dB before the normalisation (augment.
  # RECORDING_OPS: gain, equalizer, background_noise, reverberation,
  # pitch_shift); none in the reference.
  recording_ops: Tuple[str, ...] = ()
  op_params: Tuple = ()                # from_mapping: dict -> sorted items


@dataclasses.dataclass(frozen=True)
class InputConfig:
  """How batches are read and shaped."""
  batch_size: int = 64                 # global batch, split over replicas
  length_range: Optional[Tuple[int, int]] = None  # None: manifest crop_range
  length_quantum: int = 32             # 1 gives the reference's lengths
  eval_lengths: Optional[Tuple[int, ...]] = (263, 363, 463, 563, 663, 763)
  num_eval_lengths: int = 6            # when eval_lengths is None: spread
                                       # over the manifest's crop_range
  pairing: str = "auto"                # auto | global | block | independent
  pairing_memory_mb: int = 2048        # 'auto': 'global' when the train
                                       # records fit in this much host RAM
  pairing_block: int = 1024            # records paired together ('block')
  shuffle_buffer: int = 1024           # records per reader
  file_parallelism: int = 4            # shards read at once per reader
  read_buffer_mb: int = 8
  placement: str = "device"            # where augment_batch runs
  train_sources: str = ""              # comma separated source names the
  val_sources: str = ""                # train / validation read ("": all)
  data_service: str = ""               # host:port of a tf.data service
                                       # dispatcher: the host side runs on
                                       # its workers (tools/data_service)
  # With data_service: an epoch short of batches counts as lost (a worker
  # stopped) once this many batches of later epochs came after it.
  lost_batches_after: int = 256
  seed: int = 0

  def __post_init__(self):
    for name in ("batch_size", "length_quantum", "num_eval_lengths",
                 "pairing_block", "shuffle_buffer", "file_parallelism",
                 "read_buffer_mb"):
      value = getattr(self, name)
      _check(f"input.{name}", value, value >= 1, "1 or more")
    for name in ("pairing_memory_mb", "lost_batches_after"):
      value = getattr(self, name)
      _check(f"input.{name}", value, value >= 0, "0 or more")
    _check("input.eval_lengths", self.eval_lengths,
           self.eval_lengths is None or (
               len(self.eval_lengths) > 0 and
               all(int(x) >= 1 for x in self.eval_lengths)),
           "frames >= 1, or None")
    _check("input.length_range", self.length_range,
           self.length_range is None or (
               len(self.length_range) == 2 and
               1 <= self.length_range[0] <= self.length_range[1]),
           "(shortest, longest) frames, shortest >= 1, or None")


INPUT_NORMS = ("batch", "clip", "clip_band")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The network and where its weights start (config.model)."""
  backbone_weights: str = "none"       # none | imagenet | a path (.h5, wheel)
  init_from: str = ""                  # stage 2: 'runs/stage1/fold{fold}'
  # None keeps Keras' own (backbone 0.999, head 0.99); short runs need ~0.9.
  bn_momentum: Optional[float] = None
  backbone: str = "mobilenet_v2"       # backbones.BACKBONES: | small_cnn ...
  alpha: float = 1.0                   # the backbone's width
  pca_head: bool = False               # stage 2: + linear PCA -> logits path
  pca_into_mlp: bool = True            # stage 2: PCA into the dense layers
  dropout: float = 0.0                 # before the dense layers and logits
  pca_head_l2: float = 0.0             # L2 on the linear PCA path's kernel
  # batch (reference: fixed dB bounds + BatchNorm) | clip | clip_band:
  # each clip standardised by its own statistics (ClipStandardization)
  input_norm: str = "batch"
  # The backbone never trains (its pretrained weights and BatchNorm
  # statistics stay): a probe, for sources training never heard.
  freeze_backbone: bool = False
  # Fine-tuning a pretrained backbone: its BatchNorm layers keep their
  # statistics, scale and offset (inference mode); the convolutions train.
  freeze_backbone_bn: bool = False
  # Partial fine-tuning: this backbone layer and all before it stay as
  # built ('' : none), e.g. 'cnn9_b2_bn2' (CNN9's first two blocks).
  freeze_backbone_until: str = ""
  # Fine-tuning (init_from a model of other labels): the stem and backbone
  # get no updates for this many epochs (BatchNorm statistics still adapt).
  freeze_epochs: int = 0
  # mlp (the reference's dense layers) | linear (one Dense: with
  # freeze_backbone and fit='logistic', a logistic regression's weights)
  head: str = "mlp"
  # sgd (trained by tools/train's loop) | logistic (frozen backbone only:
  # the linear head fitted by logistic regression on the pooled features
  # of the training clips, C by the validated fold; tagger/recipe.py)
  fit: str = "sgd"

  def __post_init__(self):
    _check("model.alpha", self.alpha, self.alpha > 0, "above 0")
    _check("model.dropout", self.dropout, 0 <= self.dropout < 1,
           "in [0, 1)")
    _check("model.pca_head_l2", self.pca_head_l2, self.pca_head_l2 >= 0,
           "0 or more")
    _check("model.input_norm", self.input_norm,
           self.input_norm in INPUT_NORMS, f"one of {INPUT_NORMS}")
    _check("model.head", self.head, self.head in ("mlp", "linear"),
           "'mlp' or 'linear'")
    _check("model.fit", self.fit, self.fit in ("sgd", "logistic"),
           "'sgd' or 'logistic'")
    if self.fit == "logistic" and not (self.freeze_backbone and
                                       self.head == "linear"):
      raise SettingsError("model.fit='logistic' fits a linear head on a "
                          "frozen backbone: set model.head='linear' and "
                          "model.freeze_backbone=True")
    _check("model.freeze_epochs", self.freeze_epochs,
           self.freeze_epochs >= 0, "0 or more")
    _check("model.bn_momentum", self.bn_momentum,
           self.bn_momentum is None or 0 < self.bn_momentum < 1,
           "in (0, 1), or None")


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
  """The three phases' learning rates and lengths (config.schedule): a
  triangular cyclic LR (base..max, a half cycle every cycle_step_epochs)
  for cyclic_epochs, then two fine-tuning phases from the best weights at
  fine_tune_lrs with reduce-on-plateau and early stopping."""
  cyclic_epochs: int = 100
  base_lr: float = 1e-4
  max_lr: float = 1e-3
  cycle_step_epochs: float = 1.0
  fine_tune_lrs: Tuple[float, float] = (1e-5, 1e-4)
  fine_tune_max_epochs: int = 100
  plateau_factor: float = 0.1
  plateau_patience: int = 3
  plateau_min_delta: float = 1e-4
  early_stop_patience: int = 10

  def __post_init__(self):
    for name in ("cyclic_epochs", "fine_tune_max_epochs", "plateau_patience",
                 "early_stop_patience"):
      value = getattr(self, name)
      _check(f"schedule.{name}", value, value >= 0, "0 or more")
    _check("schedule.base_lr", self.base_lr,
           0 < self.base_lr <= self.max_lr, "above 0 and at most max_lr")
    _check("schedule.cycle_step_epochs", self.cycle_step_epochs,
           self.cycle_step_epochs > 0, "above 0")
    _check("schedule.fine_tune_lrs", self.fine_tune_lrs,
           len(self.fine_tune_lrs) == 2 and min(self.fine_tune_lrs) > 0,
           "two LRs above 0 (one per fine-tuning phase)")
    _check("schedule.plateau_factor", self.plateau_factor,
           0 < self.plateau_factor < 1, "in (0, 1)")


def _check(name: str, value, ok: bool, should: str) -> None:
  if not ok:
    raise SettingsError(f"config.{name}={value!r}: should be {should}")


def from_mapping(cls, values) -> object:
  """A dataclass from a dict / ConfigDict, rejecting unknown keys."""
  values = dict(values or {})
  known = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - known)
  if unknown:
    raise SettingsError(f"unknown {cls.__name__} keys {unknown}; known: "
                     f"{sorted(known)}")
  for key, value in values.items():
    if isinstance(value, list):
      values[key] = tuple(value)
    elif isinstance(value, dict):  # hashable: ((key, value or items), ...)
      values[key] = tuple(sorted(
          (k, tuple(sorted(dict(v).items())) if isinstance(v, dict) else v)
          for k, v in value.items()))
  return cls(**values)


RECIPE_RUN_KEYS = ("fold", "seed", "strategy", "precision", "deterministic",
                   "label_issues", "on_label_issue", "issue_weight",
                   "fix_verified")


def recipe_config(members) -> ml_collections.ConfigDict:
  """A recipe (tagger/recipe.py): members, [(name, training config)] in
  training order, under config.members; the run-level keys (fold, seed,
  strategy, precision, deterministic, the label issues' keys) once at the
  top, every member's."""
  c = ml_collections.ConfigDict()
  defaults = default_config()
  for key in RECIPE_RUN_KEYS:
    c[key] = defaults[key]
  c.members = ml_collections.ConfigDict()
  for name, member in members:
    c.members[name] = member
  # ConfigDict sorts its keys: the order is a setting of its own.
  c.train_order = ",".join(name for name, _ in members)
  # Keep only the members whose geometric mean validates best
  # (recipe.choose_members).
  c.choose_members = False
  return c


def default_config() -> ml_collections.ConfigDict:
  """Every training setting with the reference's value (stage 1); configs/
  change what differs. Each field is overridable from the command line:
  --config.fold=3 --config.input.batch_size=128."""
  from ml_collections import config_dict  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict({
      f.name: f.default for f in dataclasses.fields(RunConfig)})
  c.input = ml_collections.ConfigDict({
      f.name: f.default for f in dataclasses.fields(InputConfig)
      if f.name != "seed"})
  c.input.length_range = config_dict.placeholder(tuple)
  c.augment = ml_collections.ConfigDict({
      f.name: f.default for f in dataclasses.fields(AugmentConfig)
      if f.name != "op_params"})
  c.augment.op_params = ml_collections.ConfigDict()
  c.model = ml_collections.ConfigDict({
      f.name: f.default for f in dataclasses.fields(ModelConfig)})
  c.model.bn_momentum = config_dict.placeholder(float)
  c.schedule = ml_collections.ConfigDict({
      f.name: f.default for f in dataclasses.fields(ScheduleConfig)})
  return c


# ---------------------------------------------------------------------------
# Typed views of a config.


def run_config(config) -> RunConfig:
  """The top level's typed view (a recipe's members, its own keys and
  sections are not a run's)."""
  values = {k: v for k, v in config.items()
            if k not in SECTIONS + RECIPE_KEYS}
  values["stage"] = int(values.get("stage", 1))
  values["fold"] = str(values.get("fold", "0"))
  return from_mapping(RunConfig, values)


def input_config(config) -> InputConfig:
  values = {**config.input.to_dict(), "seed": config.seed}
  if values.get("length_range") is None:
    values.pop("length_range", None)
  return from_mapping(InputConfig, values)


def augment_config(config) -> AugmentConfig:
  return from_mapping(AugmentConfig, config.augment.to_dict())


def model_config(config) -> ModelConfig:
  return from_mapping(ModelConfig, config.model.to_dict())


def schedule_config(config) -> ScheduleConfig:
  return from_mapping(ScheduleConfig, config.schedule.to_dict())


def names(text: str) -> Tuple[str, ...]:
  """'a, b' -> ('a', 'b'): a comma-separated setting or flag, blanks
  around each and empty parts dropped (the one comma-list parser)."""
  return tuple(x.strip() for x in (text or "").split(",") if x.strip())


def source_weights(spec: str, sources) -> Tuple[float, ...]:
  """[S] loss weights of the data's sources from config.source_weights's
  spec ('noisy=0.5,curated=1'; sources not named: 1)."""
  weights = {}
  for item in names(spec):
    name, sep, value = item.partition("=")
    try:
      weights[name.strip()] = float(value)
    except ValueError:
      sep = ""
    if not sep:
      raise SettingsError(f"config.source_weights: {item!r} is not "
                          "name=weight")
  unknown = sorted(set(weights) - set(sources))
  if unknown:
    raise SettingsError(f"config.source_weights names {unknown}, not "
                        f"sources of the data ({list(sources)})")
  return tuple(weights.get(s, 1.0) for s in sources)


def config_file(spec: str) -> str:
  """'path.py[:arg]' as given where that file exists; else, for a bare
  name ('cpu:stage1', 'cpu.py:stage1') or a configs/ path that is not
  here (outside a checkout), the shipped config's file (tagger.configs)."""
  path, sep, arg = spec.partition(":")
  folder, name = os.path.split(path)
  if os.path.isfile(path) or folder.rstrip("/") not in ("", "configs"):
    return spec
  import tagger.configs  # pylint: disable=g-import-not-at-top
  shipped = os.path.join(tagger.configs.__path__[0],
                         name if name.endswith(".py") else f"{name}.py")
  if name.startswith("_") or not os.path.isfile(shipped):
    return spec
  return shipped + sep + arg


def load_config(spec: str):
  """A config from 'path/to/config.py[:arg]' or a shipped one by name
  ('cpu:stage1'; config_file)."""
  path, _, arg = config_file(spec).partition(":")
  if not os.path.isfile(path):
    raise SettingsError(f"{path}: no such config file, nor a shipped "
                        "config of that name (configs/*.py)")
  module_spec = importlib.util.spec_from_file_location(
      os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()
