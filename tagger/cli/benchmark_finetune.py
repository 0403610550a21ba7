r"""Fine-tuning a trained tagger on new labels against training from
scratch: the demo's classes in two halves; stage 1 on half A, then N
epochs on half B from scratch (configs/demo.py:stage1) and N epochs
fine-tuned from the A model (backbone copied, new head, backbone frozen
for the first epoch, the LR a tenth of the config's), same seed. Prints
the B validation MAP@3 of both last.

  python -m tools.benchmark_finetune --workdir=runs/finetune --epochs=4

A re-run in the same --workdir reuses the data, shards and A model.
"""

from absl import app
from absl import flags

from tagger import settings
from tagger.cli import run_tool
from tagger.lab import quality

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/finetune", "Data, shards and models.")
flags.DEFINE_integer("epochs", 4, "Epochs on the new labels (both runs).")
flags.DEFINE_integer("freeze_epochs", 1, "Fine-tuning: epochs with the "
                     "stem and backbone frozen.")
flags.DEFINE_float("lr_scale", 0.1, "Fine-tuning: the cyclic LR bounds "
                   "times this.")
flags.DEFINE_integer("num_workers", 0, "Sharding workers (0: all cores).")


def demo_stage1(_):
  return settings.load_config("demo:stage1")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  r = quality.fine_tune_benchmark(
      FLAGS.workdir, demo_stage1, epochs=FLAGS.epochs,
      freeze_epochs=FLAGS.freeze_epochs, lr_scale=FLAGS.lr_scale,
      num_workers=FLAGS.num_workers)
  print(f"classes: {r['classes']['a']} (source, A) -> {r['classes']['b']} "
        f"(new, B); {FLAGS.epochs} epochs on B")
  for name, run in r["runs"].items():
    print(f"{name:<10} val MAP@3 last epoch {run['last_val_map3']:.4f}, "
          f"best {run['best_val_map3']:.4f}, val loss "
          f"{run['last_val_loss']:.4f} ({run['seconds']:.0f} s)")
  print(f"fine_tune_map3={r['runs']['fine_tune']['last_val_map3']:.4f} "
        f"scratch_map3={r['runs']['scratch']['last_val_map3']:.4f} "
        f"epochs={FLAGS.epochs}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
