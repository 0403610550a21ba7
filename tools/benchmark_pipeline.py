"""Launcher: `python -m tools.benchmark_pipeline` runs tagger/cli/benchmark_pipeline.py (installed:
tagger-benchmark-pipeline)."""

from tagger.cli import benchmark_pipeline as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
