r"""A recipe: several networks trained in turn into one model dir, scored,
exported and served as one tagger (the geometric mean of the members).

  python -m tools.train --config=configs/cpu.py:new_audio \
      --data_dir=tfrecords/train --model_dir=runs/new_audio

A recipe config holds `members`, an ordered ConfigDict of ordinary
training configs, and the run-level keys tools/train reads before any
member (fold, strategy, precision, deterministic). The model dir:

  M/recipe.json   {"members": [names, in training order]}, written first
  M/<member>/     each member's ordinary model dir (best.weights.h5,
                  data.json, summary.json, history.csv, ...)

Every member reads the same shards (one make_tfrecords run, its default
flags) and so shares their front-end: tools/score, tools/export and
tagger.api.Tagger take M as they take one model dir (model_dir.find
expands it into its members). Resuming: a member with summary.json is
done and skipped; the member in progress resumes from its last finished
epoch as any run does; so the same command after kill -9 or SIGTERM goes
on where it stopped, and a finished recipe trains nothing.

A member with model.fit='logistic' (a frozen backbone with a linear head)
is fitted, not trained: infer/logistic_member.py.
"""

import itertools
from typing import Dict, List

import ml_collections
import numpy as np
import tensorflow as tf
from absl import logging

from tagger import errors
from tagger import fileio
from tagger import settings
from tagger.infer import inputs
from tagger.infer import label_issues
from tagger.infer import logistic_member
from tagger.infer import out_of_fold
from tagger.infer import scorer
from tagger.input import label_fixes
from tagger.model import architecture as architecture_lib
from tagger.model import model_dir as model_dir_lib
from tagger.shards import data_info
from tagger.train import trainer



class RecipeError(errors.UserError):
  """A recipe that cannot run as asked; the message says why."""


def is_recipe(config) -> bool:
  return "members" in config


def member_names(config) -> List[str]:
  """The members in training order (config.train_order)."""
  names = list(settings.names(config.get("train_order", "")))
  if sorted(names) != sorted(config.members.keys()) or not names:
    raise RecipeError(f"config.train_order={config.get('train_order')!r} "
                      f"should name each of config.members "
                      f"({sorted(config.members.keys())}) once")
  return names


def feature_set(config) -> str:
  """The params.PRESETS feature set the recipe's shards must be made with
  (make_tfrecords --features): the one its members' backbones need
  ('reference' where none needs one); RecipeError where two differ."""
  from tagger.model import backbones  # pylint: disable=g-import-not-at-top
  needed = {backbones.backbone_spec(str(m.model.backbone)).features
            for m in config.members.values()} - {""}
  if len(needed) > 1:
    raise RecipeError(f"the recipe's members need the shards of different "
                      f"feature sets ({sorted(needed)}); a recipe reads one")
  return needed.pop() if needed else "reference"


def member_config(config, name: str) -> ml_collections.ConfigDict:
  """A member's own training config, with the recipe's run-level keys."""
  member = ml_collections.ConfigDict(config.members[name].to_dict())
  for key in settings.RECIPE_RUN_KEYS:
    if key in config:
      member[key] = config[key]
  return member


