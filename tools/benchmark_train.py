"""Launcher: `python -m tools.benchmark_train` runs tagger/cli/benchmark_train.py (installed:
tagger-benchmark-train)."""

from tagger.cli import benchmark_train as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
