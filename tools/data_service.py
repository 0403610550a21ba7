"""Launcher: `python -m tools.data_service` runs tagger/cli/data_service.py (installed:
tagger-data-service)."""

from tagger.cli import data_service as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
