"""How well training every fold finds wrong labels, and what learning past
them buys: the figures behind tools/benchmark_labels.

On a Kaggle-layout set with test answers (test_labels.csv) and, where it
has them, its known wrong train labels (wrong_labels.csv: fname, label,
true_label; tools/make_recorded_data writes it), each variant of the train
labels is sharded, trained and scored:

  clean       the true labels (the wrong ones put right): the reference;
  given       the set's own labels, its known wrong ones included;
  flip<p>     the clean labels with a share p of the unverified rows given
              another class at random (seeded; recorded in flips.csv, never
              seen by the model). A set with no unverified row first has
              `unverified` of its rows marked unverified (seeded).

For every noisy variant: --config.fold=all (tools/train's path) writes the
out-of-fold scores and label_issues.csv, whose precision and recall are
taken against the known wrong rows; the fold-0 model scores the test split
(without the option), and a second training of fold 0 with
config.label_issues (with the option) does too. The clean variant trains
fold 0 only. MAP@3 is given on every test clip and by source group
(sources.csv). A re-run in the same workdir skips what is done.
"""

import csv
import dataclasses
import io
import time
from typing import Dict, List, Sequence, Tuple

import ml_collections
import numpy as np

from tagger import fileio
from tagger import recipe
from tagger.audio import params as params_lib
from tagger.infer import evaluation
from tagger.infer import label_issues
from tagger.infer import out_of_fold
from tagger.infer import score as score_lib
from tagger.input import label_fixes
from tagger.lab import baselines as baselines_lib
from tagger.shards import clip_files
from tagger.shards import output_folder
from tagger.shards import records
from tagger.shards import run_options
from tagger.shards import sharding
from tagger.train import trainer

WRONG_LABELS = "wrong_labels.csv"


@dataclasses.dataclass(frozen=True)
class Variant:
  """One version of the train labels: rows [fname, label, verified] and
  the rows known wrong (fname -> true label)."""
  name: str
  rows: List[list]
  wrong: Dict[str, str]


def read_train(data_dir: str) -> Tuple[List[list], Dict[str, str]]:
  """train.csv's rows [fname, label, verified] and the set's known wrong
  labels (fname -> true label; {} without wrong_labels.csv)."""
  rows = [[r.fname, r.label, int(r.manually_verified)]
          for r in clip_files.read_csv_rows(
              fileio.join(data_dir, "train.csv"), "train")]
  path = fileio.join(data_dir, WRONG_LABELS)
  wrong = {}
  if fileio.exists(path):
    for r in csv.DictReader(io.StringIO(fileio.read_text(path))):
      wrong[r["fname"]] = r["true_label"]
  return rows, wrong


def variants(rows: List[list], wrong: Dict[str, str], flips: Sequence[float],
             unverified: float, seed: int) -> List[Variant]:
  """clean, given (with known wrong labels), and flip<p> for each p."""
  clean = [[f, wrong.get(f, label), v] for f, label, v in rows]
  out = [Variant("clean", clean, {})]
  if wrong:
    out.append(Variant("given", rows, dict(wrong)))
  rng = np.random.default_rng(seed)
  if not any(v == 0 for _, _, v in clean):   # mark some rows unverified
    marked = rng.random(len(clean)) < unverified
    clean = [[f, l, 0 if m else v] for (f, l, v), m in zip(clean, marked)]
  classes = sorted({l for _, l, _ in clean})
  for p in flips:
    flip_rng = np.random.default_rng([seed, int(round(p * 1000))])
    candidates = [i for i, (_, _, v) in enumerate(clean) if v == 0]
    chosen = flip_rng.choice(candidates, size=int(round(p * len(candidates))),
                             replace=False)
    noisy, known = [list(r) for r in clean], {}
    for i in sorted(chosen.tolist()):
      fname, label, _ = noisy[i]
      noisy[i][1] = str(flip_rng.choice([c for c in classes if c != label]))
      known[fname] = label
    out.append(Variant(f"flip{int(round(p * 100))}", noisy, known))
  return out


