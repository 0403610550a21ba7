"""PNG pictures: batches of log-mels and confusion matrices.

matplotlib with the Agg backend (no display needed); figures are rendered to
PNG bytes, so callers write them with fileio (any filesystem) or hand them to
tf.summary.image.
"""

import io
from typing import Sequence

import numpy as np


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _png(fig) -> bytes:
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=100)
  _pyplot().close(fig)
  return buffer.getvalue()


def batch_grid(columns: Sequence[np.ndarray], column_titles: Sequence[str],
               row_titles: Sequence[str], title: str = "") -> bytes:
  """A grid of log-mels: one column per stage, one row per example.

  Args:
    columns: per column a float array [rows, mels, frames] in [0, 1]
      (frames may differ between columns).
    column_titles: one per column.
    row_titles: one per row (e.g. the label, or the mix).
    title: figure title.
  """
  plt = _pyplot()
  rows = len(row_titles)
  fig, axes = plt.subplots(rows, len(columns), squeeze=False,
                           figsize=(3.2 * len(columns), 1.3 * rows + 0.6))
  for c, (images, name) in enumerate(zip(columns, column_titles)):
    for r in range(rows):
      ax = axes[r][c]
      ax.imshow(images[r], origin="lower", aspect="auto", cmap="magma",
                vmin=0.0, vmax=1.0, interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if r == 0:
        ax.set_title(name, fontsize=9)
      if c == 0:
        ax.set_ylabel(row_titles[r], fontsize=7, rotation=0, ha="right",
                      va="center")
  if title:
    fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  return _png(fig)


def confusion_matrix(matrix: np.ndarray, labels: Sequence[str],
                     title: str = "") -> bytes:
  """Row-normalised confusion matrix [true, predicted] with label names."""
  plt = _pyplot()
  matrix = np.asarray(matrix, np.float64)
  rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  size = max(6.0, 0.22 * len(labels) + 2)
  fig, ax = plt.subplots(figsize=(size, size))
  ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
  ax.set_xticks(range(len(labels)))
  ax.set_yticks(range(len(labels)))
  ax.set_xticklabels(labels, rotation=90, fontsize=6)
  ax.set_yticklabels(labels, fontsize=6)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  if title:
    ax.set_title(title)
  fig.tight_layout()
  return _png(fig)


def timeline(start_seconds: np.ndarray, window_seconds: float,
             probabilities: np.ndarray, labels: Sequence[str], top: int = 5,
             title: str = "") -> bytes:
  """The top classes of a recording over time: one row per class (those
  with the highest peak probability), colour = probability of the window
  starting at each time.

  Args:
    start_seconds: [F] window starts.
    window_seconds: a window's length.
    probabilities: [F, C].
    labels: C class names.
  """
  plt = _pyplot()
  top = min(top, probabilities.shape[1])
  classes = np.argsort(-probabilities.max(axis=0))[:top]
  hop = float(np.diff(start_seconds).mean()) if len(start_seconds) > 1 \
      else window_seconds
  # Each window is drawn at its centre, one hop wide.
  centres = start_seconds + window_seconds / 2
  fig, ax = plt.subplots(figsize=(10, 1.0 + 0.4 * top))
  image = ax.imshow(probabilities[:, classes].T, aspect="auto",
                    interpolation="nearest", cmap="magma", vmin=0, vmax=1,
                    extent=(centres[0] - hop / 2, centres[-1] + hop / 2,
                            top - 0.5, -0.5))
  ax.set_yticks(range(top))
  ax.set_yticklabels([labels[c] for c in classes])
  ax.set_xlabel("time (s), window centres")
  ax.set_title(title or f"top {top} classes over time "
               f"({window_seconds:.2f} s windows)")
  fig.colorbar(image, ax=ax, label="probability")
  fig.tight_layout()
  return _png(fig)


def per_class_bars(values: np.ndarray, labels: Sequence[str],
                   title: str = "") -> bytes:
  """Horizontal bars of a per-class figure in [0, 1] (e.g. average
  precision), worst at the top; NaN (a class without clips) left out."""
  plt = _pyplot()
  values = np.asarray(values, np.float64)
  keep = [i for i in np.argsort(values) if not np.isnan(values[i])]
  fig, ax = plt.subplots(figsize=(7, 0.22 * len(keep) + 1.2))
  ax.barh(np.arange(len(keep)), values[keep], color="#4878a8")
  ax.set_yticks(np.arange(len(keep)))
  ax.set_yticklabels([labels[i] for i in keep], fontsize=7)
  ax.invert_yaxis()
  ax.set_xlim(0, 1)
  ax.grid(axis="x", alpha=0.3)
  if title:
    ax.set_title(title, fontsize=9)
  fig.tight_layout()
  return _png(fig)


def log_mel_png(log_mel: np.ndarray) -> bytes:
  """One clip's log-mel [M, T] in dB as a small picture without axes (low
  frequencies at the bottom), for the evaluation report."""
  plt = _pyplot()
  width = min(6.0, max(1.5, log_mel.shape[1] / 100))
  fig = plt.figure(figsize=(width, 0.8))
  ax = fig.add_axes((0, 0, 1, 1))
  ax.imshow(log_mel, origin="lower", aspect="auto", cmap="magma")
  ax.set_axis_off()
  return _png(fig)
