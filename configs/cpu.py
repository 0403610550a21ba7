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
"""

import os

from tagger import settings

DEMO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo.py")


def get_config(stage="stage1"):
  """configs/demo.py's config of the stage, with what differs."""
  if stage not in ("stage1", "stage2"):
    raise ValueError(f"configs/cpu.py:{stage}: use :stage1 or :stage2")
  config = settings.load_config(f"{DEMO}:{stage}")
  config.schedule.max_lr = 1e-3
  config.schedule.cyclic_epochs = 70
  config.schedule.cycle_step_epochs = 5.0
  config.schedule.fine_tune_max_epochs = 3
  if config.stage == 2:
    config.model.init_from = "runs/cpu/stage1/fold{fold}"
    config.model.pca_head = True
    config.model.pca_into_mlp = False
    config.model.pca_head_l2 = 0.03
    config.schedule.cyclic_epochs = 16
  return config
