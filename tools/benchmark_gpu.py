"""Launcher: `python -m tools.benchmark_gpu` runs tagger/cli/benchmark_gpu.py (installed:
tagger-benchmark-gpu)."""

from tagger.cli import benchmark_gpu as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
