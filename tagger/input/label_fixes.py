"""Learning past wrong labels: the label issues file (LABEL_ISSUES, which
training every fold writes, infer/label_issues.py) and what a next
training does with its clips (config.label_issues, config.on_label_issue):

  drop     the clip's loss weight is 0 (it still fills its batch slot and
           is a mixup partner, so the epoch's steps and pairing are those
           of the data as it is);
  weight   its loss weight is config.issue_weight;
  relabel  its label becomes the suggested one (single-label data).

Manually verified clips are left as they are unless config.fix_verified
(drop and weight only: a verified clip is never relabelled). The training
batches carry batches.CLIP_WEIGHT only when some clip is acted on, so a file with
no row to act on trains exactly as no file.
"""

import csv
import dataclasses
import io
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tagger import errors
from tagger import fileio
from tagger import settings
from tagger.input import batches
from tagger.shards import records

LABEL_ISSUES = "label_issues.csv"
COLUMNS = ("fname", "given", "suggested", "label_quality",
           "manually_verified", "fold")
ACTIONS = settings.LABEL_ISSUE_ACTIONS


class LabelIssuesError(errors.UserError):
  """A label issues file that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class LabelIssue:
  """One suspected clip: its given and suggested labels (one each for
  single-label data), the label quality in [0, 1] (low: likely wrong)."""
  fname: str
  given: Tuple[str, ...]
  suggested: Tuple[str, ...]
  label_quality: float
  manually_verified: bool
  fold: int


def write_csv(path: str, issues: Sequence[LabelIssue]) -> str:
  """The suspected clips in the order given; several labels joined by
  commas; cells escaped for spreadsheets as in every CSV tagger writes."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(COLUMNS)
  for x in issues:
    writer.writerow([fileio.spreadsheet_safe(x.fname),
                     fileio.spreadsheet_safe(",".join(x.given)),
                     fileio.spreadsheet_safe(",".join(x.suggested)),
                     f"{x.label_quality:.6f}", int(x.manually_verified),
                     x.fold])
  fileio.atomic_write_text(path, buffer.getvalue())
  return path


def _unescape(cell: str) -> str:
  """spreadsheet_safe's inverse: the apostrophe it added is dropped."""
  if cell.startswith("'") and fileio.spreadsheet_safe(cell[1:]) == cell:
    return cell[1:]
  return cell


def read_csv(path: str) -> List[LabelIssue]:
  """A label issues file as write_csv wrote it (rows may have been
  deleted); a file that is not one is one line naming it."""
  if not fileio.exists(path):
    raise LabelIssuesError(f"{path} not found (train every fold with "
                           "--config.fold=all to write it)")
  reader = csv.DictReader(io.StringIO(fileio.read_text(path)))
  missing = set(COLUMNS) - set(reader.fieldnames or ())
  if missing:
    raise LabelIssuesError(f"{path} is not a label issues file (no column "
                           f"{', '.join(sorted(missing))})")
  issues = []
  for line, row in enumerate(reader, start=2):
    try:
      issues.append(LabelIssue(
          _unescape(row["fname"]), settings.names(_unescape(row["given"])),
          settings.names(_unescape(row["suggested"])),
          float(row["label_quality"]),
          str(row["manually_verified"]).strip() in ("1", "True", "true"),
          int(row["fold"])))
    except (TypeError, ValueError) as e:
      raise LabelIssuesError(f"{path} line {line}: {e}") from e
  return issues


@dataclasses.dataclass(frozen=True)
class LabelFixes:
  """The clips a training acts on: each one's new label (-1: kept) and
  loss weight. Empty: the training is as without it."""
  fnames: Tuple[str, ...] = ()
  labels: Tuple[int, ...] = ()
  weights: Tuple[float, ...] = ()

  def __bool__(self) -> bool:
    return bool(self.fnames)

  def lookup(self):
    """(fname -> row table, labels [n], weights [n]) as TF values; made
    once where the input pipeline is built (a table is a resource)."""
    table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(self.fnames, tf.string),
        tf.range(len(self.fnames), dtype=tf.int64)), default_value=-1)
    return (table, tf.constant(self.labels, tf.int32),
            tf.constant(self.weights, tf.float32))


def apply(batch: Dict[str, tf.Tensor], serialized: tf.Tensor, lookup,
          prefix: str = "") -> Dict[str, tf.Tensor]:
  """A host batch's side (prefix: '' or the mixup partner's) with its
  records' fixes: label replaced where relabelled; batches.CLIP_WEIGHT [b] (1 for
  every clip not acted on)."""
  table, labels, weights = lookup
  fname = tf.io.parse_example(serialized, {
      records.FNAME: tf.io.FixedLenFeature([], tf.string)})[records.FNAME]
  row = table.lookup(fname)
  # row: [b] int64, -1 where the clip is not acted on
  found = row >= 0
  safe = tf.maximum(row, 0)
  new_label = tf.gather(labels, safe)
  relabel = found & (new_label >= 0)
  out = dict(batch)
  out[prefix + records.LABEL] = tf.where(relabel, new_label,
                                         batch[prefix + records.LABEL])
  out[prefix + batches.CLIP_WEIGHT] = tf.where(found, tf.gather(weights, safe), 1.0)
  return out


def fixes(issues: Sequence[LabelIssue], class_names: Sequence[str],
          action: str, weight: float, fix_verified: bool,
          multi_label: bool, source: str = LABEL_ISSUES) -> LabelFixes:
  """The LabelFixes of a label issues file's rows for data with these
  classes: verified rows skipped unless fix_verified (never relabelled)."""
  if action not in ACTIONS:
    raise LabelIssuesError(f"config.on_label_issue must be one of {ACTIONS}, "
                           f"not {action!r}")
  if action == "relabel" and multi_label:
    raise LabelIssuesError("config.on_label_issue=relabel takes single-label "
                           "data; use drop or weight for multi-label data")
  position = {name: i for i, name in enumerate(class_names)}
  chosen: Dict[str, Tuple[int, float]] = {}
  for x in issues:
    if x.manually_verified and (action == "relabel" or not fix_verified):
      continue
    if action == "relabel":
      if len(x.suggested) != 1 or x.suggested[0] not in position:
        raise LabelIssuesError(
            f"{source}: the suggested label {','.join(x.suggested)!r} of "
            f"{x.fname!r} is not one class of the data")
      chosen[x.fname] = (position[x.suggested[0]], 1.0)
    else:
      chosen[x.fname] = (-1, 0.0 if action == "drop" else float(weight))
  names = tuple(sorted(chosen))
  return LabelFixes(names, tuple(chosen[n][0] for n in names),
                    tuple(chosen[n][1] for n in names))


def from_config(path: str, class_names: Sequence[str], action: str,
                weight: float, fix_verified: bool,
                multi_label: bool) -> LabelFixes:
  """config.label_issues ('' : none) -> LabelFixes."""
  if not path:
    return LabelFixes()
  return fixes(read_csv(path), class_names, action, weight, fix_verified,
               multi_label, path)


def count_by_kind(fixes_: LabelFixes) -> Dict[str, int]:
  """How many clips are relabelled, dropped and down-weighted."""
  labels, weights = np.array(fixes_.labels), np.array(fixes_.weights)
  return {"relabelled": int((labels >= 0).sum()),
          "dropped": int(((labels < 0) & (weights == 0)).sum()),
          "down-weighted": int(((labels < 0) & (weights > 0)).sum())}
