"""Launcher: `python -m tools.make_tfrecords` runs tagger/cli/make_tfrecords.py (installed:
tagger-make-tfrecords)."""

from tagger.cli import make_tfrecords as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
