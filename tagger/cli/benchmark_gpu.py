r"""The GPU check: the figures that decide a GPU run, in minutes.

  python -m tools.benchmark_gpu                      # on the GPU machine
  python -m tools.benchmark_gpu --batch_size=4 --lengths=64 --steps=2 \
      --num_records=64 --pipeline_steps=10            # tiny, on a CPU

Training-step examples/s of stage 1 and stage 2 at the reference's batch
(64) and lengths (263-763 frames), with the full augmentation on the
device, on synthetic shards; the host input pipeline's examples/s on the
same machine; and host / step: above 1 the host keeps up. The last line
holds the figures.
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.lab import speed_train

FLAGS = flags.FLAGS
flags.DEFINE_integer("batch_size", 64, "Global batch.")
flags.DEFINE_list("lengths", ["263", "513", "763"], "Input frames.")
flags.DEFINE_integer("steps", 20, "Timed steps per length.")
flags.DEFINE_integer("warmup", 3, "Steps before timing (tracing).")
flags.DEFINE_string("precision", "auto", "auto|float32|mixed_float16|"
                    "mixed_bfloat16.")
flags.DEFINE_string("strategy", "auto", "auto|mirrored|one_device.")
flags.DEFINE_bool("jit_compile", False, "XLA for the training step.")
flags.DEFINE_integer("num_records", 2000, "Synthetic clips.")
flags.DEFINE_integer("pipeline_steps", 200, "Timed host batches.")
flags.DEFINE_string("backbone", "mobilenet_v2", "The network's backbone "
                    "(model.BACKBONES; one on the reference's features).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    lengths = [int(v) for v in FLAGS.lengths]
  except ValueError as e:
    raise app.UsageError(f"--lengths: whole numbers of frames ({e})")
  if min(lengths) < 32 or FLAGS.batch_size < 1 or FLAGS.steps < 1:
    raise app.UsageError("--lengths >= 32, --batch_size and --steps >= 1")
  r = speed_train.benchmark_gpu(speed_train.GpuBenchmark(
      FLAGS.batch_size, tuple(lengths), FLAGS.steps, FLAGS.warmup,
      FLAGS.precision, FLAGS.strategy, FLAGS.jit_compile, FLAGS.num_records,
      FLAGS.pipeline_steps, FLAGS.backbone))
  print(f"{r['backbone']}, {r['strategy']}, {r['precision']} "
        f"({r['precision_reason']}), "
        f"XLA {'on' if r['jit_compile'] else 'off'}, batch "
        f"{r['batch_size']}, lengths {r['lengths']}")
  for stage in (1, 2):
    rates = ", ".join(f"{v:.1f}" for v in r[f"stage{stage}_examples_per_sec"])
    print(f"stage {stage} step: {rates} examples/s by length (mean "
          f"{r[f'stage{stage}_mean_examples_per_sec']:.1f})")
  print(f"host input: {r['host_examples_per_sec']:.0f} examples/s")
  print(f"stage1_examples_per_sec={r['stage1_mean_examples_per_sec']:.1f} "
        f"stage2_examples_per_sec={r['stage2_mean_examples_per_sec']:.1f} "
        f"host_examples_per_sec={r['host_examples_per_sec']:.0f} "
        f"host_over_step={r['host_over_step']:.2f}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
