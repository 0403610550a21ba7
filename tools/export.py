"""Launcher: `python -m tools.export` runs tagger/cli/export.py (installed:
tagger-export)."""

from tagger.cli import export as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
