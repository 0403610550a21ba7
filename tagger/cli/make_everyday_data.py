r"""Writes the everyday-sound cross-source evaluation set (Kaggle layout)
from the recorded sound effects of Debian's game packages
(tagger/datasets/everyday_data.py).

  sudo apt-get install -y --no-install-recommends 0ad-data btanks-data \
      chromium-bsu-data cube2-data endless-sky-data freeciv-data \
      freedroid-data freeorion-data hedgewars-data lincity-ng-data \
      megaglest-data nexuiz-data openarena-data pingus-data \
      scorched3d-data supertux-data supertuxkart-data torcs-data \
      trigger-rally-data tuxpaint-stamps-default warmux-data \
      warzone2100-data wesnoth-1.16-data widelands-data
  python -m tools.make_everyday_data --output_dir=everyday_data

Each game folder is a source; whole sources are heard only in the test
split (chosen by --seed, or --test_only_sources), and sources.csv lets
tools/benchmark_quality report the same-source and cross-source groups.
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.datasets import everyday_data

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", "everyday_data", "Where the set goes.")
flags.DEFINE_list("roots", list(everyday_data.DEFAULT_ROOTS),
                  "Folders to scan: ROOT/* makes each folder under ROOT a "
                  "source, ROOT alone is one source.")
flags.DEFINE_integer("per_source_cap",
                     everyday_data.EverydaySpec.per_source_cap,
                     "Clips of one class from one source at most.")
flags.DEFINE_float("same_source_test",
                   everyday_data.EverydaySpec.same_source_test,
                   "Share of the training sources' clips of each class that "
                   "go to the test split (the same-source group).")
flags.DEFINE_list("test_only_sources", [], "Sources heard only in the test "
                  "split (default: chosen by --seed so that every class has "
                  "one).")
flags.DEFINE_integer("seed", 0, "Same seed and installed files, same set.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  counts = everyday_data.make_everyday_data(
      FLAGS.output_dir, everyday_data.EverydaySpec(
          roots=tuple(FLAGS.roots), per_source_cap=FLAGS.per_source_cap,
          same_source_test=FLAGS.same_source_test,
          test_only_sources=tuple(FLAGS.test_only_sources), seed=FLAGS.seed))
  print(everyday_data.describe(counts))
  print(f"everyday data in {FLAGS.output_dir}: {counts['train']} train "
        f"clips, {counts['test']} test clips ({counts['cross_source_test']} "
        f"from sources training never hears: "
        f"{', '.join(counts['test_only_sources'])}), {counts['classes']} "
        f"classes from {len(counts['sources'])} sources; "
        f"{counts['duplicates']} near-duplicates removed, "
        f"{counts['skipped']} files skipped (duplicates.csv, skipped.csv)")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