def train_command(config, data_dir: str, model_dir: str,
                  strategy: tf.distribute.Strategy) -> dict:
  """What tools/train runs: a recipe (train) or one network
  (trainer.train) on config.fold; fold 'all' trains every fold in turn
  into model_dir/fold{k}, then writes the out-of-fold scores of every
  training clip (out_of_fold.OUT_OF_FOLD) and the clips whose label looks
  wrong (label_issues.LABEL_ISSUES) into model_dir. Each step resumes."""
  one = train if is_recipe(config) else _train_one
  if str(config.get("fold", "0")) != "all":
    return one(config, data_dir, model_dir, strategy)
  info = data_info.load_data_info(settings.names(data_dir)[0])
  if not info.folds:
    raise RecipeError(f"{data_dir} has no fold to validate (every class has "
                      "one clip); train on everything with --config.fold="
                      "none")
  summaries = {}
  for k in info.folds:
    fold_config = ml_collections.ConfigDict(config.to_dict())
    fold_config.fold = str(k)
    summaries[str(k)] = one(fold_config, data_dir,
                            out_of_fold.fold_dir(model_dir, k), strategy)
  table = out_of_fold.write(model_dir, data_dir, strategy)
  path, count = label_issues.write(model_dir, table)
  logging.info("out-of-fold scores of %d clips: %s; %d clip(s) whose label "
               "looks wrong: %s", len(table.fnames), fileio.join(
                   model_dir, out_of_fold.OUT_OF_FOLD), count, path)
  return summaries


def describe_label_issues(model_dir: str) -> str:
  """One line: where the out-of-fold scores and the label issues of a
  --config.fold=all run are, and how many clips look mislabelled."""
  path = fileio.join(model_dir, label_issues.LABEL_ISSUES)
  issues = label_fixes.read_csv(path)
  unverified = sum(not x.manually_verified for x in issues)
  return (f"{len(issues)} training clip(s) whose label looks wrong "
          f"({unverified} unverified), worst first: {path}; train again "
          f"with --config.label_issues={path} to drop them "
          "(--config.on_label_issue=weight|relabel)")


def _train_one(config, data_dir: str, model_dir: str,
               strategy: tf.distribute.Strategy) -> dict:
  """One network: trained, or fitted (model.fit='logistic')."""
  if settings.model_config(config).fit == "logistic":
    return logistic_member.fit(config, data_dir, model_dir, strategy)
  return trainer.train(config, data_dir, model_dir, strategy)


def train(config, data_dir: str, model_dir: str,
          strategy: tf.distribute.Strategy) -> Dict[str, dict]:
  """Trains (or fits) every member in turn into model_dir/<member>;
  {member: its summary}."""
  names = member_names(config)
  if str(config.get("fold", "0")) == "all":
    raise RecipeError("fold 'all' trains every fold in turn: run it with "
                      "tools/train (recipe.train_command)")
  check_weights(config, names)   # one line now, not after a member
  _write_recipe(model_dir, names)
  summaries = {}
  for name in names:
    member, member_dir = member_config(config, name), fileio.join(
        model_dir, name)
    if fileio.exists(fileio.join(member_dir, model_dir_lib.SUMMARY)):
      logging.info("member %s is done (%s)", name, member_dir)
      summaries[name] = fileio.read_json(fileio.join(
          member_dir, model_dir_lib.SUMMARY))
      continue
    logging.info("member %s of %s: %s", names.index(name) + 1, len(names),
                 name)
    summaries[name] = _train_one(member, data_dir, member_dir, strategy)
  if config.get("choose_members", False):
    choose_members(data_dir, model_dir, names, str(config.get("fold", "0")),
                   strategy)
  return summaries


def choose_members(data_dir: str, model_dir: str, names: List[str],
                   fold: str, strategy: tf.distribute.Strategy) -> dict:
  """Keeps the members that earn their place: each member scores the
  validated fold's clips (TTA, as tools/score); of every non-empty subset
  of members, the one whose geometric mean has the best validation MAP@3
  (lwlrap for multi-label data; ties: the larger subset) is written to
  recipe.json as "chosen", which scoring, export and the API then use.
  Done once (a recipe.json with "chosen" is kept); no validated fold:
  every member. Returns recipe.json's contents."""
  path = fileio.join(model_dir, model_dir_lib.RECIPE)
  recipe = fileio.read_json(path)
  if "chosen" in recipe or fold == "none":
    return recipe
  info = data_info.load_data_info(data_dir)
  fnames, labels, hot, folds, empty = logistic_member.clip_table(data_dir)
  val = (folds == int(fold)) & ~empty
  scores = {name: _validation_scores(fileio.join(model_dir, name),
                                     data_dir, fnames, val, strategy)
            for name in names}
  figures = {}
  for size in range(len(names), 0, -1):
    for subset in itertools.combinations(names, size):
      mean = np.mean([scores[n] for n in subset], axis=0)
      figures[",".join(subset)] = round(_validation_figure(
          mean, labels[val], hot[val], info.multi_label), 6)
  best = max(figures, key=lambda k: (figures[k], len(k.split(","))))
  recipe.update({"chosen": best.split(","), "validation": figures})
  fileio.write_json(path, recipe)
  logging.info("members chosen on the validated fold: %s (%s %.4f; all "
               "%.4f)", best, "lwlrap" if info.multi_label else "MAP@3",
               figures[best], figures[",".join(names)])
  return recipe


