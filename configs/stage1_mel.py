r"""Stage 1: MobileNetV2 on log-mels only, the reference's settings.

  python -m tools.train --config=configs/stage1_mel.py \
      --data_dir=tfrecords/train --model_dir=runs/stage1/fold0 \
      --config.fold=0

Batch 64, lengths drawn from the 25th-75th percentile of train frames, mixup
alpha 1, cyclic LR 1e-4..1e-3 for up to 100 epochs, then LR 1e-5 and 1e-4
with reduce-on-plateau and early stopping. --config.fold=all trains every
fold in turn into model_dir/fold{k}.
"""

from tagger import settings



def get_config():
  config = settings.default_config()
  config.stage = 1
  config.augment.mixup_alpha = 1.0
  return config
