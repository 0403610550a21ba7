"""Launcher: `python -m tools.make_recorded_data` runs tagger/cli/make_recorded_data.py (installed:
tagger-make-recorded-data)."""

from tagger.cli import make_recorded_data as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
