"""The README's end-to-end demo: demo data -> shards -> stage 1 and stage 2
of the demo folds -> TTA scoring of the test split -> MAP@3.

Each step is skipped when its output is already complete (and training
resumes from its last epoch), so a re-run goes on where it stopped.
"""

import os
import time

from absl import logging

from tagger import demo_data
from tagger import fileio
from tagger import score as score_lib
from tagger import records
from tagger import settings
from tagger import sharding
from tagger import trainer

DEMO_FOLDS = (0, 1)
STEPS = 6


def demo_config(stage: str):
  """configs/demo.py:stage (loaded by path: configs/ is not a package)."""
  path = os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "configs", "demo.py")
  return settings.load_config(f"{path}:{stage}")


def make_shards(workdir: str, data_dir: str, num_workers: int) -> dict:
  manifests = {}
  steps = (("train", "train.csv", "audio_train"),
           ("test", "sample_submission.csv", "audio_test"))
  for step, (split, csv_name, audio) in enumerate(steps, start=2):
    output_dir = os.path.join(workdir, "tfrecords", split)
    options = sharding.Options(
        csv=os.path.join(data_dir, csv_name),
        audio_dir=os.path.join(data_dir, audio), output_dir=output_dir,
        split=split, num_workers=num_workers,
        pca_from=os.path.join(workdir, "tfrecords", "train")
        if split == "test" else None,
        resume=fileio.exists(os.path.join(output_dir, sharding.STAGING)) or
        fileio.exists(os.path.join(output_dir, records.MANIFEST)))
    logging.info("sharding %s", split)
    manifests[split] = sharding.make_tfrecords(options)
    print(f"[{step}/{STEPS}] " + sharding.describe(manifests[split],
                                                   output_dir), flush=True)
  return manifests


def run_demo(workdir: str, num_workers: int = 0,
             spec: demo_data.DemoSpec = demo_data.DemoSpec(),
             folds=DEMO_FOLDS) -> dict:
  """Runs every step of the demo under workdir; returns the scoring
  result (with the evaluation against the demo's test labels)."""
  started = time.time()
  data_dir = os.path.join(workdir, "data")
  if not os.path.exists(os.path.join(data_dir, "test_labels.csv")):
    counts = demo_data.make_demo_data(data_dir, spec)
    print(f"[1/{STEPS}] demo data: {counts['train']} train and "
          f"{counts['test']} test clips in {data_dir}", flush=True)
  else:
    print(f"[1/{STEPS}] demo data: already in {data_dir}", flush=True)
  make_shards(workdir, data_dir, num_workers)
  train_dir = os.path.join(workdir, "tfrecords", "train")
  strategy = trainer.setup(demo_config("stage1"))
  for step, stage in ((4, "stage1"), (5, "stage2")):
    for fold in folds:
      config = demo_config(stage)
      config.fold = str(fold)
      if config.stage == 2:
        config.model.init_from = os.path.join(workdir, "stage1",
                                              "fold{fold}")
      model_dir = os.path.join(workdir, stage, f"fold{fold}")
      summary = trainer.train(config, train_dir, model_dir, strategy)
      print(f"[{step}/{STEPS}] {trainer.describe_summary(summary)}",
            flush=True)
  output = os.path.join(workdir, "submission.csv")
  result = score_lib.score(
      model_dirs=os.path.join(workdir, "stage2", "fold*"), output=output,
      data_dir=os.path.join(workdir, "tfrecords", "test"),
      labels_csv=os.path.join(data_dir, "test_labels.csv"),
      progress=False)
  report = result["evaluation"]
  print(f"[6/{STEPS}] scored {result['clips']} test clips with "
        f"{len(result['models'])} models x {len(result['lengths'])} lengths "
        f"x {result['tries']} tries -> {output} "
        f"(confusion matrix: {report['confusion_png']})", flush=True)
  print(f"demo finished in {(time.time() - started) / 60:.1f} min", flush=True)
  print(f"MAP@3={report['map3']:.4f} top-1 accuracy={report['accuracy']:.4f} "
        f"on {report['clips']} labelled test clips", flush=True)
  return result
