"""Command-line tools: each parses absl flags and calls one tagger function."""

import os
import sys

from absl import app
from absl import logging


def run_tool(main) -> None:
  """app.run(main); an error the user can fix (tagger.errors.UserError)
  ends the tool with its message on one line and exit status 1."""
  from tagger import errors  # pylint: disable=g-import-not-at-top

  def guarded(argv):
    try:
      return main(argv)
    except errors.UserError as e:
      logging.error("%s", e)
      name = os.path.basename(sys.argv[0]).replace(".py", "")
      raise SystemExit(f"{name}: {e}") from None

  app.run(guarded)
