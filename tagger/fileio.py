"""File access through tf.io.gfile, so s3://, gs://, hdfs:// paths work.

Every path to shards, manifests and model dirs goes through here. gs:// is
built into TensorFlow; s3://, hdfs://, az:// and http(s):// come from
tensorflow-io, whose file systems register only once it is imported: the
first path with such a scheme imports it here. Writes are
atomic: data goes to a temporary name beside the target, then is renamed, so
a killed process never leaves a partial file under the final name.
"""

import io
import json
import os
import uuid
from typing import Any, Optional

import numpy as np
import tensorflow as tf

from tagger import errors

TMP_MARK = ".tmp-"
TFIO_SCHEMES = ("s3", "hdfs", "viewfs", "har", "az", "http", "https")
_tfio_used = []


def register_filesystem(path: str) -> str:
  """Imports tensorflow_io when a path needs one of its file systems;
  returns the path."""
  scheme = path.split("://", 1)[0] if "://" in path else ""
  if scheme in TFIO_SCHEMES and not _tfio_used:
    import tensorflow_io  # pylint: disable=g-import-not-at-top,unused-import
    _tfio_used.append(scheme)
  return path


def tfio_filesystem_used() -> bool:
  """True once a tensorflow-io file system served a path. Its S3 client
  aborts the process at interpreter exit (tensorflow/io#2039: 'pure
  virtual method called', exit 134), so tools end such runs with
  os._exit after everything is written (tools.run_tool)."""
  return bool(_tfio_used)


def join(*parts: str) -> str:
  register_filesystem(parts[0])
  return os.path.join(*parts)  # tf.io.gfile paths use '/' on every scheme


def exists(path: str) -> bool:
  return tf.io.gfile.exists(register_filesystem(path))


def makedirs(path: str) -> None:
  tf.io.gfile.makedirs(register_filesystem(path))


def listdir(path: str) -> list:
  return sorted(tf.io.gfile.listdir(path)) if exists(path) else []


def read_bytes(path: str) -> bytes:
  with tf.io.gfile.GFile(register_filesystem(path), "rb") as f:
    return f.read()


def read_text(path: str) -> str:
  return read_bytes(path).decode("utf-8")


def temp_name(path: str) -> str:
  return f"{path}{TMP_MARK}{uuid.uuid4().hex[:8]}"


def atomic_write_bytes(path: str, data: bytes) -> None:
  """data at path, whole or not at all: written to a temporary name and
  renamed; a failed write (a full disk) leaves no temporary file."""
  tmp = temp_name(register_filesystem(path))
  try:
    with tf.io.gfile.GFile(tmp, "wb") as f:
      f.write(data)
    tf.io.gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    remove_quietly(tmp)
    raise


def remove_quietly(path: str) -> None:
  """Removes a file if it is there; what cannot be removed stays."""
  try:
    if tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
  except (tf.errors.OpError, OSError):
    pass


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


_FORMULA_STARTS = ("=", "+", "@", "\t", "\r")


def spreadsheet_safe(cell: str) -> str:
  """A CSV cell as spreadsheets show it, never run it: a cell that begins
  as a formula would (=, +, @, tab, CR; or - with a call, pipe or operator
  after it: '-2+3', '-cmd|...') gets a leading apostrophe (OWASP's advice
  on CSV injection). Other cells, Kaggle's hex names among them, are
  unchanged."""
  if cell.startswith(_FORMULA_STARTS) or (
      cell.startswith("-") and any(c in cell[1:] for c in "(|!=+@")):
    return "'" + cell
  return cell


def write_json(path: str, value: Any) -> None:
  atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


class DamagedFileError(errors.UserError):
  """A file tagger wrote that no longer reads as it wrote it."""


def read_json(path: str) -> Any:
  """The JSON in path; a file that is not valid JSON (damaged, cut short,
  edited by hand) is one line naming it."""
  data = read_bytes(path)
  try:
    return json.loads(data.decode("utf-8"))
  except ValueError as e:   # JSONDecodeError
    where = (f" at line {e.lineno} column {e.colno}"
             if isinstance(e, json.JSONDecodeError) else "")
    raise DamagedFileError(
        f"{path}: not valid JSON ({getattr(e, 'msg', e)}{where}); the file "
        "is damaged: restore it or re-make it with the tool that wrote "
        "it") from e


