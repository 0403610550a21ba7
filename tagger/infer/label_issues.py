"""Training clips whose label looks wrong, found by confident learning
(Northcutt et al.; the `cleanlab` library) from the out-of-fold scores:
each clip judged by the model that never trained on it.

`find` gives every clip a label quality (cleanlab's self-confidence: the
out-of-fold probability of the given label; for multi-label data an
average over the clip's classes) and the suspected clips (cleanlab's
'prune_by_noise_rate' filter: per class, the clips the confident joint
says were given that label but belong elsewhere), worst first, with the
label the models suggest; `write` puts them in the model dir as
LABEL_ISSUES (input/label_fixes.py owns that file: the next training reads
it back, with config.label_issues).
"""

import warnings
from typing import List, Tuple

import numpy as np

from tagger import fileio
from tagger.infer import out_of_fold as oof_lib
from tagger.input import label_fixes

LABEL_ISSUES = label_fixes.LABEL_ISSUES
LabelIssue = label_fixes.LabelIssue
MULTI_LABEL_THRESHOLD = 0.5   # a class is suggested at this probability


def find(oof: oof_lib.OutOfFold) -> List[LabelIssue]:
  """The suspected clips of the out-of-fold table, worst first. Clips
  without audio are never suspected; fewer than two classes: none."""
  # cleanlab imports pandas (about 2 s): only where labels are checked.
  from cleanlab import filter as cl_filter  # pylint: disable=g-import-not-at-top
  from cleanlab import rank as cl_rank  # pylint: disable=g-import-not-at-top
  from cleanlab.multilabel_classification import filter as ml_filter  # pylint: disable=g-import-not-at-top
  from cleanlab.multilabel_classification import rank as ml_rank  # pylint: disable=g-import-not-at-top
  rows = np.flatnonzero(~oof.empty)
  if len(oof.classes) < 2 or len(rows) < 2:
    return []
  probs = oof.probs[rows]
  with warnings.catch_warnings():   # cleanlab warns of classes it lacks
    warnings.simplefilter("ignore")
    if oof.multi_label:
      labels = [list(oof.label_sets[i]) for i in rows]
      quality = ml_rank.get_label_quality_scores(labels, probs)
      flagged = ml_filter.find_label_issues(labels, probs, n_jobs=1)
    else:
      labels = oof.labels[rows]
      quality = cl_rank.get_label_quality_scores(labels, probs)
      flagged = cl_filter.find_label_issues(labels, probs, n_jobs=1)
  issues = []
  for k in np.flatnonzero(flagged):
    i = rows[k]
    given = tuple(oof.classes[c] for c in oof.label_sets[i])
    issues.append(LabelIssue(
        str(oof.fnames[i]), given, _suggested(probs[k], oof, i),
        float(quality[k]), bool(oof.verified[i]), int(oof.folds[i])))
  return sorted(issues, key=lambda x: (x.label_quality, x.fname))


def _suggested(probs: np.ndarray, oof: oof_lib.OutOfFold,
               i: int) -> Tuple[str, ...]:
  """The label the models hear: single-label data, the most probable
  class other than the given one; multi-label, the classes at
  MULTI_LABEL_THRESHOLD or more (else the most probable)."""
  if oof.multi_label:
    chosen = np.flatnonzero(probs >= MULTI_LABEL_THRESHOLD)
    if not len(chosen):
      chosen = [int(np.argmax(probs))]
    return tuple(oof.classes[c] for c in chosen)
  order = np.argsort(-probs, kind="stable")
  best = next(int(c) for c in order if c != oof.labels[i])
  return (oof.classes[best],)


def write(model_dir: str, oof: oof_lib.OutOfFold) -> Tuple[str, int]:
  """model_dir/LABEL_ISSUES from the out-of-fold table: (path, count)."""
  issues = find(oof)
  return (label_fixes.write_csv(fileio.join(model_dir, LABEL_ISSUES), issues),
          len(issues))
