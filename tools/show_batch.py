"""Launcher: `python -m tools.show_batch` runs tagger/cli/show_batch.py (installed:
tagger-show-batch)."""

from tagger.cli import show_batch as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
