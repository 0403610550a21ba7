r"""Wrong labels found and learned past: precision and recall of the label
issues that training every fold finds, against known wrong labels, and
the test MAP@3 (every clip, and by source group) without and with
--config.label_issues, beside a run on clean labels; the headline last.

  python -m tools.make_everyday_data --output_dir=everyday_data  # once
  python -m tools.benchmark_labels --data_dir=everyday_data \
      --workdir=runs/labels --pretrained_weights=weights/aisfx-0.1.2-py2.py3-none-any.whl

Variants of the train labels (tagger/lab/labels.py): clean, given (the
set's own wrong labels, where it lists them in wrong_labels.csv, as
tools/make_recorded_data does), and --flips of the unverified rows given
another class. Each noisy variant trains every fold (--num_folds) with
--config, then fold 0 again with --on_label_issue. A re-run in the same
--workdir skips what is done.
"""

from absl import app
from absl import flags

from tagger.cli import define_config_file
from tagger.cli import run_tool
from tagger.lab import labels

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Kaggle-layout set with "
                    "test_labels.csv (and sources.csv, wrong_labels.csv "
                    "where it has them).")
flags.DEFINE_string("workdir", "runs/labels", "Shards and models go here.")
define_config_file("config", "cpu:frozen", "The training config (the "
                   "frozen CNN9 with a logistic-regression head: minutes a "
                   "fold).")
flags.DEFINE_string("pretrained_weights", "", "aisfx's wheel or checkpoint "
                    "(the config's model.backbone_weights).")
flags.DEFINE_list("flips", ["0.1", "0.2", "0.4"], "Shares of the "
                  "unverified rows given a wrong label (empty: none).")
flags.DEFINE_float("unverified", 0.6, "Share of rows marked unverified in a "
                   "set that has none.")
flags.DEFINE_integer("num_folds", 4, "Folds of the train shards.")
flags.DEFINE_enum("on_label_issue", "drop", ["drop", "weight", "relabel"],
                  "What the second training does with the suspected clips.")
flags.DEFINE_integer("seed", 0, "Which rows are flipped, and to what.")
flags.DEFINE_integer("num_workers", 0, "Sharding workers (0: all cores).")
flags.DEFINE_string("features", "reference", "The shards' feature set "
                    "(make_tfrecords --features): aisfx with "
                    "--config=cpu:frozen+native.")
flags.mark_flags_as_required(["data_dir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = FLAGS.config
  if FLAGS.pretrained_weights:
    config.model.backbone_weights = FLAGS.pretrained_weights
  result = labels.run_benchmark(
      FLAGS.data_dir, FLAGS.workdir, config,
      [float(p) for p in FLAGS.flips if p], FLAGS.unverified, FLAGS.num_folds,
      FLAGS.on_label_issue, FLAGS.seed, FLAGS.num_workers, FLAGS.features)
  for row in result["rows"]:
    print(labels.describe_row(row))
  print(f"{result['seconds']:.0f} s in all")
  print(labels.headline(result))


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
