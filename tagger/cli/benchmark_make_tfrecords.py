r"""Speed of make_tfrecords: clips/s and real-time factor (last line).

  python -m tools.benchmark_make_tfrecords                # synthetic data
  python -m tools.benchmark_make_tfrecords --csv=train.csv --audio_dir=audio_train
  python -m tools.benchmark_make_tfrecords --runners=local,DirectRunner

The real-time factor is seconds of (untrimmed) audio per second of wall time
for the whole run: decode, trim, log-mel, the 1,133 summary features, PCA,
folds and writing shards. --runners times the local pool and Beam runners
on the same data in one run and says whether their shards are equal.
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.lab import speed_shards

FLAGS = flags.FLAGS
flags.DEFINE_string("csv", "", "Train CSV (default: make synthetic data).")
flags.DEFINE_string("audio_dir", "", "Its audio folder.")
flags.DEFINE_integer("num_workers", 0, "Feature processes (0: all cores).")
flags.DEFINE_integer("per_class", 6, "Synthetic clips per class (41 classes).")
flags.DEFINE_integer("reference_clips", 0, "Also time the straightforward "
                     "librosa summary features on this many clips, 1 core.")
flags.DEFINE_list("runners", ["local"], "local (the process pool) and/or "
                  "Beam runners (DirectRunner: pip install -e '.[beam]').")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  runners = ["" if r == "local" else r for r in FLAGS.runners]
  r = speed_shards.benchmark_make_tfrecords(
      FLAGS.csv, FLAGS.audio_dir, FLAGS.num_workers, FLAGS.per_class,
      FLAGS.reference_clips, runners=runners)
  for name, run in r["runs"].items():
    print(f"{name}: {run['clips']} clips, {run['audio_s'] / 60:.1f} min of "
          f"audio in {run['wall_s']:.1f} s with {run['num_workers']} "
          f"workers: {run['realtime_factor']:.1f}x real time; peak "
          f"resident memory {run['peak_rss_mb']['total']:.0f} MB in all, "
          f"largest worker {run['peak_rss_mb']['largest_worker']:.0f} MB")
  if len(r["runs"]) > 1:
    hashes = {tuple(run["shard_sha256"]) for run in r["runs"].values()}
    print("shards equal across runners" if len(hashes) == 1 else
          "SHARDS DIFFER between runners")
  if "reference_realtime_factor_1core" in r:
    print("reference (straightforward librosa, 1 core): "
          f"{r['reference_realtime_factor_1core']:.1f}x real time")
  others = "".join(f" {name}_realtime_factor={run['realtime_factor']:.1f}"
                   for name, run in list(r["runs"].items())[1:])
  print(f"clips_per_sec={r['clips_per_sec']:.2f} "
        f"realtime_factor={r['realtime_factor']:.1f}{others}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
