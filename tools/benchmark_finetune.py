"""Launcher: `python -m tools.benchmark_finetune` runs tagger/cli/benchmark_finetune.py (installed:
tagger-benchmark-finetune)."""

from tagger.cli import benchmark_finetune as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
