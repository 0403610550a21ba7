"""Launcher: `python -m tools.doctor` runs tagger/cli/doctor.py (installed:
tagger-doctor)."""

from tagger.cli import doctor as tool

run = tool.run

if __name__ == "__main__":
  __doc__ = tool.__doc__  # --help shows the tool's own usage
  tool.run()
