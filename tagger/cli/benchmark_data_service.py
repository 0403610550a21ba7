r"""Training input through a tf.data service: examples/s (last line).

  python -m tools.benchmark_data_service                   # synthetic shards
  python -m tools.benchmark_data_service --data_dir=tfrecords/train

One run, same shards: the host side (read, pair, bucket, window; placement
'device') read locally, then through a dispatcher and 1, 2, ... workers,
each a process of its own on loopback. On one machine the workers share
its cores with each other and with the reader, so this measures the
service's overhead and wiring; the speed-up needs workers on other hosts.
The last line is the largest worker count.
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
flags.DEFINE_list("workers", ["1", "2"], "Worker counts to time.")
flags.DEFINE_enum("placement", "device", ["device", "host"], "Where the "
                  "augmentation runs: device (the default: the service "
                  "ships windows) or host (the service ships augmented "
                  "model inputs).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  counts = [int(w) for w in FLAGS.workers]
  r = speed_input.benchmark_data_service(
      FLAGS.data_dir, FLAGS.num_records, FLAGS.batch_size, FLAGS.warmup,
      FLAGS.steps, worker_counts=counts, placement=FLAGS.placement)
  print(f"{r['records']} train records, {r['cores']} cores, batch "
        f"{FLAGS.batch_size}, placement {FLAGS.placement}")
  def line(name, key):
    print(f"{name}: {r[key + '_examples_per_sec']:6.0f} examples/s, trainer "
          f"process CPU {r[key + '_trainer_cpu_us_per_example']:.0f} "
          "us/example")
  line("local input               ", "local")
  for count in counts:
    line(f"tf.data service, {count} worker(s)", f"workers_{count}")
  last = counts[-1]
  print(f"examples_per_sec_{last}_workers="
        f"{r[f'workers_{last}_examples_per_sec']:.0f}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
