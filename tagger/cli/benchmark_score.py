r"""Speed of TTA scoring: clips/s and TTA efficiency (last line).

  python -m tools.benchmark_score                  # synthetic clips, model
  python -m tools.benchmark_score --data_dir=tfrecords/test \
      --model_dirs='runs/stage2/fold*'

TTA efficiency = the bare model's time for the same number of forward
examples in plain large batches / the scorer's time. 1.0 means the scorer
adds nothing over the model; the target is >= 0.9.
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.lab import speed_infer

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "", "Test shards (default: synthetic).")
flags.DEFINE_string("model_dirs", "", "Model dirs (default: one untrained "
                    "stage-2 model).")
flags.DEFINE_integer("num_clips", 48, "Synthetic clips.")
flags.DEFINE_integer("tries", 5, "Crops per clip and length.")
flags.DEFINE_integer("batch_size", 240, "Model batch.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  r = speed_infer.benchmark_score(FLAGS.data_dir, FLAGS.model_dirs,
                                 FLAGS.num_clips, FLAGS.tries,
                                 FLAGS.batch_size)
  print(f"{r['clips']} clips x {r['models']} model(s) x "
        f"{len(r['lengths'])} lengths x {r['tries']} tries = "
        f"{r['forward_examples']} forward examples")
  print(f"scorer: {r['scorer_s']:.1f} s ({r['clips_per_sec']:.2f} clips/s, "
        f"{r['forward_examples_per_sec']:.0f} examples/s); bare model: "
        f"{r['bare_model_s']:.1f} s")
  print(f"tta_efficiency={r['tta_efficiency']:.3f}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