def _validation_scores(member_dir: str, data_dir: str, fnames: List[str],
                       val: np.ndarray, strategy) -> np.ndarray:
  """A member's log-probabilities [V, C] of the validated clips (val [N]
  of fnames, the shards' order), from a model that never trained on them:
  a logistic member's held-out fit (logistic_member.HELD_OUT: its head was refitted on
  every clip), any other member's best weights (TTA, as tools/score)."""
  held_out = fileio.join(member_dir, logistic_member.HELD_OUT)
  if fileio.exists(held_out):
    log_probs, found = logistic_member.held_out_log_probs(
        member_dir, [f for f, v in zip(fnames, val) if v])
    if not found.all():
      raise RecipeError(f"{held_out} holds other clips than {data_dir}'s "
                        "validated fold")
    return log_probs
  summary = fileio.read_json(fileio.join(member_dir, model_dir_lib.SUMMARY))
  if summary.get("fit") == "logistic":
    raise RecipeError(f"{member_dir}: a logistic member fitted before "
                      f"tagger 0.14 has no {logistic_member.HELD_OUT} (its head saw the "
                      "validated clips); remove the folder and run the same "
                      "command to fit it again (a minute)")
  member = scorer.load_model(member_dir)
  out = scorer.score_records(inputs.shard_records(data_dir), [member],
                             strategy, scorer.Views(tta="even"),
                             progress=False)
  if out.fnames != fnames:
    raise RecipeError(f"{data_dir}: its records changed while read")
  return out.log_probs[val]


def _validation_figure(log_probs: np.ndarray, labels: np.ndarray,
                       hot: np.ndarray, multi_label: bool) -> float:
  """MAP@3 of log_probs [N, C] (lwlrap for multi-label data)."""
  from tagger import metrics  # pylint: disable=g-import-not-at-top
  if multi_label:
    return float(metrics.lwlrap(hot, log_probs)[0])
  return metrics.map_at_3(log_probs, labels)


def check_weights(config, names: List[str]) -> None:
  """Every member's pretrained weights read (aisfx's CNN9 checkpoint)
  before the first member trains: a missing or damaged file is one line
  naming it and how to get it, not an error an hour in."""
  from tagger.model import aisfx_checkpoint  # pylint: disable=g-import-not-at-top
  paths = set()   # members sharing a file: read once
  for name in names:
    model = settings.model_config(member_config(config, name))
    weights = architecture_lib.train_options(model).pretrained
    if model.backbone.startswith("cnn9") and weights:   # 'none': random
      paths.add(weights)
  for path in sorted(paths):
    aisfx_checkpoint.cnn9_state(path)


def _write_recipe(model_dir: str, names: List[str]) -> None:
  path = fileio.join(model_dir, model_dir_lib.RECIPE)
  if fileio.exists(path):
    saved = fileio.read_json(path).get("members")
    if saved != names:
      raise RecipeError(f"{path} lists the members {saved}, this config "
                        f"{names}; use a new --model_dir to start over")
    return
  fileio.makedirs(model_dir)
  fileio.write_json(path, {"members": names})
