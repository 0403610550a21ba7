r"""Small and fast for a CPU: the demo data in minutes.

  python -m tools.train --config=configs/demo.py:stage1 \
      --data_dir=runs/demo/tfrecords/train --model_dir=runs/demo/stage1/fold0
  python -m tools.train --config=configs/demo.py:stage2 \
      --data_dir=runs/demo/tfrecords/train --model_dir=runs/demo/stage2/fold0

(python -m tools.demo runs these for the demo folds.) Differences from the
reference, all for speed on 2 CPU cores: batch 32; inputs of 128-288 frames
(1.3-2.9 s) instead of the 25th-75th percentile, validated at 160 and 256;
mixup alpha 0.2; a short cyclic phase (LR 1e-4..2e-3) and 2-epoch fine-tune
phases; BatchNorm momentum 0.9: with Keras' 0.999 a few hundred steps leave
the moving statistics near their initial values and validation at chance
(BUILD.md).
"""

from tagger import settings
from tagger.configs import common


def get_config(stage="stage1"):
  """The stage's demo config; 'stage1+multi_label' (or stage2's) is
  tools/demo --multi_label's (multi_label below)."""
  stage, plus, variant = stage.partition("+")
  if stage not in ("stage1", "stage2") or variant not in (
      "multi_label" if plus else ""):
    raise ValueError(f"configs/demo.py:{stage}{plus}{variant}: use :stage1 "
                     "or :stage2, optionally +multi_label")
  config = _stage_config(stage)
  return multi_label(config) if variant else config


def multi_label(config):
  """The FSDKaggle2019-layout demo: curated + noisy sources, and stage 2
  with late fusion as configs/cpu.py's (4-epoch LR cycles)."""
  common.curated_noisy(config)
  if config.stage == 2:
    common.late_fusion(config)
    config.schedule.cycle_step_epochs = 4.0
  return config


def _stage_config(stage):
  config = settings.default_config()
  config.stage = 1 if stage == "stage1" else 2
  config.input.batch_size = 32
  config.input.length_range = (128, 288)
  config.input.eval_lengths = (160, 256)
  config.input.pairing_block = 256
  config.input.shuffle_buffer = 256
  config.augment.mixup_alpha = 0.2
  config.model.bn_momentum = 0.9
  config.schedule.max_lr = 2e-3
  config.schedule.cyclic_epochs = 12
  config.schedule.cycle_step_epochs = 2.0
  config.schedule.fine_tune_max_epochs = 2
  config.schedule.early_stop_patience = 2
  config.eval_batch_size = 64
  if config.stage == 2:
    config.model.init_from = "runs/demo/stage1/fold{fold}"
    config.class_weights = True
    config.schedule.cyclic_epochs = 6
  return config
