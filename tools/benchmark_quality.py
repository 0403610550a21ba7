r"""Quality on a real-recorded set: the recipe's MAP@3 beside two linear
baselines on the same split, and the wall time (last lines).

  python -m tools.make_recorded_data --output_dir=recorded_data  # once
  python -m tools.benchmark_quality --data_dir=recorded_data \
      --workdir=runs/quality

Shards the set, trains --stage1 then --stage2 (configs; override fields as
--stage1.schedule.cyclic_epochs=20) on --fold, scores the test split with
TTA, and fits logistic regression on the shards' PCA vectors and on log-mel
mean/std statistics (tagger/quality.py). Works on any Kaggle-layout folder
that has test_labels.csv, FSDKaggle2019's multi-label layout included
(train_curated.csv + train_noisy.csv; lwlrap is then the headline). A
re-run in the same --workdir skips what is done.
"""

import os

from absl import app
from absl import flags
from ml_collections import config_flags

from tagger import quality
from tools import run_tool

FLAGS = flags.FLAGS
CPU_CONFIG = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs", "cpu.py")
flags.DEFINE_string("data_dir", "recorded_data", "Kaggle-layout set with "
                    "test_labels.csv (tools.make_recorded_data).")
flags.DEFINE_string("workdir", "runs/quality", "Shards and models go here.")
config_flags.DEFINE_config_file("stage1", f"{CPU_CONFIG}:stage1",
                                "Stage-1 config.", lock_config=True)
config_flags.DEFINE_config_file("stage2", f"{CPU_CONFIG}:stage2",
                                "Stage-2 config.",
                                lock_config=True)
flags.DEFINE_list("stages", ["1", "2"], "Which stages to train: 1,2 or 1 "
                  "or 2 (stage 2 alone starts from "
                  "--stage2.model.init_from).")
flags.DEFINE_integer("fold", 0, "The validated fold.")
flags.DEFINE_integer("num_workers", 0, "Sharding workers (0: all cores).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  chosen = {"1": FLAGS.stage1, "2": FLAGS.stage2}
  unknown = sorted(set(FLAGS.stages) - set(chosen))
  if unknown or not FLAGS.stages:
    raise app.UsageError(f"--stages: 1, 2 or 1,2 (got {FLAGS.stages})")
  configs = [chosen[s] for s in sorted(set(FLAGS.stages))]
  r = quality.run_benchmark(FLAGS.data_dir, FLAGS.workdir, configs,
                            fold=FLAGS.fold, num_workers=FLAGS.num_workers)
  b = r["baselines"]
  # FSDKaggle2019 layout: lwlrap first, then MAP@3 of single-label clips.
  multi = "lwlrap" in b["pca"]
  first, second = ("lwlrap", "map3") if multi else ("map3", "accuracy")
  print(f"{'what':<36} " + ("lwlrap  MAP@3 (single-label clips)" if multi
                            else "MAP@3   top-1"))
  rows = [(f"recipe {s['name']}", s, f"  ({s['train_seconds'] / 60:.1f} "
           "min)") for s in r["stages"]]
  rows += [("logistic regression, PCA vectors", b["pca"], ""),
           ("logistic regression, log-mel stats", b["mel_stats"], "")]
  for name, figures, note in rows:
    print(f"{name:<36} {figures[first]:.4f}  {figures[second]:.4f}{note}")
  best = max(b["pca"][first], b["mel_stats"][first])
  final = r["stages"][-1][first]
  print(f"wall time {r['seconds'] / 60:.1f} min; recipe - best linear = "
        f"{final - best:+.4f}")
  name = "lwlrap" if multi else "map3"
  print(f"recipe_{name}={final:.4f} best_linear_{name}={best:.4f} "
        f"minutes={r['seconds'] / 60:.1f}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
