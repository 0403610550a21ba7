r"""Trains a tagger on TFRecord shards (one fold, or every fold in turn).

  python -m tools.train --config=configs/stage1_mel.py \
      --data_dir=tfrecords/train --model_dir=runs/stage1/fold0 --config.fold=0

Re-running the same command after a crash or kill resumes from the last
finished epoch. Strategy: --strategy=auto|mirrored|multi_worker|one_device
(multi_worker reads TF_CONFIG); precision: --precision=auto|float32|
mixed_float16|mixed_bfloat16. Outputs in --model_dir: best.weights.h5,
config.json, history.csv, summary.json, confusion_matrix.png, tensorboard/.

--config.fold=all trains every fold in turn into --model_dir/fold{k}, then
scores each training clip with the fold model that never trained on it
(out_of_fold.npz, TTA as tools/score) and lists the clips whose label looks
wrong (label_issues.csv, worst first); --config.label_issues=<that file>
drops, weights or relabels them in a next training.

A recipe config (configs/cpu.py:new_audio; tagger/recipe.py) trains its
members in turn into --model_dir/<member>, one model dir that tools/score,
tools/export and tagger.api take whole; the same command resumes at the
member where it stopped.
"""

from absl import app
from absl import flags

from tagger import distribute
from tagger import recipe
from tagger.cli import define_config_file
from tagger.cli import run_tool
from tagger.train import trainer

FLAGS = flags.FLAGS
define_config_file("config", None, "Training config: a file "
                   "(configs/cpu.py:stage1) or a shipped one by name "
                   "(cpu:stage1).")
flags.DEFINE_string("data_dir", "tfrecords/train", "Train shards.")
flags.DEFINE_string("model_dir", None, "Where the run's outputs go.")
flags.DEFINE_string("strategy", "", "Overrides config.strategy.")
flags.DEFINE_string("precision", "", "Overrides config.precision.")
flags.DEFINE_integer("cpu_replicas", 0, "Split the CPU into this many "
                     "logical devices (with --strategy=mirrored: several "
                     "replicas without a GPU, for tests and debugging).")
flags.mark_flags_as_required(["config", "model_dir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  distribute.split_cpu(FLAGS.cpu_replicas)
  strategy = trainer.setup(FLAGS.config, FLAGS.strategy, FLAGS.precision)
  summary = recipe.train_command(FLAGS.config, FLAGS.data_dir,
                                 FLAGS.model_dir, strategy)
  print(trainer.describe_summary(summary))
  if str(FLAGS.config.get("fold", "0")) == "all":
    print(recipe.describe_label_issues(FLAGS.model_dir))


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
