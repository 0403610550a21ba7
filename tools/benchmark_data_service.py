"""Launcher: `python -m tools.benchmark_data_service` runs tagger/cli/benchmark_data_service.py (installed:
tagger-benchmark-data-service)."""

from tagger.cli import benchmark_data_service as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
