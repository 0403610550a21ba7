"""How good the recipe is on a dataset, beside linear models on the same
shards: the figures behind tools/benchmark_quality.

The baselines and the source groups are baselines.py's.
"""

import dataclasses
import os
import time
from typing import Dict, Optional, Sequence, Tuple

from tagger import fileio
from tagger.configs import common
from tagger.infer import evaluation
from tagger.infer import scorer
from tagger.lab import baselines as baselines_lib
from tagger.shards import records



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
  by source group (baselines_lib.read_source_groups), and `warnings` says where
  validation misleads. With recipe (a config spec, configs/cpu.py:
  new_audio) the recipe is trained by the user's command (tools/train,
  recipe_flags added) on the reference shards, after the configs; rows:
  each member alone, the recipe without each member, the whole recipe
  (last). Steps already done under workdir are skipped (a re-run
  resumes)."""
  from tagger.lab import demo  # pylint: disable=g-import-not-at-top
  started = time.time()
  run = _start(data_dir, workdir, fold, pretrained_weights)
  layout = demo.LAYOUT_2019 if run.layout_2019 else demo.LAYOUT_2018
  # One shard set per feature set the configs' backbones need (the
  # reference's first: the linear baselines read it).
  feature_sets = ["reference"] + sorted(
      {_feature_set(c) for c in configs} - {"reference"} |
      ({_recipe_feature_set(recipe)} - {"reference"} if recipe else set()))
  for features in feature_sets:
    demo.make_shards(workdir, data_dir, num_workers, layout, features)
  stages, last = _train_configs(run, configs)
  if recipe:
    stages += recipe_stages(run, recipe, recipe_flags)
  elif len(last) > 1:   # several kinds of model: their last together
    stages.append({"name": "ensemble",
                   "model_dir": ",".join(s["model_dir"] for s in last),
                   "val_map3": None,
                   **_ensemble(last, workdir, run.truth, run.groups),
                   "train_seconds": sum(s["train_seconds"] for s in stages)})
  train_dir = fileio.join(demo.shard_root(workdir), "train")
  test_dir = fileio.join(demo.shard_root(workdir), "test")
  embeddings = None
  if pretrained_weights and not run.layout_2019:
    embeddings = baselines_lib.pretrained_embeddings(
        data_dir, (train_dir, test_dir), pretrained_weights,
        fileio.join(workdir, "pretrained_embeddings.npz"))
  baselines = baselines_lib.linear_baselines(
      train_dir, test_dir, run.truth, val_fold=fold, groups=run.groups,
      embeddings=embeddings)
  stages = [{k: v for k, v in s.items() if k != "scores"} for s in stages]
  return {"stages": stages, "baselines": baselines,
          "warnings": source_warnings(stages, baselines, run.groups),
          "seconds": time.time() - started}


@dataclasses.dataclass(frozen=True)
class _Run:
  """What every stage of one benchmark run shares."""
  workdir: str
  fold: int
  labels_csv: str            # the test answers
  truth: Dict[str, tuple]    # fname -> its labels
  groups: Dict[str, str]     # fname -> source group (none: {})
  layout_2019: bool          # FSDKaggle2019's layout (curated + noisy)


def _start(data_dir: str, workdir: str, fold: int,
           pretrained_weights: str) -> _Run:
  """The run's answers and source groups, after the checks that come
  before minutes of sharding (the answers, the weights)."""
  labels_csv = fileio.join(data_dir, "test_labels.csv")
  if not fileio.exists(labels_csv):
    raise baselines_lib.QualityError(
        f"{labels_csv} not found: the benchmark needs the test answers "
        "(fname,label) beside sample_submission.csv")
  if pretrained_weights:
    from tagger.model import aisfx_checkpoint  # pylint: disable=g-import-not-at-top
    aisfx_checkpoint.cnn9_state(pretrained_weights)   # one line if bad
  return _Run(workdir, fold, labels_csv,
              evaluation.label_sets(evaluation.read_labels_csv(labels_csv)),
              baselines_lib.read_source_groups(data_dir),
              fileio.exists(fileio.join(data_dir, "train_curated.csv")))


def _train_configs(run: _Run, configs: Sequence) -> Tuple[list, list]:
  """Trains each config in turn on the fold (stage 2 from this run's
  stage-1 model of the same backbone) and scores it: (the rows, the last
  row of each kind of model)."""
  from tagger.lab import demo  # pylint: disable=g-import-not-at-top
  from tagger.train import trainer  # pylint: disable=g-import-not-at-top
  strategy = trainer.setup(configs[0]) if configs else None
  stages, previous = [], {}
  for config in configs:
    config.fold = str(run.fold)
    if run.layout_2019:
      common.curated_noisy(config)
    backbone = str(config.model.backbone)
    kind = backbone + ("_probe" if config.model.get("freeze_backbone")
                       else "")
    name = f"stage{config.stage}" + ("" if kind == "mobilenet_v2"
                                      else f"_{kind}")
    if config.stage == 2 and kind in previous:
      config.model.init_from = fileio.join(   # else the config's own
          run.workdir, previous[kind], f"fold{run.fold}")
    model_dir = fileio.join(run.workdir, name, f"fold{run.fold}")
    shards = demo.shard_root(run.workdir, _feature_set(config))
    stage_started = time.time()
    summary = trainer.train(config, fileio.join(shards, "train"), model_dir,
                            strategy)
    print(trainer.describe_summary(summary), flush=True)
    validation = summary.get("best_model_validation", {})
    stages.append({"name": name, "model_dir": model_dir,
                   "val_map3": validation.get("val_map3"),
                   **_score_models(model_dir, name, run,
                                   fileio.join(shards, "test")),
                   "train_seconds": time.time() - stage_started})
    previous[kind] = name
  return stages, [s for s in stages if s["name"] in previous.values()]


RECIPE_DIR = "new_audio"


def recipe_stages(run: _Run, spec: str, flags: Sequence[str]) -> list:
  """Trains the recipe with tools/train (a child process: the user's
  command) into workdir/new_audio, scores each member on the test shards
  and returns the rows: each member alone, the recipe without each member,
  then the whole recipe (the members' geometric mean, as tools/score
  --model_dirs=workdir/new_audio combines them)."""
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tagger.model import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  from tagger.lab import demo  # pylint: disable=g-import-not-at-top
  workdir = run.workdir
  shards = demo.shard_root(workdir, _recipe_feature_set(spec))
  model_dir = fileio.join(workdir, RECIPE_DIR)
  started = time.time()
  command = [sys.executable, "-m", "tagger.cli.train", f"--config={spec}",
             f"--data_dir={fileio.join(shards, 'train')}",
             f"--model_dir={model_dir}", f"--config.fold={run.fold}", *flags]
  print(" ".join(command), flush=True)
  if subprocess.run(command, check=False).returncode != 0:
    raise baselines_lib.QualityError(f"tools/train --config={spec} failed "
                                     "(its output is above)")
  command_seconds = time.time() - started   # ~0 where all had trained before
  members = model_dir_lib.recipe_members(model_dir, chosen=False)
  chosen = model_dir_lib.recipe_members(model_dir)
  rows = []
  for member in members:
    name = f"{RECIPE_DIR}/{os.path.basename(member)}"
    summary = fileio.read_json(fileio.join(member, model_dir_lib.SUMMARY))
    member_started = time.time()
    rows.append({"name": name, "model_dir": member,
                 "val_map3": summary.get("best_model_validation", {}).get(
                     "val_map3"),
                 **_score_models(member, name.replace("/", "_"), run,
                                 fileio.join(shards, "test")),
                 "train_seconds": _member_seconds(member, summary),
                 "score_seconds": time.time() - member_started})
  return rows + combination_rows(rows, run, model_dir,
                                  {"command_seconds": command_seconds},
                                  chosen=chosen)


def combination_rows(members: Sequence[dict], run: _Run, model_dir: str,
                     extra: Optional[dict] = None,
                     chosen: Optional[Sequence[str]] = None) -> list:
  """The members' scores together: with three or more, the recipe without
  each member (its marginal value), then the whole recipe (last: the
  members it chose on validation where `chosen` names fewer than all)."""
  rows = []
  for left_out in members if len(members) > 2 else []:
    kept = [r for r in members if r is not left_out]
    rows.append({"name": f"{RECIPE_DIR} without "
                         f"{os.path.basename(left_out['model_dir'])}",
                 "model_dir": ",".join(r["model_dir"] for r in kept),
                 "val_map3": None,
                 **_ensemble(kept, run.workdir, run.truth, run.groups),
                 "train_seconds": sum(r["train_seconds"] for r in kept)})
  kept = [r for r in members if r["model_dir"] in (chosen or [
      r["model_dir"] for r in members])]
  every = {"name": RECIPE_DIR, "model_dir": model_dir, "val_map3": None,
           "train_seconds": sum(r["train_seconds"] for r in members)}
  if len(kept) < len(members):   # every member, then the chosen ones
    rows.append({**every, "name": f"{RECIPE_DIR} (every member)",
                 **_ensemble(members, run.workdir, run.truth, run.groups)})
    every["name"] = f"{RECIPE_DIR} (chose " + ", ".join(
        os.path.basename(r["model_dir"]) for r in kept) + ")"
  rows.append({**every, **_ensemble(kept, run.workdir, run.truth,
                                    run.groups), **(extra or {})})
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


def _score_models(model_dirs: str, name: str, run: _Run,
                  test_dir: str) -> dict:
  """The test figures of model dirs scored together (TTA), as tools/score
  scores them; their scores (in memory, for the ensembles) under
  "scores", written as workdir/<name>_probs.csv too."""
  from tagger.infer import score as score_lib  # pylint: disable=g-import-not-at-top
  scores, result = score_lib.run(score_lib.ScoreJob(
      model_dirs=model_dirs, output=fileio.join(run.workdir, f"{name}.csv"),
      data_dir=test_dir, labels_csv=run.labels_csv,
      probs_out=fileio.join(run.workdir, f"{name}_probs.csv"),
      progress=False))
  figures = result["evaluation"]
  return {"map3": figures["map3"], "accuracy": figures["accuracy"],
          "lwlrap": figures.get("lwlrap"), "scores": scores,
          "groups": evaluation.by_group(scores, run.truth, run.groups)}


def _feature_set(config) -> str:
  """The params.PRESETS feature set a config's backbone needs."""
  from tagger.model import backbones  # pylint: disable=g-import-not-at-top
  return backbones.backbone_spec(
      str(config.model.backbone)).features or "reference"


