"""Launcher: `python -m tools.benchmark_quality` runs tagger/cli/benchmark_quality.py (installed:
tagger-benchmark-quality)."""

from tagger.cli import benchmark_quality as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