def precision_recall(issues: Sequence[label_fixes.LabelIssue],
                     wrong: Dict[str, str]) -> dict:
  """Of the unverified suspected clips, how many are known wrong
  (precision), and of the known wrong, how many were found (recall)."""
  found = {x.fname for x in issues if not x.manually_verified}
  hits = found & set(wrong)
  return {"found": len(found), "known_wrong": len(wrong),
          "precision": len(hits) / len(found) if found else 0.0,
          "recall": len(hits) / len(wrong) if wrong else 0.0}


def _write_csv(path: str, header: Sequence[str], rows) -> None:
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(header)
  writer.writerows(rows)
  fileio.atomic_write_text(path, buffer.getvalue())


def _shard(csv_path: str, audio_dir: str, output_dir: str, split: str,
           num_folds: int, num_workers: int, pca_from: str = "",
           features: str = "reference") -> str:
  if not fileio.exists(fileio.join(output_dir, records.MANIFEST)):
    sharding.make_tfrecords(run_options.Options(
        csv=csv_path, audio_dir=audio_dir, output_dir=output_dir,
        split=split, num_folds=num_folds, num_workers=num_workers,
        pca_from=pca_from or None, progress=False,
        params=params_lib.preset(features),
        resume=fileio.exists(fileio.join(output_dir, output_folder.STAGING))))
  return output_dir


class _Bench:
  """What every variant's steps share."""

  def __init__(self, data_dir: str, workdir: str,
               config: ml_collections.ConfigDict, num_folds: int,
               num_workers: int, action: str, features: str):
    self.data_dir, self.workdir, self.config = data_dir, workdir, config
    self.features = features
    self.num_folds, self.num_workers, self.action = (num_folds, num_workers,
                                                     action)
    self.labels_csv = fileio.join(data_dir, "test_labels.csv")
    self.truth = evaluation.label_sets(evaluation.read_labels_csv(
        self.labels_csv))
    self.groups = baselines_lib.read_source_groups(data_dir)
    self.strategy = trainer.setup(config)
    self.test_dir = ""

  def shards(self, variant: Variant) -> str:
    folder = fileio.join(self.workdir, variant.name)
    fileio.makedirs(folder)
    train_csv = fileio.join(folder, "train.csv")
    if not fileio.exists(train_csv):
      _write_csv(train_csv, ("fname", "label", "manually_verified"),
                 variant.rows)
      _write_csv(fileio.join(folder, "wrong.csv"), ("fname", "true_label"),
                 sorted(variant.wrong.items()))
    train_dir = _shard(train_csv, fileio.join(self.data_dir, "audio_train"),
                       fileio.join(folder, "tfrecords"), "train",
                       self.num_folds, self.num_workers,
                       features=self.features)
    if not self.test_dir:   # once, from the first variant's PCA fit
      self.test_dir = _shard(
          fileio.join(self.data_dir, "sample_submission.csv"),
          fileio.join(self.data_dir, "audio_test"),
          fileio.join(self.workdir, "test_tfrecords"), "test",
          self.num_folds, self.num_workers, pca_from=train_dir,
          features=self.features)
    return train_dir

  def train(self, train_dir: str, model_dir: str, fold: str,
            issues_csv: str = "") -> float:
    """Seconds (0 when already done)."""
    done = fileio.join(model_dir, "best.weights.h5" if fold != "all"
                       else label_issues.LABEL_ISSUES)
    if fileio.exists(done):
      return 0.0
    config = ml_collections.ConfigDict(self.config.to_dict())
    config.fold = fold
    if issues_csv:
      config.label_issues = issues_csv
      config.on_label_issue = self.action
    started = time.time()
    recipe.train_command(config, train_dir, model_dir, self.strategy)
    return time.time() - started

  def test_figures(self, model_dir: str) -> dict:
    scores, result = score_lib.run(score_lib.ScoreJob(
        model_dirs=model_dir, output=fileio.join(model_dir, "test.csv"),
        data_dir=self.test_dir, labels_csv=self.labels_csv, progress=False))
    del result
    groups = evaluation.by_group(scores, self.truth, self.groups)
    return {g: round(f["map3"], 4) for g, f in groups.items()}


