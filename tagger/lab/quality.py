"""How good the recipe is on a dataset, beside linear models on the same
shards: the figures behind tools/benchmark_quality.

The two baselines are what an ML engineer tries first on the features the
shards already hold, fitted on the rows the network trains on (the folds
other than the validated one), their C chosen on the validated fold, and
measured on the test split:
  pca       logistic regression on each clip's PCA vector (the stage-2
            model's second input);
  mel_stats logistic regression on each clip's log-mel mean and standard
            deviation over time (2 x mels values);
  pretrained (with the weights) logistic regression on a frozen
            audio-pretrained embedding of each clip (aisfx's CNN9, 1,024
            values: tagger/pretrained.py).

Recording sources: a set with sources.csv (fname,source[,split]) is
measured in two groups beside the whole test split: clips from sources
the train split also holds (same source) and from sources it never holds
(cross source). The validation fold is drawn from the train split, so it
shares its sources: only the cross-source group says what a user with
other microphones, rooms or instruments gets (BUILD.md, "Quality on
sources never heard").
"""

import dataclasses
import os
import time
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tagger import errors
from tagger import fileio
from tagger.infer import evaluation
from tagger.infer import scorer
from tagger.model import logistic
from tagger.shards import data_info
from tagger.shards import records

SOURCES_CSV = "sources.csv"
ALL, SAME, CROSS = evaluation.ALL, "same_source", "cross_source"
PRETRAINED = "pretrained"


class QualityError(errors.UserError):
  """A dataset the quality benchmark cannot use; the message says why."""


@dataclasses.dataclass
class Split:
  """A shard folder's clips as numpy arrays, in file order."""
  fnames: np.ndarray      # [N] str
  labels: np.ndarray      # [N] int (the record's; test splits: placeholder)
  folds: np.ndarray       # [N] int
  verified: np.ndarray    # [N] int
  empty: np.ndarray       # [N] bool
  pca: np.ndarray         # [N, pca_dim]
  mel_stats: np.ndarray   # [N, 2 * mels] log-mel mean and std over time
  hot: np.ndarray         # [N, C] every label of the clip (multi-hot)


def read_split(data_dir: str) -> Split:
  """Every record of a shard folder (data_info.load_data_info's files)."""
  info = data_info.load_data_info(data_dir)
  files = info.all_files()
  columns = {k: [] for k in ("fnames", "labels", "folds", "verified",
                             "empty", "pca", "mel_stats", "hot")}
  dataset = tf.data.TFRecordDataset(files, compression_type=info.compression)
  for serialized in dataset:
    parsed = records.parse_example(serialized, info.pca_dim)
    log_mel = parsed[records.LOG_MEL].numpy()  # [mels, T]
    columns["fnames"].append(parsed[records.FNAME].numpy().decode())
    columns["labels"].append(int(parsed[records.LABEL]))
    columns["folds"].append(int(parsed[records.FOLD]))
    columns["verified"].append(int(parsed[records.MANUALLY_VERIFIED]))
    columns["empty"].append(bool(parsed[records.EMPTY]))
    columns["pca"].append(parsed[records.PCA].numpy())
    hot = np.zeros(info.num_classes, bool)
    hot[tf.sparse.to_dense(parsed[records.LABELS]).numpy()] = True
    columns["hot"].append(hot)
    columns["mel_stats"].append(np.concatenate(
        [log_mel.mean(axis=1), log_mel.std(axis=1)]) if log_mel.shape[1]
        else np.zeros(2 * log_mel.shape[0], np.float32))
  return Split(**{k: np.array(v) for k, v in columns.items()})


def read_source_groups(data_dir: str) -> Dict[str, str]:
  """Test fname -> 'same_source' (its recording source is also in the
  train split) or 'cross_source' (training never hears it), from the
  set's sources.csv (fname,source[,split]; without split, the clips of
  train.csv are the train split). {} when the set has no sources.csv."""
  import csv  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  path = fileio.join(data_dir, SOURCES_CSV)
  if not fileio.exists(path):
    return {}
  reader = csv.DictReader(io.StringIO(fileio.read_text(path)))
  if not {"fname", "source"} <= set(reader.fieldnames or []):
    raise QualityError(f"{path}: needs the columns fname,source[,split]")
  rows = list(reader)
  if rows and "split" not in rows[0]:
    from tagger.shards import clip_files  # pylint: disable=g-import-not-at-top
    train = {r.fname for r in clip_files.read_csv_rows(
        fileio.join(data_dir, "train.csv"), "train")}
    for r in rows:
      r["split"] = "train" if r["fname"] in train else "test"
  heard = {r["source"] for r in rows if r["split"] == "train"}
  return {r["fname"]: SAME if r["source"] in heard else CROSS
          for r in rows if r["split"] != "train"}


