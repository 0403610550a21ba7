"""A recipe member with model.fit='logistic': a frozen backbone under a
linear head whose weights are a standardised logistic regression
(model/logistic.py) on the backbone's pooled features of the training
clips (the eval lengths x even windows, as scoring sees them), C chosen
on the validated fold, then refitted on every clip. That head is the
frozen-embedding baseline's own fit, so the member matches logistic
regression on its features by construction, in the time of one pass over
the training clips (every fold of --config.fold=all reuses that pass).
Label fixes (config.label_issues) change the fit's labels and weights;
multi-label heads take no weights (a dropped clip is left out)."""

import time
from typing import List, Optional, Tuple

import numpy as np
import tensorflow as tf

from tagger import errors
from tagger import fileio
from tagger import settings
from tagger.infer import inputs
from tagger.infer import scorer
from tagger.input import label_fixes
from tagger.input import lengths as lengths_lib
from tagger.model import architecture as architecture_lib
from tagger.model import logistic
from tagger.model import model_dir as model_dir_lib
from tagger.model import networks as model_lib
from tagger.shards import data_info
from tagger.shards import records

HELD_OUT = "validation_scores.npz"   # the held-out fit's validation scores


class LogisticError(errors.UserError):
  """A logistic member that cannot be fitted; the message says why."""


def held_out_log_probs(member_dir: str, fnames) -> Tuple[np.ndarray,
                                                        np.ndarray]:
  """(log-probabilities [N, C] of these clips by the member's held-out fit,
  found [N] bool: the clips HELD_OUT holds; the others' rows are the
  uniform)."""
  saved = fileio.read_npz(fileio.join(member_dir, HELD_OUT))
  order = {f: i for i, f in enumerate(saved["fname"].tolist())}
  c = saved["log_probs"].shape[1]
  out = np.full((len(fnames), c), -np.log(c), np.float64)
  found = np.array([f in order for f in fnames], bool)
  rows = [order[f] for f, k in zip(fnames, found) if k]
  out[found] = saved["log_probs"][rows]
  return out, found


def clip_table(data_dir: str):
  """(fnames, labels [N], hot [N, C] bool, folds [N], empty [N]) of a
  shard folder's records, in file order (records.read_headers)."""
  info = data_info.load_data_info(data_dir)
  headers = records.read_headers(tf.data.TFRecordDataset(
      info.all_files(), compression_type=info.compression))
  hot = np.zeros((len(headers[records.FNAME]), info.num_classes), bool)
  for row, labels in enumerate(headers[records.LABELS]):
    hot[row, list(labels)] = True
  return (list(headers[records.FNAME]), headers[records.LABEL], hot,
          headers[records.FOLD], headers[records.EMPTY])


def _fit_head(x: np.ndarray, y: np.ndarray, val: np.ndarray,
              empty: np.ndarray, info: data_info.DataInfo, seed: int,
              fixes: Optional[Tuple[np.ndarray, np.ndarray]] = None):
  """(C, the validation figure, the validated rows' probabilities [V, C]
  from the fit that did not see them (None without validation), the
  logistic regression refitted on every clip with audio at that C) of
  pooled features x [N, D]: C chosen on the validated rows (val [N] bool;
  none: C = 1). fixes: the training rows' (labels [N], weights [N]) after
  the label fixes (validation keeps the given labels); None: none."""
  validation, held_out = {}, None
  y_fit, weight = (y, None) if fixes is None else fixes
  keep = ~empty if weight is None else ~empty & (weight > 0)
  if weight is not None and info.multi_label:
    weight = None   # weights take single-label data: rows dropped only
  def rows(mask):
    return None if weight is None else weight[mask]
  if val.any():
    fit_rows = ~val & keep
    model, c, figure = logistic.fit(x[fit_rows], y_fit[fit_rows], x[val],
                                    y[val], info.num_classes, seed,
                                    info.multi_label, rows(fit_rows))
    validation = {"val_lwlrap" if info.multi_label else "val_map3":
                  round(float(figure), 6)}
    held_out = logistic.probabilities(model, x[val], info.num_classes)
  else:
    c = 1.0
  return c, validation, held_out, logistic.fit_at(
      x[keep], y_fit[keep], c, seed, info.multi_label, rows(keep))


