"""Launcher: `python -m tools.benchmark_serving` runs tagger/cli/benchmark_serving.py (installed:
tagger-benchmark-serving)."""

from tagger.cli import benchmark_serving as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
