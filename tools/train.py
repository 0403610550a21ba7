"""Launcher: `python -m tools.train` runs tagger/cli/train.py (installed:
tagger-train)."""

from tagger.cli import train as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