def write_npz(path: str, **arrays: np.ndarray) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  atomic_write_bytes(path, buffer.getvalue())


def read_npz(path: str) -> dict:
  with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def sha256(path: str) -> str:
  """The hex sha256 of a file, read in 4 MB blocks."""
  import hashlib  # pylint: disable=g-import-not-at-top
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    while True:
      block = f.read(1 << 22)
      if not block:
        break
      digest.update(block)
  return digest.hexdigest()


def remove_temp_files(directory: str) -> int:
  """Deletes leftovers of interrupted atomic writes; returns how many."""
  count = 0
  for name in listdir(directory):
    if TMP_MARK in name:
      tf.io.gfile.remove(join(directory, name))
      count += 1
  return count


def remove_tree(path: str) -> None:
  if exists(path):
    tf.io.gfile.rmtree(path)


class NotOursError(errors.UserError):
  """A folder a tool would write into that holds what tagger did not
  write."""


def check_replaceable(path: str, mark: str, flag: str,
                      entries: Optional[tuple] = None) -> None:
  """path may be written over by the tool that writes `mark` into its
  folders: it is not there, or an empty folder, or a folder holding mark
  (and, with entries, nothing but those names and mark). Anything else is
  NotOursError naming flag and what is there: a tool never deletes or
  overwrites what it did not write."""
  if not exists(path):
    return
  if not tf.io.gfile.isdir(path):
    raise NotOursError(f"{flag} {path} is a file; name a new or empty "
                       "folder")
  names = [n.rstrip("/") for n in listdir(path)]
  if not names:
    return
  shown = lambda xs: ", ".join(xs[:3]) + (", ..." if len(xs) > 3 else "")
  if mark not in names:
    raise NotOursError(
        f"{flag} {path} holds {len(names)} entr"
        f"{'y' if len(names) == 1 else 'ies'} tagger did not write "
        f"({shown(names)}); name a new or empty folder, or one this tool "
        "wrote before")
  foreign = [n for n in names if entries is not None and
             n not in entries + (mark,)]
  if foreign:
    raise NotOursError(
        f"{flag} {path} was written by tagger, but also holds "
        f"{shown(foreign)}, which it did not write; move them out or name "
        "a new folder")


def write_mark(path: str, mark: str, tool: str, **facts) -> None:
  """The mark check_replaceable looks for: path/mark naming the tool and
  tagger's version (and any facts)."""
  import tagger  # pylint: disable=g-import-not-at-top
  makedirs(path)
  write_json(join(path, mark), {"written_by": f"tagger {tool}",
                                "tagger_version": tagger.__version__,
                                **facts})


class InUseError(errors.UserError):
  """A folder that a live run of a tool holds."""


_LOCKS = {}  # folder -> open lock file, held until released or the end


def lock_dir(path: str, tool: str, flag: str) -> None:
  """One live run per folder (local folders; an object store has no
  locks): an advisory lock on path/.lock that dies with its process, so
  a killed run never leaves a stale one. A second run is InUseError,
  naming the holder; tool and flag word the message."""
  if "://" in path or path in _LOCKS:
    return
  import fcntl  # pylint: disable=g-import-not-at-top
  handle = open(os.path.join(path, ".lock"), "a+", encoding="utf-8")  # pylint: disable=consider-using-with
  try:
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    handle.seek(0)
    owner = handle.read().strip() or "another process"
    handle.close()
    raise InUseError(f"{path} is in use by a running {tool} ({owner}); wait "
                     f"for it to end, or use another {flag}") from None
  handle.seek(0)
  handle.truncate()
  handle.write(f"pid {os.getpid()}")
  handle.flush()
  _LOCKS[path] = handle


def release_dir(path: str) -> None:
  handle = _LOCKS.pop(path, None)
  if handle is not None:
    handle.close()
