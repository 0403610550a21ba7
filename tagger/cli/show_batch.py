r"""Writes a PNG of a training batch before and after augmentation.

  python -m tools.show_batch --data_dir=tfrecords/train --output=batch.png

Columns: the log-mel window cropped/padded only, after augmentation (shift,
flip, erasing, SpecAugment if on), its mixup partner, and the mix the model
sees; rows are examples, labelled with the mixup weights and labels.
"""

from absl import app
from absl import flags

from tagger import fileio
from tagger import settings
from tagger.cli import run_tool
from tagger.input import picture
from tagger.shards import data_info

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "tfrecords/train", "Train shards.")
flags.DEFINE_string("output", "batch.png", "PNG to write (any filesystem).")
flags.DEFINE_string("fold", "0", "Validation fold left out ('all': none).")
flags.DEFINE_integer("rows", 6, "Examples to show.")
flags.DEFINE_integer("epoch", 0, "Epoch whose first batch is shown.")
flags.DEFINE_integer("seed", 0, "Input seed.")
flags.DEFINE_float("mixup_alpha", 1.0, "Beta(alpha, alpha); 0: no mixup.")
flags.DEFINE_integer("freq_masks", 0, "SpecAugment frequency masks.")
flags.DEFINE_integer("time_masks", 0, "SpecAugment time masks.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  info = data_info.load_data_info(FLAGS.data_dir)
  config = settings.InputConfig(batch_size=max(FLAGS.rows, 8),
                                seed=FLAGS.seed)
  aug = settings.AugmentConfig(mixup_alpha=FLAGS.mixup_alpha,
                               freq_masks=FLAGS.freq_masks,
                               time_masks=FLAGS.time_masks)
  png = picture.batch_picture(info, config, aug, FLAGS.fold, FLAGS.rows,
                         FLAGS.epoch)
  fileio.atomic_write_bytes(FLAGS.output, png)
  print(f"wrote {FLAGS.output}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
