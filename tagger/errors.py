"""The base of every error a user can fix (bad input, settings, paths).

Tools print these as one line and exit 1 (tagger.cli.run_tool); anything else is
a bug and keeps its traceback.
"""


class UserError(ValueError):
  """Something in the user's data or settings; the message says what."""
