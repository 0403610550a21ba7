"""Command-line tools: each parses absl flags and calls one tagger function.

Installed as console scripts (tagger-<name>); from a checkout also as
`python -m tools.<name>` (tools/ holds one-line launchers, so that no
generic top-level `tools` package is installed).
"""

import os
import sys
import warnings

from absl import app
from absl import flags
from absl import logging

import tagger


def _verbosity(argv) -> int:
  """The --verbosity (-v) the command line asks for (absl's; 0 if none)."""
  value = "0"
  for i, arg in enumerate(argv[1:], start=1):
    name, eq, rest = arg.partition("=")
    if name in ("--verbosity", "-verbosity", "--v", "-v"):
      value = rest if eq else (argv[i + 1] if i + 1 < len(argv) else "0")
  try:
    return int(value)
  except ValueError:
    return 0


def quiet_start() -> None:
  """A tool's screen: its progress bars, stage lines and result. Below
  --verbosity=1, TensorFlow's C++ start-up lines (its CUDA factories'
  "Unable to register" errors on any machine, oneDNN's notes) and
  Python's deprecation warnings stay off it; set before TensorFlow loads,
  which reads TF_CPP_MIN_LOG_LEVEL once."""
  if _verbosity(sys.argv) >= 1:
    if tagger.TF_LOG_LEVEL_FROM_USER is None:
      os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
    return
  if tagger.TF_LOG_LEVEL_FROM_USER is None:
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
  warnings.filterwarnings("ignore", category=DeprecationWarning)
  warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
  # TensorFlow's own deprecation notes go to its Python logger.
  import logging as std_logging  # pylint: disable=g-import-not-at-top
  std_logging.getLogger("tensorflow").setLevel(std_logging.ERROR)


quiet_start()


def define_config_file(name: str, default, help_string: str):
  """ml_collections' config-file flag (locked; --<name>.x=y overrides)
  whose value is a path or a shipped config by name ('cpu:stage1';
  settings.config_file)."""
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  from tagger import settings  # pylint: disable=g-import-not-at-top
  holder = config_flags.DEFINE_config_file(
      name, default and settings.config_file(default), help_string,
      lock_config=True)
  flags.FLAGS[name].parser = _ShippedConfigs(flags.FLAGS[name].parser)
  return holder


class _ShippedConfigs(flags.ArgumentParser):
  """A config file flag's parser that resolves a shipped config's name
  first (settings.config_file), then parses as before."""

  def __init__(self, parser):
    self._parser = parser

  def parse(self, argument):
    from tagger import settings  # pylint: disable=g-import-not-at-top
    return self._parser.parse(settings.config_file(argument))

  def flag_type(self):
    return self._parser.flag_type()


def run_tool(main) -> None:
  """app.run(main); an error the user can fix (tagger.errors.UserError)
  ends the tool with its message on one line and exit status 1."""
  from tagger import errors  # pylint: disable=g-import-not-at-top

  def guarded(argv):
    try:
      result = main(argv)
    except errors.UserError as e:
      logging.error("%s", e)
      name = os.path.basename(sys.argv[0]).replace(".py", "")
      _exit(f"{name}: {e}", getattr(e, "exit_status", 1))
    except (OSError, *_file_errors()) as e:
      # A path the user gave that cannot be read or written, or a full
      # disk: one line (the traceback only at --verbosity=1).
      logging.debug("file error", exc_info=True)
      name = os.path.basename(sys.argv[0]).replace(".py", "")
      why = (getattr(e, "message", None) or str(e)).strip().splitlines()
      why = why[0] if why else type(e).__name__
      full = _disk_full(e)
      if full:
        why += (" (the disk is full or a file size limit was reached: free "
                "space and run the same command again; finished work is "
                "kept)")
      # A full disk can leave an HDF5 file of a failed Keras save open,
      # whose flush at interpreter exit kills the process (SIGSEGV): skip
      # the exit's clean-up (every write is atomic: nothing is lost).
      _exit(f"{name}: {why}", 1, hard=full)
    _exit("", 0)
    return result

  app.run(guarded, flags_parser=_parse_flags)


def _file_errors() -> tuple:
  """TensorFlow's errors for paths that are missing, not directories or
  not permitted (tf.io.gfile raises these, not OSError)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return (tf.errors.NotFoundError, tf.errors.PermissionDeniedError,
          tf.errors.FailedPreconditionError, tf.errors.AlreadyExistsError,
          tf.errors.ResourceExhaustedError, tf.errors.OutOfRangeError)


def _disk_full(error: Exception) -> bool:
  """ENOSPC / EFBIG, as Python (OSError) or TensorFlow's file systems
  (RESOURCE_EXHAUSTED / OUT_OF_RANGE with the system's words) report it."""
  import errno  # pylint: disable=g-import-not-at-top
  if isinstance(error, OSError):
    return error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
  text = str(error).lower()
  return any(words in text for words in ("no space left", "file too large",
                                         "quota exceeded"))


def _exit(message: str, status: int, hard: bool = False) -> None:
  """SystemExit, or, once a tensorflow-io file system (s3://) was used
  (or with hard), os._exit after flushing: its S3 client aborts at
  interpreter exit (tensorflow/io#2039), which would turn a finished run
  into exit 134."""
  from tagger import fileio  # pylint: disable=g-import-not-at-top
  if not hard and not fileio.tfio_filesystem_used():
    if message and status != 1:   # SystemExit(message) exits with 1
      print(message, file=sys.stderr)
      raise SystemExit(status) from None
    if message or status:
      raise SystemExit(message or status) from None
    return
  if message:
    print(message, file=sys.stderr)
  sys.stdout.flush()
  sys.stderr.flush()
  logging.flush()
  os._exit(status)  # pylint: disable=protected-access


def _parse_flags(argv):
  """absl's parser; a bad --config.* override (a mistyped key, a value of
  the wrong type) ends the tool with one line instead of a traceback."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # pylint: disable=broad-except
    # Whatever a flag or a config file's get_config raises while parsing.
    name = os.path.basename(sys.argv[0]).replace(".py", "")
    overrides = [a.split("=")[0] for a in argv[1:] if a.startswith(
        "--config.")]
    why = str(e)
    if why[:1] in "'\"" and why[-1:] == why[:1]:  # a KeyError's repr
      why = why[1:-1].replace("\\n", "\n").replace("\\'", "'")
    if "Traceback (most recent call last)" in why:  # a config file raised
      head, _, tail = why.partition("Traceback (most recent call last)")
      why = head + tail.strip().splitlines()[-1]
    why = " ".join(why.split())
    where = ", ".join(overrides) if isinstance(e, AttributeError) and \
        overrides else "flags"
    raise SystemExit(f"{name}: bad {where}: {why} (--helpshort lists the "
                     "flags)") from None
