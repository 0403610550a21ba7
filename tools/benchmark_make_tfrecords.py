"""Launcher: `python -m tools.benchmark_make_tfrecords` runs tagger/cli/benchmark_make_tfrecords.py (installed:
tagger-benchmark-make-tfrecords)."""

from tagger.cli import benchmark_make_tfrecords as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
