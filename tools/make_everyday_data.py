"""Launcher: `python -m tools.make_everyday_data` runs tagger/cli/make_everyday_data.py (installed:
tagger-make-everyday-data)."""

from tagger.cli import make_everyday_data as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
