r"""Training speed of the stage-2 model: examples/s (last line).

  python -m tools.benchmark_train                 # synthetic shards, L=512
  python -m tools.benchmark_train --data_dir=tfrecords/train --length=512

Times the compiled replica step (forward, backward, Adam) fed by the real
input pipeline, with the device-side augmentation in the step and without it.
The last line is with augmentation.
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.lab import speed_train

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "", "Train shards (default: synthetic).")
flags.DEFINE_integer("batch_size", 32, "Global batch.")
flags.DEFINE_integer("length", 512, "Input frames.")
flags.DEFINE_integer("warmup", 3, "Steps before timing.")
flags.DEFINE_integer("steps", 15, "Timed steps.")
flags.DEFINE_string("strategy", "auto", "auto|mirrored|one_device.")
flags.DEFINE_string("precision", "auto", "auto|float32|mixed_float16|...")
flags.DEFINE_bool("jit_compile", False, "XLA for the training step.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  r = speed_train.benchmark_train(FLAGS.data_dir, batch_size=FLAGS.batch_size,
                                 length=FLAGS.length, warmup=FLAGS.warmup,
                                 steps=FLAGS.steps,
                                 strategy_name=FLAGS.strategy,
                                 precision=FLAGS.precision,
                                 jit_compile=FLAGS.jit_compile)
  print(f"stage-2 model, length {r['length']}, batch {r['batch_size']}, "
        f"{r['precision']}, {r['strategy']}, XLA "
        f"{'on' if r['jit_compile'] else 'off'}")
  for name in ("with_augmentation", "without_augmentation"):
    print(f"{name}: {r[name + '_examples_per_sec']:.1f} examples/s "
          f"({r[name + '_traces']} trace(s) of the step)")
  print(f"examples_per_sec={r['examples_per_sec']:.1f}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
