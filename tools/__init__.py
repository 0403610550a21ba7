"""From a checkout, `python -m tools.<name>` runs tagger/cli/<name>.py (the
installed command is tagger-<name>). Only launchers live here: the package
installs `tagger` alone."""
