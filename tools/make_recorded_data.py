r"""Writes the real-recorded evaluation set (Kaggle layout) from Debian's
General MIDI soundfonts played by fluidsynth (tagger/recorded_data.py).

  sudo apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont \
      musescore-general-soundfont-small
  python -m tools.make_recorded_data --output_dir=recorded_data
"""

from absl import app
from absl import flags

from tagger import recorded_data
from tools import run_tool

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "recorded_data", "Where the set goes.")
flags.DEFINE_integer("train_per_class", 25, "Train clips per class.")
flags.DEFINE_integer("test_per_class", 12, "Test clips per class.")
flags.DEFINE_integer("seed", 0, "Same seed, same files.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  counts = recorded_data.make_recorded_data(
      FLAGS.output_dir, recorded_data.RecordedSpec(
          train_per_class=FLAGS.train_per_class,
          test_per_class=FLAGS.test_per_class, seed=FLAGS.seed))
  print(f"recorded data in {FLAGS.output_dir}: {counts['train']} train "
        f"clips ({counts['wrong_train_labels']} wrong labels), "
        f"{counts['test']} test clips, {counts['classes']} classes")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
