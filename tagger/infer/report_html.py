"""The report page's HTML pieces: escaping, the per-class and
confused-pair tables' data, the page template and its script."""

import html
from typing import Sequence

import numpy as np

from tagger import metrics


def e(text) -> str:
  return html.escape(str(text), quote=True)


def per_class_table(probs: np.ndarray, labels: Sequence[str],
                    truth: np.ndarray) -> list:
  """[(label, clips, precision, recall, AP)] of single-label scores:
  probs [N, C], truth [N] class indices."""
  top = probs.argmax(axis=1)
  ap = metrics.average_precision_per_class(
      np.eye(len(labels), dtype=np.float32)[truth], probs)
  rows = []
  for c, label in enumerate(labels):
    predicted, actual = top == c, truth == c
    hits = float(np.sum(predicted & actual))
    rows.append((label, int(actual.sum()),
                 hits / predicted.sum() if predicted.any() else None,
                 hits / actual.sum() if actual.any() else None,
                 None if np.isnan(ap[c]) else float(ap[c])))
  return rows


def confused_pairs(probs: np.ndarray, truth: np.ndarray,
                   labels: Sequence[str], count: int = 10) -> list:
  """[(true label, predicted label, clips)]: the largest off-diagonal
  cells of the top-label confusion, largest first."""
  matrix = metrics.confusion(np.log(np.maximum(probs, 1e-12)), truth,
                             len(labels))
  np.fill_diagonal(matrix, 0)
  order = np.argsort(-matrix, axis=None)[:count]
  pairs = []
  for flat in order:
    t, p = np.unravel_index(flat, matrix.shape)
    if matrix[t, p] > 0:
      pairs.append((labels[t], labels[p], int(matrix[t, p])))
  return pairs


def figure(value) -> str:
  return "" if value is None else f"{value:.3f}"


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 2px 6px; vertical-align: top; }}
th {{ background: #eee; cursor: pointer; }}
.note {{ color: #666; }}
img.logmel {{ height: 64px; }}
</style></head>
<body><h1>{title}</h1>
{body}
<script>{script}</script>
</body></html>
"""


# Sorting, filtering and the players' durations; no data in the script:
# it reads the page's (escaped) text and attributes.
SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.from(body.rows);
    var down = th.dataset.order !== 'down';
    th.dataset.order = down ? 'down' : 'up';
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return down ? -c : c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
function applyFilters() {
  var cls = document.getElementById('class-filter').value;
  var ver = document.getElementById('verified-filter').value;
  document.querySelectorAll('#worst-table tr.clip').forEach(function (r) {
    var okClass = !cls || r.dataset.class.split(' ').indexOf(cls) >= 0;
    var okVer = !ver || r.dataset.verified === ver;
    r.style.display = okClass && okVer ? '' : 'none';
  });
}
document.getElementById('class-filter').addEventListener('change', applyFilters);
document.getElementById('verified-filter').addEventListener('change', applyFilters);
document.querySelectorAll('audio.clip-audio').forEach(function (a) {
  a.addEventListener('loadedmetadata', function () {
    a.dataset.duration = a.duration.toFixed(2);
    a.nextElementSibling.textContent = ' ' + a.duration.toFixed(2) + ' s';
  });
});
"""
