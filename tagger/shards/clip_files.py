"""A Kaggle-layout CSV's rows, and names from an untrusted CSV (or a folder
listing) -> the bytes of the audio files they name, safely. Used by
sharding and by scoring raw audio.

A name must resolve to a regular file inside the audio folder: absolute
names, '..' and symlinks that lead out of the folder are refused, and
FIFOs, sockets, devices and directories are reported without being opened
(a FIFO would block open() forever). Files larger than max_file_mb are
refused before they are read. Each refusal is a reason naming the file;
the caller reports it and skips or flags the clip.
"""

import csv
import dataclasses
import io
import os
import stat
from typing import Iterator, List, Optional, Sequence, Tuple

import tensorflow as tf

from tagger import errors
from tagger import fileio
from tagger import settings
from tagger.audio import extract


class CsvError(errors.UserError):
  """A CSV that cannot be read as the Kaggle layout; the message says why."""


@dataclasses.dataclass
class Row:
  index: int  # 0-based data row over all the run's CSVs (unique)
  fname: str
  label: str  # the first of labels ("" when none)
  manually_verified: int
  labels: Tuple[str, ...] = ()  # every label of the clip, in CSV order
  source: int = 0  # which of the run's CSVs (sharding: --sources)
  audio_dir: str = ""  # the folder its fname is in ("": the caller's)
  csv_path: str = ""
  line: int = 0  # 1-based line in its CSV (the header is line 1)

  @property
  def where(self) -> str:
    return f"{self.csv_path} row {self.line}"


@dataclasses.dataclass
class CsvTable:
  rows: List[Row]
  multi_label: bool  # a `labels` column (FSDKaggle2019 layout)


def split_labels(text: str) -> Tuple[str, ...]:
  """A `labels` cell ("Bark,Meow") -> ("Bark", "Meow"): comma separated,
  blanks around each dropped, empty parts and repeats left out."""
  return tuple(dict.fromkeys(settings.names(text)))


def read_csv(path: str, split: str) -> CsvTable:
  """Parses a Kaggle CSV: fname[,label|labels][,manually_verified].

  `label` holds one label per clip (FSDKaggle2018); `labels` holds a
  comma-separated list in quotes (FSDKaggle2019, multi-label). A train CSV
  needs one of them; with both, `labels` is read.
  """
  if not fileio.exists(path):
    raise CsvError(f"{path}: CSV file not found")
  try:
    text = fileio.read_bytes(path).decode("utf-8-sig")
  except UnicodeDecodeError as e:
    raise CsvError(f"{path}: not a UTF-8 text CSV ({e})") from e
  reader = csv.DictReader(io.StringIO(text))
  columns = [c.strip() for c in (reader.fieldnames or [])]
  multi = "labels" in columns
  needed = ["fname"]
  if split == "train" and not multi:
    needed.append("label")
  missing = [c for c in needed if c not in columns]
  if missing:
    wanted = "['fname', 'label' or 'labels']" if split == "train" else \
        str(needed)
    raise CsvError(
        f"{path}: missing column(s) {missing}; found {columns or 'no header'}"
        f". A {split} CSV needs {wanted} (Kaggle layout).")
  reader.fieldnames = columns
  rows = []
  for i, record in enumerate(reader):
    verified = (record.get("manually_verified") or "1").strip()
    if multi:
      labels = split_labels(record.get("labels") or "")
    else:
      label = (record.get("label") or "").strip()
      labels = (label,) if label else ()
    rows.append(Row(index=i, fname=(record["fname"] or "").strip(),
                    label=labels[0] if labels else "",
                    manually_verified=1 if verified in ("1", "True", "true")
                    else 0, labels=labels, csv_path=path, line=i + 2))
  if not rows:
    raise CsvError(f"{path}: the CSV has a header but no rows")
  return CsvTable(rows, multi)


def read_csv_rows(path: str, split: str) -> List[Row]:
  """The rows of a Kaggle CSV (read_csv)."""
  return read_csv(path, split).rows


MAX_FILE_MB = 2048.0  # a 2-hour 16-bit stereo WAV at 44.1 kHz is ~1.2 GB


def _has_scheme(path: str) -> bool:
  return "://" in path


def _bad_name(name: str) -> Optional[str]:
  """Why a CSV name cannot be a path inside the folder, or None."""
  if not name:
    return "empty file name"
  if any(ord(c) < 32 or ord(c) == 127 for c in name):
    return "file name holds control characters"
  if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or \
      _has_scheme(name):
    return "absolute path or URL; names are relative to the audio folder"
  if ".." in name.replace("\\", "/").split("/"):
    return "'..' in the name leads out of the audio folder"
  return None