@dataclasses.dataclass(frozen=True)
class _Baselines:
  """What every linear baseline of one benchmark shares: the splits, the
  answers, the validated fold and the source groups."""
  train: Split
  test: Split
  truth: Dict[str, Tuple[str, ...]]
  labels: Sequence[str]
  multi: bool
  val_fold: int
  seed: int
  groups: Optional[Dict[str, str]]

  def fit_and_measure(self, x_train, x_test) -> dict:
    """A logistic regression on train features (the folds other than
    val_fold; C by the validated fold) measured on the test features."""
    train, labels, multi = self.train, self.labels, self.multi
    fit_rows = (train.folds != self.val_fold) & ~train.empty
    val_rows = (train.folds == self.val_fold) & ~train.empty
    y_train = train.hot if multi else train.labels
    model, c, val_figure = logistic.fit(
        x_train[fit_rows], y_train[fit_rows], x_train[val_rows],
        y_train[val_rows], len(labels), self.seed, multi)
    by_group = evaluation.by_group(evaluation.probability_scores(
        self.test.fnames, logistic.probabilities(model, x_test, len(labels)),
        labels, multi), self.truth, self.groups)
    return {**by_group[ALL], "C": c,
            "val_lwlrap" if multi else "val_map3": val_figure,
            "train_clips": int(fit_rows.sum()), "groups": by_group}


def linear_baselines(train_dir: str, test_dir: str,
                     truth: Dict[str, Tuple[str, ...]], val_fold: int = 0,
                     seed: int = 0, groups: Optional[Dict[str, str]] = None,
                     embeddings: Optional[Dict[str, np.ndarray]] = None
                     ) -> Dict[str, dict]:
  """The test figures of each baseline (see the module doc; 'pretrained'
  too when embeddings, fname -> vector, are given): MAP@3 and top-1 of
  the single-label test clips, for multi-label shards also lwlrap
  (one-vs-rest logistic regression); under 'groups' the same by source
  (read_source_groups)."""
  truth = evaluation.label_sets(truth)
  info = data_info.load_data_info(train_dir)
  train, test = read_split(train_dir), read_split(test_dir)
  features = {"pca": (train.pca, test.pca),
              "mel_stats": (train.mel_stats, test.mel_stats)}
  if embeddings is not None:
    features[PRETRAINED] = tuple(np.stack([embeddings[f] for f in
                                           split.fnames])
                                 for split in (train, test))
  baselines = _Baselines(train, test, truth, info.labels, info.multi_label,
                         val_fold, seed, groups)
  return {name: baselines.fit_and_measure(x_train, x_test)
          for name, (x_train, x_test) in features.items()}


def pretrained_embeddings(data_dir: str, split_dirs: Sequence[str],
                          weights: str, cache: str) -> Dict[str, np.ndarray]:
  """fname -> the CNN9 clip embedding (tagger/pretrained.py) of every clip
  of the shard folders, from the audio of a Kaggle-layout set (decoded at
  44.1 kHz, not trimmed: aisfx's own way). Cached in `cache` (.npz)."""
  from tagger.audio import decode  # pylint: disable=g-import-not-at-top
  from tagger.shards import clip_files  # pylint: disable=g-import-not-at-top
  from tagger.model import pretrained  # pylint: disable=g-import-not-at-top
  from tagger.audio.params import FeatureParams  # pylint: disable=g-import-not-at-top
  done = dict(fileio.read_npz(cache)) if fileio.exists(cache) else {}
  wanted = []
  for split_dir, folder in zip(split_dirs, ("audio_train", "audio_test")):
    wanted += [(f, fileio.join(data_dir, folder)) for f in
               read_split(split_dir).fnames if f not in done]
  if wanted:
    model = pretrained.embedding_model(weights)
    params = FeatureParams()
    for start in range(0, len(wanted), 64):
      chunk, waves = wanted[start:start + 64], []
      for fname, folder in chunk:
        path, problem = clip_files.resolve(folder, fname)
        try:
          waves.append(decode.decode_audio(
              clip_files.read_clip(path), fname, params)[0]
                       if not problem else np.zeros(0, np.float32))
        except (decode.AudioError, OSError, tf.errors.OpError):
          waves.append(np.zeros(0, np.float32))
      for (fname, _), e in zip(chunk, pretrained.clip_embeddings(waves,
                                                                 model)):
        done[fname] = e.astype(np.float32)
    fileio.write_npz(cache, **done)
  return done


