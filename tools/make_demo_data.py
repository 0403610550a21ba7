"""Launcher: `python -m tools.make_demo_data` runs tagger/cli/make_demo_data.py (installed:
tagger-make-demo-data)."""

from tagger.cli import make_demo_data as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
