"""What tools/score writes: the submission (Kaggle 2018's top 3 labels or
2019's probability columns), the probabilities, the embeddings and the
evaluation's picture; every file written atomically, every name that a
spreadsheet would run escaped."""

import csv
import io
import os
from typing import Collection

import numpy as np
import tensorflow as tf
from absl import logging

from tagger import fileio
from tagger import metrics
from tagger import plots
from tagger.infer import scorer


def submission_csv(scores: scorer.Scores,
                   unscored: Collection[str] = ()) -> str:
  """fname,label with the top 3 labels, space separated (Kaggle format),
  quoted where a name or label needs it; files in unscored (not usable
  audio) get an empty label."""
  top = metrics.top_k(scores.log_probs, 3)
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["fname", "label"])
  labels = [fileio.spreadsheet_safe(l) for l in scores.labels]
  for name, row in zip(scores.fnames, top):
    writer.writerow([fileio.spreadsheet_safe(name), "" if name in unscored
                     else " ".join(labels[i] for i in row)])
  return buffer.getvalue()


ERRORS_HEADER = ("fname", "status", "reason")


def write_errors(path: str, problems) -> str:
  """The files that could not be used whole (inputs.FileProblem): fname,
  status (inputs.STATUSES), reason; names escaped as in every CSV."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(ERRORS_HEADER)
  for p in problems:
    writer.writerow([fileio.spreadsheet_safe(p.fname), p.status,
                     fileio.spreadsheet_safe(p.reason)])
  fileio.atomic_write_text(path, buffer.getvalue())
  return path


SUBMISSION_FORMATS = ("auto", "kaggle2018", "kaggle2019")


def probabilities_csv(scores: scorer.Scores,
                      unscored: Collection[str] = ()) -> str:
  """fname and a probability column per class: FSDKaggle2019's submission.
  Single-label models' probabilities sum to 1 over the classes;
  multi-label (sigmoid) models' are each class's own."""
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["fname"] + [fileio.spreadsheet_safe(l)
                                for l in scores.labels])
  probs = np.exp(scores.log_probs)
  if not scores.multi_label:
    probs /= probs.sum(axis=1, keepdims=True)
  for name, row in zip(scores.fnames, probs):
    writer.writerow([fileio.spreadsheet_safe(name)] + (
        [""] * len(row) if name in unscored else [f"{p:.6g}" for p in row]))
  return buffer.getvalue()


def check_writable(flag: str, path: str) -> None:
  """The output's folder exists (made if need be) and takes a file (path
  is not a folder)."""
  folder = os.path.dirname(path)
  if fileio.exists(path) and tf.io.gfile.isdir(path):
    raise scorer.ScoreError(f"{flag}: {path} is a folder; name a file")
  try:
    if folder and "://" not in folder:  # object stores have no folders
      fileio.makedirs(folder)
    probe = fileio.temp_name(path)
    fileio.atomic_write_text(probe, "write check\n")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    raise scorer.ScoreError(f"{flag}: cannot write {path} "
                            f"({getattr(e, 'message', None) or e})") from e



def write_outputs(scores: scorer.Scores, output: str, fmt: str = "auto",
                  probs_out: str = "", embeddings_out: str = "",
                  unscored: Collection[str] = ()) -> dict:
  """The submission (fmt: SUBMISSION_FORMATS), and the probabilities and
  embeddings where asked; the rows of unscored files (audio that could not
  be used) are left empty."""
  if fmt == "auto":
    fmt = "kaggle2019" if scores.multi_label else "kaggle2018"
  fileio.atomic_write_text(output, probabilities_csv(scores, unscored) if
                           fmt == "kaggle2019" else
                           submission_csv(scores, unscored))
  silent = scores.empty & ~np.isin(scores.fnames, list(unscored))
  if silent.any():
    logging.warning("%d clip(s) had no audio and are ranked by the training "
                    "class frequencies: %s", silent.sum(),
                    ", ".join(np.array(scores.fnames)[silent][:10]))
  escaped = [n for n in scores.fnames if fileio.spreadsheet_safe(n) != n]
  if escaped:
    logging.warning("%d name(s) begin as a spreadsheet formula would and are "
                    "written with a leading ' so that no spreadsheet runs "
                    "them: %s", len(escaped), ", ".join(escaped[:5]))
  if probs_out:
    fileio.atomic_write_text(probs_out, probabilities_csv(scores, unscored))
  if embeddings_out:
    buffer = io.BytesIO()
    np.savez(buffer, fname=np.array(scores.fnames),
             embedding=scores.embeddings)
    fileio.atomic_write_bytes(embeddings_out, buffer.getvalue())
  return {"clips": len(scores.fnames), "submission_format": fmt,
          "empty": int(silent.sum()), "unscored": len(unscored),
          "output": output}


def write_evaluation_png(evaluation: dict, scores: scorer.Scores,
                         path: str) -> str:
  """The evaluation's picture at path (a confusion matrix, or average
  precision per class for multi-label answers); takes the picture's data
  out of the evaluation (it is not JSON)."""
  if evaluation.get("multi_label"):
    png = plots.per_class_bars(
        evaluation.pop("_ap"), scores.labels,
        f"lwlrap {evaluation['lwlrap']:.3f} over {evaluation['clips']} "
        "clips: average precision per class")
  else:
    png = plots.confusion_matrix(evaluation.pop("confusion"), scores.labels,
                                 f"MAP@3 {evaluation['map3']:.3f} over "
                                 f"{evaluation['clips']} clips")
  fileio.atomic_write_bytes(path, png)
  return path


def evaluation_png_path(output: str, multi_label: bool) -> str:
  """Where the evaluation's picture goes without --confusion_png."""
  suffix = "_per_class_ap.png" if multi_label else "_confusion.png"
  return os.path.splitext(output)[0] + suffix