def run_benchmark(data_dir: str, workdir: str, configs: Sequence,
                  fold: int = 0, num_workers: int = 0,
                  pretrained_weights: str = "", recipe: str = "",
                  recipe_flags: Sequence[str] = ()) -> dict:
  """Shards a Kaggle-layout set (train.csv, sample_submission.csv,
  test_labels.csv; or FSDKaggle2019's train_curated.csv + train_noisy.csv,
  test/, sample_submission.csv, test_labels.csv with a labels column: then
  trained on both sources, noisy at half weight, validated on curated),
  trains each config in turn on one fold (stage 2 starts from the stage-1
  model of this run with the same backbone), scores the test split with
  each stage's model (TTA), and with several backbones their last models
  together ('ensemble'), and fits the linear baselines on the same split (with
  pretrained_weights, aisfx's wheel or checkpoint, also the frozen
  pretrained embedding's). With sources.csv every figure is also given
  by source group (read_source_groups), and `warnings` says where
  validation misleads. With recipe (a config spec, configs/cpu.py:
  new_audio) the recipe is trained by the user's command (tools/train,
  recipe_flags added) on the reference shards, after the configs; rows:
  each member alone, the recipe without each member, the whole recipe
  (last). Steps already done under workdir are skipped (a re-run
  resumes)."""
  from tagger.lab import demo  # pylint: disable=g-import-not-at-top
  from tagger.train import trainer  # pylint: disable=g-import-not-at-top
  started = time.time()
  labels_csv = fileio.join(data_dir, "test_labels.csv")
  if not fileio.exists(labels_csv):  # before minutes of sharding
    raise QualityError(f"{labels_csv} not found: the benchmark needs the "
                       "test answers (fname,label) beside sample_submission"
                       ".csv")
  if pretrained_weights:
    from tagger.model import pretrained  # pylint: disable=g-import-not-at-top
    pretrained.cnn9_state(pretrained_weights)  # one line, before sharding
  truth = evaluation.label_sets(evaluation.read_labels_csv(labels_csv))
  groups = read_source_groups(data_dir)
  layout_2019 = fileio.exists(fileio.join(data_dir, "train_curated.csv"))
  layout = demo.LAYOUT_2019 if layout_2019 else demo.LAYOUT_2018
  # One shard set per feature set the configs' backbones need (the
  # reference's first: the linear baselines read it).
  feature_sets = ["reference"] + sorted(
      {_feature_set(c) for c in configs} - {"reference"})
  for features in feature_sets:
    demo.make_shards(workdir, data_dir, num_workers, layout, features)
  train_dir = fileio.join(demo.shard_root(workdir), "train")
  test_dir = fileio.join(demo.shard_root(workdir), "test")
  strategy = trainer.setup(configs[0]) if configs else None
  stages, previous = [], {}
  for config in configs:
    config.fold = str(fold)
    if layout_2019:
      config.input.val_sources = config.input.val_sources or "curated"
      config.source_weights = config.source_weights or "noisy=0.5"
    backbone = str(config.model.backbone)
    kind = backbone + ("_probe" if config.model.get("freeze_backbone")
                       else "")
    name = f"stage{config.stage}" + ("" if kind == "mobilenet_v2"
                                      else f"_{kind}")
    if config.stage == 2 and kind in previous:
      config.model.init_from = fileio.join(   # else the config's own
          workdir, previous[kind], f"fold{fold}")
    model_dir = fileio.join(workdir, name, f"fold{fold}")
    shards = demo.shard_root(workdir, _feature_set(config))
    stage_started = time.time()
    summary = trainer.train(config, fileio.join(shards, "train"), model_dir,
                            strategy)
    print(trainer.describe_summary(summary), flush=True)
    validation = summary.get("best_model_validation", {})
    stages.append({"name": name, "model_dir": model_dir,
                   "val_map3": validation.get("val_map3"),
                   **_score_models(model_dir, name, workdir,
                                   fileio.join(shards, "test"), labels_csv,
                                   truth, groups),
                   "train_seconds": time.time() - stage_started})
    previous[kind] = name
  if recipe:
    stages += recipe_stages(recipe, recipe_flags, workdir, fold, labels_csv,
                            truth, groups)
  elif len(previous) > 1:   # several kinds of model: their last together
    last = [s for s in stages if s["name"] in previous.values()]
    stages.append({"name": "ensemble",
                   "model_dir": ",".join(s["model_dir"] for s in last),
                   "val_map3": None,
                   **_ensemble(last, workdir, truth, groups),
                   "train_seconds": sum(s["train_seconds"] for s in stages)})
  embeddings = None
  if pretrained_weights and not layout_2019:
    embeddings = pretrained_embeddings(
        data_dir, (train_dir, test_dir), pretrained_weights,
        fileio.join(workdir, "pretrained_embeddings.npz"))
  baselines = linear_baselines(train_dir, test_dir, truth, val_fold=fold,
                               groups=groups, embeddings=embeddings)
  stages = [{k: v for k, v in s.items() if k != "scores"} for s in stages]
  return {"stages": stages, "baselines": baselines,
          "warnings": source_warnings(stages, baselines, groups),
          "seconds": time.time() - started}


