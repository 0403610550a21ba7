r"""Writes the real-recorded evaluation set (Kaggle layout) from Debian's
General MIDI soundfonts played by fluidsynth (tagger/recorded_data.py).

  sudo apt-get install fluidsynth fluid-soundfont-gm timgm6mb-soundfont \
      musescore-general-soundfont-small
  python -m tools.make_recorded_data --output_dir=recorded_data

The cross-source set (train on three soundfonts, test on them and on
Freepats, which training never hears; needs also: apt-get install timidity
freepats):

  python -m tools.make_recorded_data --output_dir=cross_source_data \
      --sources=fluidr3,timgm6mb,musescore,freepats \
      --test_only_sources=freepats
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.datasets import instruments
from tagger.datasets import recorded_data

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "recorded_data", "Where the set goes.")
flags.DEFINE_integer("train_per_class", 25, "Train clips per class.")
flags.DEFINE_integer("test_per_class", 12, "Test clips per class.")
flags.DEFINE_integer("seed", 0, "Same seed, same files.")
flags.DEFINE_list("sources", list(instruments.DEFAULT_SOURCES),
                  f"Recording sources, of {sorted(instruments.SOURCES)}.")
flags.DEFINE_list("test_only_sources", [], "Sources heard only in the test "
                  "split (cross-source evaluation; the test split then "
                  "holds --test_per_class clips of each class from both "
                  "sides).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  counts = recorded_data.make_recorded_data(
      FLAGS.output_dir, recorded_data.RecordedSpec(
          train_per_class=FLAGS.train_per_class,
          test_per_class=FLAGS.test_per_class, seed=FLAGS.seed,
          sources=tuple(FLAGS.sources),
          test_only_sources=tuple(FLAGS.test_only_sources)))
  print(f"recorded data in {FLAGS.output_dir}: {counts['train']} train "
        f"clips ({counts['wrong_train_labels']} wrong labels), "
        f"{counts['test']} test clips ({counts['cross_source_test']} from "
        f"sources training never hears), {counts['classes']} classes")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
