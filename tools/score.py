"""Launcher: `python -m tools.score` runs tagger/cli/score.py (installed:
tagger-score)."""

from tagger.cli import score as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