RECIPE_DIR = "new_audio"


def recipe_stages(spec: str, flags: Sequence[str], workdir: str, fold: int,
                  labels_csv: str, truth, groups) -> list:
  """Trains the recipe with tools/train (a child process: the user's
  command) into workdir/new_audio, scores each member on the test shards
  and returns the rows: each member alone, the recipe without each member,
  then the whole recipe (the members' geometric mean, as tools/score
  --model_dirs=workdir/new_audio combines them)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tagger.model import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  from tagger.lab import demo  # pylint: disable=g-import-not-at-top
  shards = demo.shard_root(workdir)
  model_dir = fileio.join(workdir, RECIPE_DIR)
  started = time.time()
  command = [sys.executable, "-m", "tagger.cli.train", f"--config={spec}",
             f"--data_dir={fileio.join(shards, 'train')}",
             f"--model_dir={model_dir}", f"--config.fold={fold}", *flags]
  print(" ".join(command), flush=True)
  if subprocess.run(command, check=False).returncode != 0:
    raise QualityError(f"tools/train --config={spec} failed (its output "
                       "is above)")
  train_seconds = time.time() - started
  members = model_dir_lib.find(model_dir)
  rows = []
  for member in members:
    name = f"{RECIPE_DIR}/{os.path.basename(member)}"
    summary = fileio.read_json(fileio.join(member, model_dir_lib.SUMMARY))
    member_started = time.time()
    rows.append({"name": name, "model_dir": member,
                 "val_map3": summary.get("best_model_validation", {}).get(
                     "val_map3"),
                 **_score_models(member, name.replace("/", "_"), workdir,
                                 fileio.join(shards, "test"), labels_csv,
                                 truth, groups),
                 "train_seconds": _member_seconds(member, summary),
                 "score_seconds": time.time() - member_started})
  for left_out in rows if len(rows) > 2 else []:
    kept = [r for r in rows if r is not left_out]
    rows.append({"name": f"{RECIPE_DIR} without "
                         f"{os.path.basename(left_out['model_dir'])}",
                 "model_dir": ",".join(r["model_dir"] for r in kept),
                 "val_map3": None, **_ensemble(kept, workdir, truth, groups),
                 "train_seconds": sum(r["train_seconds"] for r in kept)})
  members_rows = rows[:len(members)]
  rows.append({"name": RECIPE_DIR, "model_dir": model_dir,
               "val_map3": None,
               **_ensemble(members_rows, workdir, truth, groups),
               "train_seconds": train_seconds})
  return rows


def recipe_weights_flags(spec: str, weights: str) -> list:
  """tools/train flags that give the recipe's pretrained members (CNN9
  backbones) these weights."""
  from tagger import settings  # pylint: disable=g-import-not-at-top
  config = settings.load_config(spec)
  return [f"--config.members.{name}.model.backbone_weights={weights}"
          for name in config.members.keys()
          if str(config.members[name].model.backbone).startswith("cnn9")]


def _member_seconds(member_dir: str, summary: dict) -> float:
  """A member's training time: the epochs' (history.csv) or the fit's."""
  import csv  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  if "seconds" in summary:
    return float(summary["seconds"])
  path = fileio.join(member_dir, "history.csv")
  if not fileio.exists(path):
    return 0.0
  rows = list(csv.DictReader(io.StringIO(fileio.read_text(path))))
  return sum(float(r.get("seconds") or 0.0) for r in rows)


