"""Cross-validation folds of a labelled clip list.

`assign_folds` is stratified by label, as the reference (sklearn's
StratifiedKFold when every class has enough clips); multi-label clips go
through `assign_multilabel_folds` (iterative stratification, Sechidis et
al. 2011); `plan_folds` says what a
small or odd label list allows: fewer folds than asked, one-clip classes
that train in every fold (fold -1), classes only some folds validate.
"""

import collections
import dataclasses
import warnings
from typing import List, Sequence

import numpy as np

from tagger import errors


class FoldError(errors.UserError):
  """Fold settings that cannot work; the message says why."""


@dataclasses.dataclass
class FoldPlan:
  """How many folds the classes allow, and which classes cannot be in all."""
  requested: int
  num_folds: int            # folds that validate clips (< 2: none)
  train_only: List[str]     # classes with one clip: fold -1, train always
  partial: List[str]        # classes with fewer clips than folds

  def warnings(self) -> List[str]:
    notes = []
    if self.num_folds < 2:
      notes.append("no class has 2 clips, so no fold can validate: every "
                   "clip trains in every run (fold -1); train with "
                   "--config.fold=none")
    elif self.num_folds < self.requested:
      notes.append(f"--num_folds={self.requested} lowered to "
                   f"{self.num_folds}: the largest class has "
                   f"{self.num_folds} clips")
    if self.train_only and self.num_folds >= 2:
      notes.append(f"{len(self.train_only)} class(es) with one clip train "
                   "in every fold and are never validated: " +
                   some(self.train_only))
    if self.partial:
      notes.append(f"{len(self.partial)} class(es) have fewer clips than "
                   f"the {self.num_folds} folds, so only some folds "
                   "validate them: " + some(self.partial))
    return notes


def some(names: Sequence[str], count: int = 8) -> str:
  shown = ", ".join(repr(n) for n in names[:count])
  return shown + (f" and {len(names) - count} more" if len(names) > count
                  else "")


def plan_folds(labels: Sequence[str], num_folds: int) -> FoldPlan:
  """The folds a label list allows: at most the largest class's size."""
  if num_folds < 1:
    raise FoldError(f"--num_folds must be at least 1, not {num_folds}")
  counts = collections.Counter(labels)
  largest = max(counts.values()) if counts else 0
  k = min(num_folds, largest)
  return FoldPlan(
      requested=num_folds, num_folds=k,
      train_only=sorted(l for l, c in counts.items() if c == 1),
      partial=sorted(l for l, c in counts.items() if 1 < c < k))


def assign_folds(labels: Sequence[str], num_folds: int, seed: int):
  """Stratified folds over clips in CSV order, as the reference: [N] int
  (fold -1: a clip of a one-clip class, in every fold's training), and the
  FoldPlan. With no one-clip class and enough clips per class this is
  sklearn's StratifiedKFold(num_folds, shuffle, seed) exactly."""
  from sklearn.model_selection import StratifiedKFold  # pylint: disable=g-import-not-at-top
  labels = np.asarray(labels)
  plan = plan_folds(labels.tolist(), num_folds)
  folds = np.full(len(labels), -1, np.int64)
  if plan.num_folds < 2:
    return folds, plan
  counts = collections.Counter(labels.tolist())
  members = np.array([i for i, l in enumerate(labels) if counts[l] > 1])
  splitter = StratifiedKFold(n_splits=plan.num_folds, shuffle=True,
                             random_state=seed)
  with warnings.catch_warnings():  # FoldPlan.warnings says it by name
    warnings.simplefilter("ignore", UserWarning)
    for fold, (_, val) in enumerate(splitter.split(
        np.zeros(len(members)), labels[members])):
      folds[members[val]] = fold
  return folds, plan


def assign_multilabel_folds(label_sets: Sequence[Sequence[str]],
                            num_folds: int, seed: int):
  """Folds of multi-label clips: [N] int and the FoldPlan, as assign_folds
  for single labels. The folds k are what the most frequent label allows;
  a clip with a label that no other clip has trains in every fold (fold
  -1); the rest are dealt by iterative stratification."""
  plan = plan_folds([l for labels in label_sets for l in labels], num_folds)
  folds = np.full(len(label_sets), -1, np.int64)
  if plan.num_folds < 2:
    return folds, plan
  single = set(plan.train_only)
  members = [i for i, labels in enumerate(label_sets)
             if not single.intersection(labels)]
  folds[members] = iterative_stratification(
      [label_sets[i] for i in members], plan.num_folds, seed)
  return folds, plan


def iterative_stratification(label_sets: Sequence[Sequence[str]],
                             num_folds: int, seed: int) -> np.ndarray:
  """[N] folds 0..k-1 of multi-label clips (several labels each), by
  iterative stratification (Sechidis, Tsoumakas and Vlahavas, 2011): the
  rarest label still unplaced is dealt first, each of its clips to the
  fold that most lacks that label (then the fold that lacks most clips,
  then at random). Every label's clips spread over the folds as evenly as
  the clips' label combinations allow. Deterministic for a seed."""
  if num_folds < 1:
    raise FoldError(f"--num_folds must be at least 1, not {num_folds}")
  rng = np.random.default_rng(seed)
  n = len(label_sets)
  classes = sorted({l for labels in label_sets for l in labels})
  index = {l: j for j, l in enumerate(classes)}
  members = np.zeros((n, len(classes)), bool)
  for i, labels in enumerate(label_sets):
    members[i, [index[l] for l in labels]] = True
  wanted = np.tile(members.sum(axis=0) / num_folds, (num_folds, 1))
  # wanted: [k, C] clips of each label each fold still lacks
  room = np.full(num_folds, n / num_folds)
  folds = np.full(n, -1, np.int64)
  left = members.copy()
  while left.any():
    counts = left.sum(axis=0).astype(np.float64)
    counts[counts == 0] = np.inf
    rarest = np.flatnonzero(counts == counts.min())
    label = int(rng.choice(rarest))
    for i in rng.permutation(np.flatnonzero(left[:, label])):
      best = np.flatnonzero(wanted[:, label] == wanted[:, label].max())
      if best.size > 1:
        best = best[room[best] == room[best].max()]
      fold = int(rng.choice(best))
      folds[i] = fold
      wanted[fold, members[i]] -= 1
      room[fold] -= 1
      left[i] = False
  for i in np.flatnonzero(folds < 0):  # clips without labels
    fold = int(rng.choice(np.flatnonzero(room == room.max())))
    folds[i] = fold
    room[fold] -= 1
  return folds
