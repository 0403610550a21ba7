r"""Small data on a CPU: both stages of one fold of about 1,000 clips in
under 30 minutes on 2 cores.

  python -m tools.train --config=configs/cpu.py:stage1 \
      --data_dir=tfrecords/train --model_dir=runs/cpu/stage1/fold0
  python -m tools.train --config=configs/cpu.py:stage2 \
      --data_dir=tfrecords/train --model_dir=runs/cpu/stage2/fold0 \
      --config.model.init_from=runs/cpu/stage1/fold{fold}

The demo config's input sizes (batch 32, inputs of 128-288 frames,
validated at 160 and 256, BatchNorm momentum 0.9), with what the ablation
on recorded sounds showed to matter on small data (BUILD.md, "Quality on
recorded sounds"): a schedule long enough in steps (70 cyclic epochs at
the reference's peak LR, 1e-3), and in stage 2 late fusion: stage 1's
network unchanged plus an L2-penalised linear path from the PCA vector to
the logits, the PCA vector kept out of the dense layers. Larger datasets
train more steps per epoch: lower cyclic_epochs so that the run fits the
time you have.

configs/cpu.py:pretrained: stage 1 on aisfx's audio-pretrained CNN9
(model.backbone=cnn9_aisfx; the weights: pip download aisfx==0.1.2
--no-deps -d weights/, read in place), fine-tuned at a lower LR past its
first two blocks; with MobileNetV2 stage 1 and the probe below, scored
together, the choice for sources the training set never heard (BUILD.md,
"Quality on sources never heard").

  python -m tools.train --config=configs/cpu.py:pretrained \
      --data_dir=tfrecords/train --model_dir=runs/cpu/pretrained/fold0

configs/cpu.py:probe: the same CNN9 frozen, only the head trained, on
shards of aisfx's own front-end:

  python -m tools.make_tfrecords --features=aisfx --csv=train.csv \
      --audio_dir=audio_train --output_dir=tfrecords_aisfx/train
  python -m tools.train --config=configs/cpu.py:probe \
      --data_dir=tfrecords_aisfx/train --model_dir=runs/cpu/probe/fold0

configs/cpu.py:new_audio: the tagger for audio from sources the training
set never heard, as one recipe (tagger/recipe.py) on the default shards:
MobileNetV2 stage 1 (:stage1), the CNN9 fine-tuned past its first two
blocks (:pretrained) and the frozen CNN9 whose linear head is a logistic
regression on aisfx's pooled clip embedding (:frozen), trained in turn
into one model dir that scores, exports and serves as one tagger:

  python -m tools.train --config=configs/cpu.py:new_audio \
      --data_dir=tfrecords/train --model_dir=runs/new_audio
"""

from tagger import settings
from tagger.configs import common
from tagger.configs import demo


AISFX_WHEEL = "weights/aisfx-0.1.2-py2.py3-none-any.whl"


def get_config(stage="stage1"):
  """configs/demo.py's config of the stage, with what differs; levers
  after '+' (LEVERS: 'new_audio_full_band+mixstyle') change it further."""
  stage, *levers = stage.split("+")
  unknown = [l for l in levers if l not in LEVERS]
  if unknown:
    raise ValueError(f"configs/cpu.py: unknown lever(s) {unknown}; known: "
                     f"{sorted(LEVERS)}")
  config = _stage_config(stage)
  for lever in levers:
    config = LEVERS[lever](config)
  return config


def _stage_config(stage):
  stages = {"pretrained": pretrained, "probe": probe, "frozen": frozen,
            "new_audio": new_audio, "new_audio_full_band":
                new_audio_full_band}
  if stage not in ("stage1", "stage2", *stages):
    raise ValueError(f"configs/cpu.py:{stage}: use :stage1, :stage2, "
                     ":pretrained, :probe, :frozen, :new_audio or "
                     ":new_audio_full_band")
  if stage in stages:
    return stages[stage]()
  config = demo.get_config(stage)
  config.schedule.max_lr = 1e-3
  config.schedule.cyclic_epochs = 70
  config.schedule.cycle_step_epochs = 5.0
  config.schedule.fine_tune_max_epochs = 3
  if config.stage == 2:
    config.model.init_from = "runs/cpu/stage1/fold{fold}"
    common.late_fusion(config)
  return config