def _score_models(model_dirs: str, name: str, workdir: str, test_dir: str,
                  labels_csv: str, truth, groups) -> dict:
  """The test figures of model dirs scored together (TTA), as tools/score
  scores them; their scores (in memory, for the ensembles) under
  "scores", written as workdir/<name>_probs.csv too."""
  from tagger.infer import score as score_lib  # pylint: disable=g-import-not-at-top
  scores, result = score_lib.run(score_lib.ScoreJob(
      model_dirs=model_dirs, output=fileio.join(workdir, f"{name}.csv"),
      data_dir=test_dir, labels_csv=labels_csv,
      probs_out=fileio.join(workdir, f"{name}_probs.csv"), progress=False))
  figures = result["evaluation"]
  return {"map3": figures["map3"], "accuracy": figures["accuracy"],
          "lwlrap": figures.get("lwlrap"), "scores": scores,
          "groups": evaluation.by_group(scores, truth, groups)}


def _feature_set(config) -> str:
  """The params.PRESETS feature set a config's backbone needs."""
  from tagger.model import networks as model_lib  # pylint: disable=g-import-not-at-top
  return model_lib.backbone_spec(
      str(config.model.backbone)).features or "reference"


def _ensemble(stages, workdir: str, truth, groups) -> dict:
  """The test figures of stages' scores together, as tools/score combines
  models (scorer.combine_scores: each stage counts once), whichever shard
  set each was scored on; written as ensemble_probs.csv."""
  from tagger.infer import outputs  # pylint: disable=g-import-not-at-top
  scores = scorer.combine_scores([s["scores"] for s in stages],
                                 [1] * len(stages))
  fileio.atomic_write_text(fileio.join(workdir, "ensemble_probs.csv"),
                           outputs.probabilities_csv(scores))
  figures = evaluation.by_group(scores, truth, groups)
  return {"map3": figures[ALL]["map3"], "accuracy": figures[ALL]["accuracy"],
          "lwlrap": figures[ALL].get("lwlrap"), "scores": scores,
          "groups": figures}


WARN_GAP = 0.1   # same-source minus cross-source MAP@3 worth a warning


def source_warnings(stages, baselines, groups: Dict[str, str]) -> list:
  """Lines that tell a user where the validation figure misleads."""
  if not stages:
    return []
  last = stages[-1]
  if not groups:
    return [f"no {SOURCES_CSV} in the set: the test clips may come from the "
            "sources the network trained on, as the validation fold does; "
            "list each clip's recording source (fname,source) to measure "
            "sources it never heard"]
  cross = last["groups"].get(CROSS)
  if cross is None:
    return [f"every test clip's source is also in the train split "
            f"({SOURCES_CSV}): nothing here measures sources the network "
            "never heard"]
  out = []
  val = next((s["val_map3"] for s in reversed(stages)
              if s.get("val_map3") is not None), None)
  if val is not None and val - cross["map3"] > WARN_GAP:
    out.append(f"validation MAP@3 {val:.3f} is measured on the training "
               f"sources; on sources training never heard, {last['name']} "
               f"gets {cross['map3']:.3f} ({cross['map3'] - val:+.3f})")
  for name, figures in baselines.items():
    other = figures["groups"].get(CROSS)
    if other and other["map3"] > cross["map3"]:
      out.append(f"on sources never heard, the {name} baseline "
                 f"({other['map3']:.3f}) beats {last['name']} "
                 f"({cross['map3']:.3f})")
  return out


