"""The README's end-to-end demo: demo data -> shards (train, test) -> summary.

Later stages (training, scoring) join here as they land. Each step is
skipped when its output is already complete, so a re-run resumes.
"""

import os

from absl import logging

from tagger import demo_data
from tagger import fileio
from tagger import sharding


def run_demo(workdir: str, num_workers: int = 0,
             spec: demo_data.DemoSpec = demo_data.DemoSpec()) -> dict:
  """Runs every step of the demo under workdir; returns the manifests."""
  data_dir = os.path.join(workdir, "data")
  if not os.path.exists(os.path.join(data_dir, "test_labels.csv")):
    counts = demo_data.make_demo_data(data_dir, spec)
    print(f"[1/3] demo data: {counts['train']} train and {counts['test']} "
          f"test clips in {data_dir}")
  else:
    print(f"[1/3] demo data: already in {data_dir}")
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
        fileio.exists(os.path.join(output_dir, sharding.MANIFEST)))
    logging.info("sharding %s", split)
    manifests[split] = sharding.make_tfrecords(options)
    print(f"[{step}/3] " + sharding.describe(manifests[split], output_dir))
  return manifests