def _recipe_feature_set(spec: str) -> str:
  from tagger import recipe as recipe_lib  # pylint: disable=g-import-not-at-top
  from tagger import settings  # pylint: disable=g-import-not-at-top
  return recipe_lib.feature_set(settings.load_config(spec))


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
  every = figures[baselines_lib.ALL]
  return {"map3": every["map3"], "accuracy": every["accuracy"],
          "lwlrap": every.get("lwlrap"), "scores": scores, "groups": figures}


WARN_GAP = 0.1   # same-source minus cross-source MAP@3 worth a warning


def source_warnings(stages, baselines, groups: Dict[str, str]) -> list:
  """Lines that tell a user where the validation figure misleads."""
  if not stages:
    return []
  last = stages[-1]
  if not groups:
    return [f"no {baselines_lib.SOURCES_CSV} in the set: the test clips may "
            "come from the "
            "sources the network trained on, as the validation fold does; "
            "list each clip's recording source (fname,source) to measure "
            "sources it never heard"]
  cross = last["groups"].get(baselines_lib.CROSS)
  if cross is None:
    return [f"every test clip's source is also in the train split "
            f"({baselines_lib.SOURCES_CSV}): nothing here measures sources "
            "the network never heard"]
  out = []
  val = next((s["val_map3"] for s in reversed(stages)
              if s.get("val_map3") is not None), None)
  if val is not None and val - cross["map3"] > WARN_GAP:
    out.append(f"validation MAP@3 {val:.3f} is measured on the training "
               f"sources; on sources training never heard, {last['name']} "
               f"gets {cross['map3']:.3f} ({cross['map3'] - val:+.3f})")
  for name, figures in baselines.items():
    other = figures["groups"].get(baselines_lib.CROSS)
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