# ---------------------------------------------------------------------------
# Fine-tuning on new labels against training from scratch.


def _write_label_subset(source_csv: str, labels, path: str) -> int:
  """The rows of a train CSV whose label is one of labels, as a CSV."""
  import csv  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top
  from tagger.shards import clip_files  # pylint: disable=g-import-not-at-top
  wanted = set(labels)
  rows = [r for r in clip_files.read_csv_rows(source_csv, "train")
          if r.label in wanted]
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["fname", "label", "manually_verified"])
  writer.writerows([r.fname, r.label, r.manually_verified] for r in rows)
  fileio.atomic_write_text(path, buffer.getvalue())
  return len(rows)


def fine_tune_benchmark(workdir: str, config_fn, *, epochs: int = 4,
                        freeze_epochs: int = 1, lr_scale: float = 0.1,
                        fold: int = 0, num_workers: int = 0) -> dict:
  """The demo's classes cut in two halves, A and B (alternate labels of
  the sorted list). Stage 1 trains on A (config_fn('source')); then on B,
  `epochs` epochs from scratch and `epochs` epochs fine-tuned from the A
  model (new head; stem and backbone frozen for freeze_epochs; the
  cyclic LR's bounds times lr_scale), same seed. Returns the B validation
  figures of both runs (the last epoch's and the best epoch's) and the
  time of each."""
  import os  # pylint: disable=g-import-not-at-top
  from tagger.datasets import demo_data  # pylint: disable=g-import-not-at-top
  from tagger.shards import sharding  # pylint: disable=g-import-not-at-top
  from tagger.train import trainer  # pylint: disable=g-import-not-at-top
  data_dir = os.path.join(workdir, "data")
  if not os.path.exists(os.path.join(data_dir, "train.csv")):
    demo_data.make_demo_data(data_dir, demo_data.DemoSpec(test_per_class=0))
  labels = sorted(demo_data.FSD_KAGGLE_2018_LABELS)
  halves = {"a": labels[0::2], "b": labels[1::2]}
  for name, subset in halves.items():
    out = os.path.join(workdir, "tfrecords", name)
    if fileio.exists(os.path.join(out, records.MANIFEST)):
      continue
    csv_path = os.path.join(workdir, f"train_{name}.csv")
    _write_label_subset(os.path.join(data_dir, "train.csv"), subset, csv_path)
    sharding.make_tfrecords(sharding.Options(
        csv=csv_path, audio_dir=os.path.join(data_dir, "audio_train"),
        output_dir=out, split="train", num_workers=num_workers,
        overwrite=True, progress=False))
  strategy = trainer.setup(config_fn("source"))
  source = os.path.join(workdir, "a")
  config = config_fn("source")
  config.fold = str(fold)
  trainer.train(config, os.path.join(workdir, "tfrecords", "a"), source,
                strategy)
  runs = {}
  for name in ("scratch", "fine_tune"):
    config = config_fn("target")
    config.fold = str(fold)
    config.schedule.cyclic_epochs = int(epochs)
    config.schedule.fine_tune_max_epochs = 0
    if name == "fine_tune":
      config.model.init_from = source
      config.model.freeze_epochs = int(freeze_epochs)
      config.schedule.base_lr *= float(lr_scale)
      config.schedule.max_lr *= float(lr_scale)
    model_dir = os.path.join(workdir, f"b_{name}")
    started = time.time()
    summary = trainer.train(config, os.path.join(workdir, "tfrecords", "b"),
                            model_dir, strategy)
    history = fileio.read_text(os.path.join(model_dir, "history.csv"))
    header, *rows = [line.split(",") for line in history.splitlines()]
    last = dict(zip(header, rows[-1]))
    runs[name] = {"last_val_map3": float(last["val_map3"]),
                  "last_val_loss": float(last["val_loss"]),
                  "best_val_map3": summary["best_model_validation"][
                      "val_map3"],
                  "epochs": len(rows),
                  "seconds": round(time.time() - started, 1)}
  return {"classes": {k: len(v) for k, v in halves.items()}, "runs": runs}
