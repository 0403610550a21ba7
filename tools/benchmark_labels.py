"""Launcher: `python -m tools.benchmark_labels` runs tagger/cli/benchmark_labels.py (installed:
tagger-benchmark-labels)."""

from tagger.cli import benchmark_labels as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