def run_benchmark(data_dir: str, workdir: str,
                  config: ml_collections.ConfigDict,
                  flips: Sequence[float] = (0.1, 0.2, 0.4),
                  unverified: float = 0.6, num_folds: int = 4,
                  action: str = "drop", seed: int = 0,
                  num_workers: int = 0, features: str = "reference") -> dict:
  """Rows, one per variant: precision and recall of the issues found,
  MAP@3 by group without and with the option, seconds."""
  started = time.time()
  rows_, wrong = read_train(data_dir)
  bench = _Bench(data_dir, workdir, config, num_folds, num_workers, action,
                 features)
  table = []
  for variant in variants(rows_, wrong, flips, unverified, seed):
    train_dir = bench.shards(variant)
    folder = fileio.join(workdir, variant.name)
    row = {"variant": variant.name, "wrong_labels": len(variant.wrong)}
    if variant.name == "clean":
      seconds = bench.train(train_dir, fileio.join(folder, "fold0"), "0")
      row.update(without=bench.test_figures(fileio.join(folder, "fold0")),
                 seconds=round(seconds, 1))
      table.append(row)
      continue
    all_dir = fileio.join(folder, "all")
    seconds = bench.train(train_dir, all_dir, "all")
    issues_csv = fileio.join(all_dir, label_issues.LABEL_ISSUES)
    row.update(precision_recall(label_fixes.read_csv(issues_csv),
                                variant.wrong))
    row["without"] = bench.test_figures(out_of_fold.fold_dir(all_dir, 0))
    fixed = fileio.join(folder, f"fold0_{action}")
    seconds += bench.train(train_dir, fixed, "0", issues_csv)
    row["with"] = bench.test_figures(fixed)
    row["seconds"] = round(seconds, 1)
    table.append(row)
    print(describe_row(row), flush=True)
  return {"rows": table, "action": action, "num_folds": num_folds,
          "seconds": round(time.time() - started, 1)}


def describe_row(row: dict) -> str:
  """One line of the table."""
  def figures(name):
    f = row.get(name) or {}
    return " ".join(f"{g} {v:.4f}" for g, v in f.items())
  found = ""
  if "precision" in row:
    found = (f"precision {row['precision']:.3f} recall {row['recall']:.3f} "
             f"({row['found']} found, {row['known_wrong']} wrong); ")
  return (f"{row['variant']:8s} {found}MAP@3 without: {figures('without')}"
          + (f"; with: {figures('with')}" if "with" in row else ""))


def headline(result: dict) -> str:
  """The last line: recall, precision and the MAP@3 recovered, at the
  20% flip (else the first noisy variant)."""
  rows = {r["variant"]: r for r in result["rows"]}
  noisy = [r for r in result["rows"] if "precision" in r]
  if not noisy:
    return "no noisy variant measured"
  row = rows.get("flip20", noisy[0])
  clean = rows.get("clean", {}).get("without", {}).get(evaluation.ALL)
  without = row["without"][evaluation.ALL]
  with_ = row["with"][evaluation.ALL]
  recovered = ""
  if clean is not None and clean > without:
    recovered = (f", {(with_ - without) / (clean - without):.0%} of the "
                 "MAP@3 the wrong labels cost recovered")
  return (f"{row['variant']}: label issues precision {row['precision']:.3f} "
          f"recall {row['recall']:.3f}; MAP@3 {without:.4f} -> {with_:.4f} "
          f"with --config.on_label_issue={result['action']} (clean "
          f"{clean if clean is None else f'{clean:.4f}'}){recovered}")
