r"""configs/cpu.py's new-audio recipe at the reference's GPU sizes.

  python -m tools.train --config=configs/gpu.py:new_audio \
      --data_dir=tfrecords/train --model_dir=runs/new_audio_gpu

MobileNetV2 stage 1 as configs/stage1_mel.py trains it (batch 64, lengths
from the train frames' percentiles, 100 cyclic epochs at most, Keras'
BatchNorm momentum), the CNN9 fine-tuned past its first two blocks at a
tenth of that LR for 30 cyclic epochs, and the frozen CNN9 with its
logistic-regression head (configs/cpu.py:frozen): mixed precision where
the GPU has it (precision 'auto'), every GPU of the host (strategy
'auto').
"""

from tagger import settings
from tagger.configs import cpu
from tagger.configs import stage1_mel


def get_config(stage="new_audio"):
  if stage != "new_audio":
    raise ValueError(f"configs/gpu.py:{stage}: use :new_audio")
  mobilenet = stage1_mel.get_config()
  tuned = cpu.get_config("pretrained")
  frozen = cpu.get_config("frozen")
  for member in (tuned, frozen):
    member.input.batch_size = mobilenet.input.batch_size
    member.model.bn_momentum = None
  tuned.schedule.cyclic_epochs = 30
  tuned.schedule.cycle_step_epochs = 3.0
  tuned.schedule.fine_tune_max_epochs = 5
  return settings.recipe_config([("mobilenet", mobilenet),
                                 ("cnn9_tuned", tuned),
                                 ("cnn9_frozen", frozen)])
