"""The run's CSV rows: read from every CSV in turn, the label vocabulary,
the rows that cannot be written (with the reason), and errors.csv.
"""

import csv
import dataclasses
import io
from typing import Optional, Sequence

from tagger import fileio
from tagger.shards import clip_files
from tagger.shards import run_options


Row = clip_files.Row  # a CSV row (clip_files reads the CSV)


def read_inputs(runs: Sequence[run_options.Input], split: str):
  """(rows of every CSV in turn, with unique indices, their source and
  folder; True when the data is multi-label: a `labels` column or a clip
  with several labels)."""
  rows, multi = [], False
  for source, run in enumerate(runs):
    try:
      table = clip_files.read_csv(run.csv, split)
    except clip_files.CsvError as e:
      raise run_options.ShardingError(str(e)) from e
    multi = multi or table.multi_label
    for row in table.rows:
      rows.append(dataclasses.replace(row, index=len(rows), source=source,
                                      audio_dir=run.audio_dir))
  multi = multi or any(len(r.labels) > 1 for r in rows)
  return rows, multi


def _bad_label(label: str) -> bool:
  """Control characters (a newline would break labels.txt, line i = label
  i) or blanks around it."""
  return any(ord(c) < 32 or ord(c) == 127 for c in label)


def label_vocabulary(rows: Sequence[Row], labels_file: Optional[str]):
  """Sorted labels of the CSV, or the labels file's lines in order."""
  if labels_file:
    labels = [l.strip() for l in fileio.read_text(labels_file).splitlines()
              if l.strip()]
    if len(set(labels)) != len(labels):
      raise run_options.ShardingError(f"{labels_file}: duplicate labels")
    return labels
  return sorted({l for r in rows for l in r.labels if not _bad_label(l)})


def check_rows(rows: Sequence[Row], split: str, vocabulary: Sequence[str],
               csv_path: str):
  """Splits rows into usable ones and Problems (duplicates, bad labels)."""
  usable, problems, first_row = [], [], {}
  known = set(vocabulary)
  for row in rows:
    where = row.where if row.csv_path else f"{csv_path} row {row.index + 2}"
    bad = [l for l in row.labels if _bad_label(l)]
    unknown = [l for l in row.labels if l not in known]
    key = (row.audio_dir, row.fname)  # one file once
    if not row.fname:
      problems.append(run_options.Problem(row.fname, row.index, f"{where}: empty fname",
                              "skipped"))
    elif key in first_row:
      problems.append(run_options.Problem(
          row.fname, row.index, f"{where}: duplicate fname {row.fname!r} "
          f"(first at {first_row[key]}); the first is used", "skipped"))
    elif split == "train" and not row.labels:
      problems.append(run_options.Problem(row.fname, row.index, f"{where}: empty label",
                              "skipped"))
    elif split == "train" and bad:
      problems.append(run_options.Problem(
          row.fname, row.index, f"{where}: label {bad[0]!r} holds control "
          "characters (a newline, tab, ...); labels must be one line",
          "skipped"))
    elif split == "train" and unknown:
      problems.append(run_options.Problem(
          row.fname, row.index, f"{where}: label {unknown[0]!r} is not in "
          "the label vocabulary", "skipped"))
    else:
      usable.append(row)
    first_row.setdefault(key, where)
  return usable, problems


def errors_csv(problems: Sequence[run_options.Problem], rows: Sequence[Row]) -> str:
  """errors.csv: csv_row is the line in the clip's own CSV (header: 1)."""
  by_index = {r.index: r for r in rows}
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["fname", "csv_row", "action", "reason", "csv"])
  for p in sorted(problems, key=lambda p: p.row):
    row = by_index.get(p.row)
    writer.writerow([fileio.spreadsheet_safe(x) for x in (
        p.fname, str(row.line if row else p.row + 2), p.action, p.reason,
        row.csv_path if row else "")])
  return buffer.getvalue()
