"""Launcher: `python -m tools.demo` runs tagger/cli/demo.py (installed:
tagger-demo)."""

from tagger.cli import demo as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