def resolve(audio_dir: str, name: str) -> Tuple[str, Optional[str]]:
  """(path, None) for a usable file, or (path, reason) for one to refuse.

  Local folders are checked with the file system (symlinks followed, file
  type, size); remote ones (gs://, s3://) by the name's form only, since
  object stores hold neither symlinks nor FIFOs.
  """
  path = fileio.join(audio_dir, name) if name else audio_dir
  why = _bad_name(name)
  if why:
    return path, f"{path}: {why}"
  if _has_scheme(audio_dir):
    return path, None
  root = os.path.realpath(audio_dir)
  real = os.path.realpath(path)
  if os.path.commonpath([root, real]) != root:
    return path, (f"{path}: resolves to {real}, outside the audio folder "
                  f"{root} (a symlink?); refused")
  try:
    info = os.stat(real)
  except FileNotFoundError:
    kind = "dangling symlink" if os.path.islink(path) else "audio file"
    return path, f"{path}: {kind} not found"
  except OSError as e:
    return path, f"{path}: cannot read ({e.strerror})"
  if not stat.S_ISREG(info.st_mode):
    return path, f"{path}: not a regular file ({_kind(info.st_mode)}); refused"
  return path, None


def _kind(mode: int) -> str:
  for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                     (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR,
                                                   "a character device"),
                     (stat.S_ISBLK, "a block device")):
    if test(mode):
      return name
  return "not a file"


def read_clip(path: str, max_file_mb: float = MAX_FILE_MB) -> bytes:
  """The bytes of a resolved file. Local files are opened non-blocking and
  checked again after opening (no race with a file swapped for a FIFO).

  Raises:
    OSError, tf.errors.OpError: with a reason naming the file.
  """
  limit = int(max_file_mb * 2**20)
  if _has_scheme(path):
    size = tf.io.gfile.stat(path).length
    if size > limit:
      raise OSError(f"{size / 2**20:.0f} MB, above the limit of "
                    f"{max_file_mb:g} MB (--max_file_mb)")
    return fileio.read_bytes(path)
  with open_regular(path) as f:
    size = os.fstat(f.fileno()).st_size
    if size > limit:
      raise OSError(f"{size / 2**20:.0f} MB, above the limit of "
                    f"{max_file_mb:g} MB (--max_file_mb)")
    return f.read()


def open_regular(path: str):
  """A local file opened for reading, without blocking (a FIFO or a device
  would block open() forever) and checked after opening: OSError with
  the reason for anything but a regular file."""
  fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
  try:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
      raise OSError(f"not a regular file ({_kind(info.st_mode)})")
  except BaseException:
    os.close(fd)
    raise
  return os.fdopen(fd, "rb")


def read_reason(error: Exception) -> str:
  """Why a file could not be read, without the path (OSError's strerror,
  TensorFlow's message, or the text)."""
  if isinstance(error, (tf.errors.NotFoundError, FileNotFoundError)):
    return "file not found"
  if isinstance(error, IsADirectoryError):
    return "not a regular file (a directory)"
  return (getattr(error, "strerror", None) or
          getattr(error, "message", None) or str(error))


def clip_tasks(rows: Sequence, audio_dir: str,
               max_file_mb: float = MAX_FILE_MB) -> Iterator[
                   extract.ClipTask]:
  """A ClipTask per row (anything with .index and .fname), in order: the
  file's bytes, or why there are none. A row's own .audio_dir, when set,
  is its folder (several CSVs, one folder each)."""
  for row in rows:
    path, why = resolve(getattr(row, "audio_dir", "") or audio_dir,
                        row.fname)
    if why:
      yield extract.ClipTask(row=row.index, name=path, data=None,
                             read_error=why)
      continue
    try:
      yield extract.ClipTask(row=row.index, name=path,
                             data=read_clip(path, max_file_mb))
    except tf.errors.NotFoundError:
      yield extract.ClipTask(row=row.index, name=path, data=None,
                             read_error=f"{path}: audio file not found")
    except (tf.errors.OpError, OSError) as e:
      reason = getattr(e, "strerror", None) or str(e)
      yield extract.ClipTask(row=row.index, name=path, data=None,
                             read_error=f"{path}: cannot read ({reason})")


def list_folder(audio_dir: str) -> list:
  """The file names of a folder (sorted; hidden files and subfolders
  left out, and said so in a warning), for scoring every file of a
  folder."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  names = [n for n in fileio.listdir(audio_dir) if not n.endswith("/") and
           (_has_scheme(audio_dir) or
            not os.path.isdir(os.path.join(audio_dir, n)))]
  hidden = sorted(n for n in names if n.startswith("."))
  if hidden:
    logging.warning("%s: %d hidden file(s) left out (%s%s); list them in "
                    "--audio_csv to score them", audio_dir, len(hidden),
                    ", ".join(hidden[:3]), ", ..." if len(hidden) > 3 else "")
  return sorted(n for n in names if not n.startswith("."))


def names_to_score(audio_dir: str, csv_path: str = "") -> List[str]:
  """The audio files to score: csv_path's fname column in its order, or
  every file of audio_dir (sorted). CsvError for a bad CSV or no file."""
  if csv_path:
    names = [r.fname for r in read_csv_rows(csv_path, "test")]
  else:
    names = list_folder(audio_dir)
  if not names:
    raise CsvError(f"no audio files in {audio_dir}")
  return names
