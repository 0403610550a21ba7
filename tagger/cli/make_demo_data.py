r"""Writes the synthetic Kaggle-layout demo dataset.

  python -m tools.make_demo_data --output_dir=demo_data --seed=0
  python -m tools.make_demo_data --multi_label --output_dir=demo_data_2019

--multi_label writes FSDKaggle2019's layout instead: train_curated.csv and
train_noisy.csv (fname,labels), some clips mixing two classes with both
labels, some noisy labels wrong; test/ with sample_submission.csv (a column
per class) and test_labels.csv (fname,labels).
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.datasets import demo_data

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "demo_data", "Where the dataset goes.")
flags.DEFINE_integer("train_per_class", 16, "Train clips per class.")
flags.DEFINE_integer("test_per_class", 4, "Test clips per class.")
flags.DEFINE_integer("seed", 0, "Same seed, same files.")
flags.DEFINE_bool("multi_label", False, "FSDKaggle2019 layout: curated + "
                  "noisy, several labels per clip.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if FLAGS.multi_label:
    counts = demo_data.make_multilabel_demo_data(
        FLAGS.output_dir, demo_data.MultiLabelSpec(seed=FLAGS.seed))
    print(f"multi-label demo data in {FLAGS.output_dir}: " + ", ".join(
        f"{v} {k}" for k, v in counts.items()) + " clips")
    return
  counts = demo_data.make_demo_data(FLAGS.output_dir, demo_data.DemoSpec(
      train_per_class=FLAGS.train_per_class,
      test_per_class=FLAGS.test_per_class, seed=FLAGS.seed))
  print(f"demo data in {FLAGS.output_dir}: {counts['train']} train clips, "
        f"{counts['test']} test clips, "
        f"{len(demo_data.FSD_KAGGLE_2018_LABELS)} classes")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
