"""Launcher: `python -m tools.benchmark_score` runs tagger/cli/benchmark_score.py (installed:
tagger-benchmark-score)."""

from tagger.cli import benchmark_score as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
