r"""Speed of the training input: examples/s (last line).

  python -m tools.benchmark_pipeline                      # synthetic shards
  python -m tools.benchmark_pipeline --data_dir=tfrecords/train

Measures shards -> pairing -> bucketing -> windows (host, tf.data) and then
crop/pad, shift, flip, erasing and mixup either in a compiled step
(placement 'device'; on this CPU-only machine the "device" is the same CPU)
or in tf.data (placement 'host'), with and without augmentation.

The last line is the default placement ('device') as it runs beside a GPU:
examples/s the host's tf.data work delivers (read, pair, bucket, window),
the device ops being the accelerator's. The device_* lines run the device
ops on this machine's CPU as well (no GPU here), on the same cores as
tf.data; host_* lines run everything in tf.data.
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.lab import speed_input

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "", "Train shards (default: synthetic).")
flags.DEFINE_integer("num_records", 4000, "Synthetic clips to make.")
flags.DEFINE_integer("batch_size", 64, "Global batch.")
flags.DEFINE_integer("warmup", 30, "Batches before timing.")
flags.DEFINE_integer("steps", 200, "Timed batches.")
flags.DEFINE_list("pairings", [], "Also time the host side with each of "
                  "these pairing modes (global, block, independent).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  r = speed_input.benchmark_pipeline(FLAGS.data_dir, FLAGS.num_records,
                                    FLAGS.batch_size, FLAGS.warmup,
                                    FLAGS.steps, pairings=FLAGS.pairings)
  print(f"{r['records']} train records, mean {r['mean_frames']:.0f} frames, "
        f"target lengths in {r['length_range']}")
  print(f"host side of placement 'device' (read, pair, bucket, window): "
        f"{r['host_only_examples_per_sec']:.0f} examples/s, peak RSS "
        f"{r['host_only_peak_rss_mb']:.0f} MB (+{r['host_only_pipeline_mb']:.0f}"
        " MB while the pipeline ran)")
  for mode in FLAGS.pairings:
    print(f"pairing {mode:>11}: {r[f'pairing_{mode}_examples_per_sec']:8.0f} "
          f"examples/s host side, first batch after "
          f"{r[f'pairing_{mode}_first_batch_s']:.1f} s, peak RSS "
          f"{r[f'pairing_{mode}_peak_rss_mb']:.0f} MB")
  for name in ("device_full", "device_no_augment", "host_full",
               "host_no_augment"):
    print(f"{name:>18}: {r[name + '_examples_per_sec']:8.0f} examples/s, "
          f"peak RSS {r[name + '_peak_rss_mb']:.0f} MB")
  print(f"examples_per_sec={r['examples_per_sec']:.0f}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
