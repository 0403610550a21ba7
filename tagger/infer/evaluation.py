"""The evaluation of scores against answers: MAP@3, top-1, per-class
accuracy and the confusion matrix (single-label), lwlrap and per-class AP
(multi-label), and the same figures by source group. One home for
tools/score, the HTML report and the quality benchmark."""

import csv
import io
from typing import Dict, Optional, Tuple

import numpy as np

from tagger import fileio
from tagger import metrics
from tagger.infer import scorer
from tagger.shards import clip_files

ALL = "all"   # by_group's key for every clip


def read_labels_csv(path: str) -> Dict[str, Tuple[str, ...]]:
  """fname -> its labels, from fname,label (one label) or fname,labels
  (comma separated, FSDKaggle2019)."""
  reader = csv.DictReader(io.StringIO(fileio.read_text(path)))
  columns = set(reader.fieldnames or [])
  if "fname" not in columns or not {"label", "labels"} & columns:
    raise scorer.ScoreError(f"{path}: needs the columns fname,label or "
                            "fname,labels")
  if "labels" in columns:
    return {r["fname"]: clip_files.split_labels(r["labels"]) for r in reader}
  return {r["fname"]: (r["label"],) for r in reader}


def label_sets(truth: Dict[str, object]) -> Dict[str, Tuple[str, ...]]:
  """Answers as label tuples: a str is one label, a sequence several."""
  return {f: (t,) if isinstance(t, str) else tuple(t)
          for f, t in truth.items()}


def evaluate(scores: scorer.Scores, truth: Dict[str, Tuple[str, ...]]) -> dict:
  """MAP@3, top-1 accuracy, per-class accuracy and the confusion matrix of
  the clips that have a known label; for multi-label answers or models,
  lwlrap and per-class AP (evaluate_multi_label). truth: fname -> its
  labels (read_labels_csv; a str is one label)."""
  truth = label_sets(truth)
  if scores.multi_label or any(len(t) > 1 for t in truth.values()):
    return evaluate_multi_label(scores, truth)
  truth = {f: t[0] if t else "" for f, t in truth.items()}
  index = {l: i for i, l in enumerate(scores.labels)}
  rows = [i for i, f in enumerate(scores.fnames) if truth.get(f) in index]
  unknown = sorted({truth[f] for f in scores.fnames
                    if f in truth and truth[f] not in index})
  missing = sum(f not in truth for f in scores.fnames)
  labels = np.array([index[truth[scores.fnames[i]]] for i in rows])
  s = scores.log_probs[rows]
  matrix = metrics.confusion(s, labels, len(scores.labels))
  return {"clips": len(rows), "map3": metrics.map_at_3(s, labels),
          "accuracy": metrics.accuracy(s, labels),
          "per_class_accuracy": dict(zip(
              scores.labels, metrics.per_class_accuracy(matrix).round(4)
              .tolist())),
          "confusion": matrix, "unknown_labels": unknown,
          "without_label": missing}


def evaluate_multi_label(scores: scorer.Scores,
                         truth: Dict[str, Tuple[str, ...]]) -> dict:
  """lwlrap, per-class AP, MAP@3 and top-1 accuracy of the clips with one
  label (None without such clips), and the top-1 class's share among a
  clip's labels, over the clips whose labels are all known."""
  index = {l: i for i, l in enumerate(scores.labels)}
  known = lambda t: bool(t) and all(l in index for l in t)
  rows = [i for i, f in enumerate(scores.fnames) if known(truth.get(f))]
  unknown = sorted({l for f in scores.fnames for l in truth.get(f, ())
                    if l not in index})
  missing = sum(f not in truth for f in scores.fnames)
  hot = np.zeros((len(rows), len(scores.labels)), bool)
  for j, i in enumerate(rows):
    hot[j, [index[l] for l in truth[scores.fnames[i]]]] = True
  s = scores.log_probs[rows]
  single = hot.sum(axis=1) == 1
  ap = metrics.average_precision_per_class(hot, s)
  top1 = metrics.top_k(s, 1)[:, 0]
  return {"clips": len(rows), "multi_label": True,
          "lwlrap": metrics.lwlrap(hot, s)[0],
          "map3": (metrics.map_at_3(s[single], hot[single].argmax(axis=1))
                   if single.any() else None),
          "accuracy": (metrics.accuracy(s[single], hot[single].argmax(axis=1))
                       if single.any() else None),
          "single_label_clips": int(single.sum()),
          "top1_in_labels": float(hot[np.arange(len(rows)), top1].mean())
                            if rows else 0.0,
          "per_class_ap": {l: None if np.isnan(a) else round(float(a), 4)
                           for l, a in zip(scores.labels, ap)},
          "_ap": ap, "unknown_labels": unknown, "without_label": missing}



def by_group(scores: scorer.Scores, truth: Dict[str, object],
             groups: Optional[Dict[str, str]] = None) -> Dict[str, dict]:
  """{'all': figures, and one entry per source group (groups: fname ->
  its group)}: MAP@3 and top-1 of the single-label clips, lwlrap where
  the answers or the model are multi-label, and the clip count. A group
  without a known answer is left out."""
  truth = label_sets(truth)
  names = [ALL] + list(dict.fromkeys((groups or {}).values()))
  out = {}
  for group in names:
    rows = [i for i, f in enumerate(scores.fnames)
            if group == ALL or (groups or {}).get(f) == group]
    figures = evaluate(scores.take(rows), truth) if rows else {"clips": 0}
    if figures["clips"]:
      out[group] = {"map3": figures["map3"], "accuracy": figures["accuracy"],
                    "test_clips": figures["clips"]}
      if figures.get("multi_label"):
        out[group]["lwlrap"] = figures["lwlrap"]
  return out


def probability_scores(fnames, probs: np.ndarray, labels,
                       multi_label: bool = False) -> scorer.Scores:
  """Scores of another model's probabilities [N, C] (a baseline's), so
  that it is evaluated as the networks are."""
  return scorer.Scores(list(fnames), np.log(np.maximum(probs, 1e-12)), None,
                       np.zeros(len(fnames), bool), list(labels),
                       multi_label)
