"""The README's end-to-end demo: demo data -> shards -> stage 1 and stage 2
of the demo folds -> TTA scoring of the test split -> MAP@3.

Each step is skipped when its output is already complete (and training
resumes from its last epoch), so a re-run goes on where it stopped.
"""

import os
import time

from absl import logging

from tagger import fileio
from tagger import settings
from tagger.audio import params as params_lib
from tagger.datasets import demo_data
from tagger.infer import score as score_lib
from tagger.shards import output_folder
from tagger.shards import records
from tagger.shards import sharding
from tagger.train import trainer

DEMO_FOLDS = (0, 1)
STEPS = 6


def demo_config(stage: str):
  """configs/demo.py:stage ('stage2+multi_label': tools/demo
  --multi_label's), the shipped config."""
  return settings.load_config(f"demo:{stage}")


# The demo's CSVs and folders: (split, CSVs, folders, source names).
LAYOUT_2018 = (("train", ("train.csv",), ("audio_train",), ""),
               ("test", ("sample_submission.csv",), ("audio_test",), ""))
LAYOUT_2019 = (("train", ("train_curated.csv", "train_noisy.csv"),
                ("train_curated", "train_noisy"), "curated,noisy"),
               ("test", ("sample_submission.csv",), ("test",), ""))


def shard_root(workdir: str, features: str = "reference") -> str:
  """Where make_shards puts a feature set's train/ and test/ folders."""
  return os.path.join(workdir, "tfrecords" if features == "reference"
                      else f"tfrecords_{features}")


def make_shards(workdir: str, data_dir: str, num_workers: int,
                layout=LAYOUT_2018, features: str = "reference") -> dict:
  manifests = {}
  root = shard_root(workdir, features)
  for step, (split, csvs, folders, sources) in enumerate(layout, start=2):
    output_dir = os.path.join(root, split)
    options = sharding.Options(
        csv=",".join(os.path.join(data_dir, c) for c in csvs),
        audio_dir=",".join(os.path.join(data_dir, a) for a in folders),
        output_dir=output_dir, sources=sources,
        split=split, num_workers=num_workers,
        pca_from=os.path.join(root, "train") if split == "test" else None,
        params=params_lib.preset(features),
        resume=fileio.exists(os.path.join(output_dir, output_folder.STAGING)) or
        fileio.exists(os.path.join(output_dir, records.MANIFEST)))
    logging.info("sharding %s", split)
    manifests[split] = sharding.make_tfrecords(options)
    print(f"[{step}/{STEPS}] " + sharding.describe(manifests[split],
                                                   output_dir), flush=True)
  return manifests


def run_demo(workdir: str, num_workers: int = 0,
             spec: demo_data.DemoSpec = demo_data.DemoSpec(),
             folds=DEMO_FOLDS, multi_label: bool = False) -> dict:
  """Runs every step of the demo under workdir; returns the scoring
  result (with the evaluation against the demo's test labels).

  multi_label: the FSDKaggle2019-layout variant (curated + noisy clips,
  some with two labels): trains on both sources, noisy clips at half the
  loss weight, validates on curated clips, stage 2 with late fusion (the
  PCA vector on a linear path to the logits: measured better here, BUILD.md);
  prints lwlrap last.
  """
  started = time.time()
  data_dir = os.path.join(workdir, "data")
  _make_data(data_dir, spec, multi_label)
  make_shards(workdir, data_dir, num_workers,
              LAYOUT_2019 if multi_label else LAYOUT_2018)
  train_dir = os.path.join(workdir, "tfrecords", "train")
  strategy = trainer.setup(demo_config("stage1"))
  for step, stage in ((4, "stage1"), (5, "stage2")):
    for fold in folds:
      config = _fold_config(stage, fold, workdir, multi_label)
      model_dir = os.path.join(workdir, stage, f"fold{fold}")
      summary = trainer.train(config, train_dir, model_dir, strategy)
      print(f"[{step}/{STEPS}] {trainer.describe_summary(summary)}",
            flush=True)
  output = os.path.join(workdir, "submission.csv")
  result = score_lib.score(score_lib.ScoreJob(
      model_dirs=os.path.join(workdir, "stage2", "fold*"), output=output,
      data_dir=os.path.join(workdir, "tfrecords", "test"),
      labels_csv=os.path.join(data_dir, "test_labels.csv"),
      report_dir=os.path.join(workdir, "report"), progress=False))
  _print_result(result, output, started, multi_label)
  return result


def _make_data(data_dir: str, spec: demo_data.DemoSpec,
               multi_label: bool) -> None:
  """Step 1: the demo data, unless data_dir holds it already."""
  if os.path.exists(os.path.join(data_dir, "test_labels.csv")):
    print(f"[1/{STEPS}] demo data: already in {data_dir}", flush=True)
  elif multi_label:
    counts = demo_data.make_multilabel_demo_data(data_dir)
    print(f"[1/{STEPS}] multi-label demo data: " + ", ".join(
        f"{v} {k}" for k, v in counts.items()) + f" clips in {data_dir}",
          flush=True)
  else:
    counts = demo_data.make_demo_data(data_dir, spec)
    print(f"[1/{STEPS}] demo data: {counts['train']} train and "
          f"{counts['test']} test clips in {data_dir}", flush=True)


def _fold_config(stage: str, fold, workdir: str, multi_label: bool):
  """The demo config of one stage and fold (stage 2 from stage 1's
  model of the fold; the multi-label variant's sources and fusion)."""
  config = demo_config(f"{stage}+multi_label" if multi_label else stage)
  config.fold = str(fold)
  if config.stage == 2:
    config.model.init_from = os.path.join(workdir, "stage1", "fold{fold}")
  return config


def _print_result(result: dict, output: str, started: float,
                  multi_label: bool) -> None:
  """Step 6 and the figure, last."""
  report = result["evaluation"]
  if multi_label:
    map3 = "n/a" if report["map3"] is None else f"{report['map3']:.4f}"
    print(f"[6/{STEPS}] scored {result['clips']} test clips -> {output} "
          f"({result['submission_format']}; per-class AP: "
          f"{report['confusion_png']})", flush=True)
    print(f"demo finished in {(time.time() - started) / 60:.1f} min",
          flush=True)
    print(f"lwlrap={report['lwlrap']:.4f} MAP@3={map3} on the "
          f"{report['single_label_clips']} single-label of "
          f"{report['clips']} labelled test clips", flush=True)
    return
  print(f"[6/{STEPS}] scored {result['clips']} test clips with "
        f"{len(result['models'])} models x {len(result['lengths'])} lengths "
        f"x {result['tries']} tries -> {output} "
        f"(confusion matrix: {report['confusion_png']})", flush=True)
  print(f"evaluation report: {result['report']} (open it in a browser)",
        flush=True)
  print(f"demo finished in {(time.time() - started) / 60:.1f} min", flush=True)
  print(f"MAP@3={report['map3']:.4f} top-1 accuracy={report['accuracy']:.4f} "
        f"on {report['clips']} labelled test clips", flush=True)