def _label_fixes(run: settings.RunConfig, info: data_info.DataInfo,
                 fnames: List[str], y: np.ndarray
                 ) -> Optional[Tuple[np.ndarray, np.ndarray]]:
  """A logistic member's (labels [N], weights [N]) after
  config.label_issues (label_fixes.py), or None where no clip is acted
  on."""
  try:
    fixes = label_fixes.from_config(
        run.label_issues, info.labels, run.on_label_issue, run.issue_weight,
        run.fix_verified, info.multi_label)
  except errors.UserError as e:
    raise LogisticError(f"config.label_issues: {e}") from e
  if not fixes:
    return None
  row = {f: i for i, f in enumerate(fnames)}
  y, weight = y.copy(), np.ones(len(fnames))
  for fname, label, w in zip(fixes.fnames, fixes.labels, fixes.weights):
    if fname in row:
      weight[row[fname]] = w
      if label >= 0:
        y[row[fname]] = label
  return y, weight


_EMBEDDED = {}   # the last frozen member's embeddings, by what made them


def _frozen_embeddings(data_dir: str, config, loaded: scorer.LoadedModel,
                       strategy) -> scorer.Scores:
  """The frozen backbone's pooled features of every training clip (TTA
  'even', as scoring sees them). Every fold of --config.fold=all embeds
  the same clips with the same frozen network: kept in memory and reused
  for the same shards, network and weights."""
  model = config.get("model", {})
  key = (data_dir, fileio.read_text(fileio.join(data_dir, records.MANIFEST)),
         repr(loaded.data), str(model.get("backbone")),
         str(model.get("backbone_weights")))
  if key not in _EMBEDDED:
    _EMBEDDED.clear()
    _EMBEDDED[key] = scorer.score_records(
        inputs.shard_records(data_dir), [loaded], strategy,
        scorer.Views(tta="even"), embeddings=True)
  return _EMBEDDED[key]


def fit(config, data_dir: str, model_dir: str,
                        strategy: tf.distribute.Strategy) -> dict:
  """A frozen backbone + linear head whose weights are a logistic
  regression on its pooled features (module doc); writes a model dir."""
  started = time.time()
  info = data_info.load_data_info(data_dir)
  model = settings.model_config(config)
  run = settings.run_config(config)
  arch = architecture_lib.architecture_of(model, info, stage2=False)
  eval_lengths = lengths_lib.eval_lengths(info,
                                         settings.input_config(config))
  description = model_dir_lib.data_description(
      info, 1, eval_lengths, settings.augment_config(config).pad_mode, arch)
  with strategy.scope():
    network = model_lib.build_model(
        arch, architecture_lib.train_options(model, freeze_backbone=True))
  loaded = scorer.LoadedModel(model_dir, description,
                                 model_lib.with_embedding(network))
  scores = _frozen_embeddings(data_dir, config, loaded, strategy)
  fnames, labels, hot, folds, empty = clip_table(data_dir)
  if fnames != scores.fnames:
    raise LogisticError(f"{data_dir}: its records changed while read")
  y = hot.astype(np.int64) if info.multi_label else labels
  fold = run.fold
  val = (folds == int(fold)) & ~empty if fold != "none" else np.zeros_like(
      empty)
  c, validation, held_out, fitted = _fit_head(
      scores.embeddings, y, val, empty, info, run.seed,
      _label_fixes(run, info, fnames, y))
  kernel, bias = logistic.dense_weights(fitted, info.num_classes)
  network.get_layer("probs").set_weights([kernel, bias])
  fileio.makedirs(model_dir)
  fileio.atomic_write_text(fileio.join(model_dir, model_dir_lib.CONFIG),
                           config.to_json_best_effort(indent=2))
  model_dir_lib.write_data(model_dir, description)
  model_dir_lib.save_weights(network, fileio.join(model_dir,
                                                  model_dir_lib.BEST))
  if held_out is not None:   # the refit saw these clips: keep its scores
    fileio.write_npz(fileio.join(model_dir, HELD_OUT), fname=np.array(
        [f for f, v in zip(fnames, val) if v]), log_probs=np.log(
            np.maximum(held_out, 1e-9)).astype(np.float32))
  summary = {"fold": fold, "stage": 1, "fit": "logistic", "C": c,
             "train_clips": int((~empty).sum()),
             "validation_clips": int(val.sum()),
             "best": {"epoch": 0, "phase": "logistic"},
             "best_model_validation": validation,
             "best_weights": fileio.join(model_dir, model_dir_lib.BEST),
             "parameters": model_lib.parameter_counts(network),
             "seconds": round(time.time() - started, 1)}
  fileio.write_json(fileio.join(model_dir, model_dir_lib.SUMMARY), summary)
  return summary
