r"""Stage 2: log-mels + the 350 PCA summary features, from stage 1's weights.

  python -m tools.train --config=configs/stage2_mel_pca.py \
      --data_dir=tfrecords/train --model_dir=runs/stage2/fold0 \
      --config.fold=0

Starts every layer it shares with stage 1 from runs/stage1/fold{fold}
(--config.model.init_from), mixup alpha 0.5, class weights 1 / class count;
otherwise as stage 1.
"""

from tagger import settings



def get_config():
  config = settings.default_config()
  config.stage = 2
  config.model.init_from = "runs/stage1/fold{fold}"
  config.augment.mixup_alpha = 0.5
  config.class_weights = True
  return config