def pretrained():
  """Stage 1 on the pretrained CNN9: its weights move at a tenth of the
  from-scratch LR (the fine-tuning benchmark's finding), for fewer
  epochs, and its first two blocks (and the adapter before them) stay as
  pretrained: the same quality across sources as fine-tuning all of it
  in about 30% less time (no backward pass through the high-resolution
  blocks; BUILD.md, "Quality on sources never heard")."""
  config = get_config("stage1")
  config.model.backbone = "cnn9_aisfx"
  config.model.backbone_weights = AISFX_WHEEL
  config.schedule.base_lr = 1e-5
  config.schedule.max_lr = 1e-4
  config.schedule.cyclic_epochs = 16
  config.schedule.cycle_step_epochs = 2.0
  config.schedule.fine_tune_max_epochs = 2
  config.model.freeze_backbone_until = "cnn9_b2_bn2"
  return config


def frozen():
  """The pretrained CNN9 frozen on the default shards (its adapter maps
  the reference's log-mel to aisfx's bands), pooled as aisfx pools its
  clip embedding (cnn9_aisfx_blocks, 1,024 values), under a linear head
  fitted by logistic regression, not trained (model.fit='logistic')."""
  config = pretrained()
  config.model.backbone = "cnn9_aisfx_blocks"
  config.model.freeze_backbone = True
  config.model.freeze_backbone_until = ""
  config.model.head = "linear"
  config.model.fit = "logistic"
  return config


def new_audio():
  """The three members, trained in turn into one model dir."""
  return settings.recipe_config([("mobilenet", get_config("stage1")),
                                 ("cnn9_tuned", pretrained()),
                                 ("cnn9_frozen", frozen())])


def full_band(config):
  """A config on aisfx's front-end (make_tfrecords --features=aisfx: 96
  bands to 22 kHz at 43 frames/s): the input lengths in frames of that
  rate, the same seconds as the reference's (1.3-3 s windows, validated
  at 1.7 and 2.6 s)."""
  config.input.length_range = (56, 128)
  config.input.eval_lengths = (72, 112)
  config.input.length_quantum = 8
  return config


def new_audio_full_band():
  """The recipe with every member hearing the whole band (aisfx's
  front-end, make_tfrecords --features=aisfx): MobileNetV2 on the 96
  bands, the CNN9 fine-tuned past its first two blocks and the frozen
  CNN9 under a logistic-regression head, both on the features the CNN9
  was trained on (no adapter)."""
  tuned = full_band(pretrained())
  tuned.model.backbone = "cnn9_aisfx_native"
  still = full_band(frozen())
  still.model.backbone = "cnn9_aisfx_native"
  return settings.recipe_config([("mobilenet", full_band(get_config(
      "stage1"))), ("cnn9_tuned", tuned), ("cnn9_frozen", still)])


def _sgd_members(config):
  """The configs a lever changes: the config itself, or a recipe's members
  trained by SGD (a logistic member sees no augmentation)."""
  if "members" not in config:
    return [config]
  return [m for m in config.members.values() if m.model.fit != "logistic"]


def mixstyle(config):
  """Freq-MixStyle before the erasing (augment.freq_mixstyle: per-band
  statistics mixed between examples; CPJKU's DCASE 2022 setting, alpha
  0.3, on half the examples)."""
  for member in _sgd_members(config):
    member.augment.image_ops = ("freq_mixstyle",) + tuple(
        member.augment.image_ops)
    member.augment.op_params = {**dict(member.augment.op_params or {}),
                                "freq_mixstyle": {"alpha": 0.3,
                                                  "probability": 0.5}}
  return config


def device_eq(config):
  """Random smooth EQ curves (recording_ops.equalizer: a microphone's or
  channel's response) on every training clip."""
  for member in _sgd_members(config):
    member.augment.recording_ops = tuple(
        member.augment.recording_ops) + ("equalizer",)
  return config


def native(config):
  """A CNN9 config on aisfx's own front-end (make_tfrecords
  --features=aisfx): the whole band, no adapter (cpu:frozen+native is the
  frozen member of new_audio_full_band)."""
  if "members" in config or not config.model.backbone.startswith("cnn9"):
    raise ValueError("configs/cpu.py: +native takes one CNN9 config "
                     "(:pretrained or :frozen)")
  config.model.backbone = "cnn9_aisfx_native"
  return full_band(config)


LEVERS = {"mixstyle": mixstyle, "device_eq": device_eq, "native": native}


def probe():
  """The pretrained CNN9 frozen (weights and BatchNorm statistics) on
  shards of aisfx's own front-end (cnn9_aisfx_native; make_tfrecords
  --features=aisfx), only the head trained, at the from-scratch LR: about
  a quarter of the fine-tuning's time (no backward pass through the
  backbone)."""
  config = pretrained()
  config.model.backbone = "cnn9_aisfx_native"
  config.model.freeze_backbone = True
  config.model.freeze_backbone_until = ""
  config.schedule.base_lr = 1e-4
  config.schedule.max_lr = 1e-3
  return full_band(config)
