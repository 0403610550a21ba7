r"""Runs the whole demo offline: demo data, shards, training, TTA scoring.

  python -m tools.demo --workdir=runs/demo

Prints MAP@3 on the demo test split last and writes runs/demo/submission.csv.

  python -m tools.demo --multi_label --workdir=runs/demo2019

does the same with FSDKaggle2019's layout (curated + noisy, multi-label)
and prints lwlrap last.
Re-running resumes where a killed run stopped.
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.lab import demo

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/demo", "Where data, shards and runs go.")
flags.DEFINE_integer("num_workers", 0, "Feature processes (0: all cores).")
flags.DEFINE_bool("multi_label", False, "The FSDKaggle2019-layout variant: "
                  "curated + noisy CSVs, several labels per clip, lwlrap "
                  "(use another --workdir, e.g. runs/demo2019).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  demo.run_demo(FLAGS.workdir, num_workers=FLAGS.num_workers,
                multi_label=FLAGS.multi_label)


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
