"""The output folder of a run: what it holds (shards, manifest, labels,
PCA fit, errors.csv, the staging folder), one live run at a time, and what
a previous run left there (finished, interrupted, or written with other
options).
"""

from typing import Dict, List

from absl import logging
import tensorflow as tf

from tagger import fileio
from tagger.audio import pca as pca_lib
from tagger.shards import records
from tagger.shards import run_options


STAGING = ".staging"


LABELS = "labels.txt"


ERRORS = "errors.csv"


def owned_outputs(output_dir: str, split: str) -> List[str]:
  return [n for n in fileio.listdir(output_dir)
          if n.startswith(f"{split}-") or n in (
              records.MANIFEST, LABELS, pca_lib.FIT_FILE, ERRORS, STAGING,
              STAGING + "/")]


def prepare_output_dir(options: run_options.Options, fingerprints: Dict[str, str]) -> str:
  """Checks what a previous run left; returns the staging directory."""
  out = options.output_dir
  staging = fileio.join(out, STAGING)
  if options.overwrite:
    for name in owned_outputs(out, options.split):
      path = fileio.join(out, name.rstrip("/"))
      if tf.io.gfile.isdir(path):
        fileio.remove_tree(path)
      else:
        tf.io.gfile.remove(path)
  elif fileio.exists(fileio.join(out, records.MANIFEST)) and not options.resume:
    raise run_options.ShardingError(f"{out} already holds a finished "
                        f"{records.MANIFEST}; pass --overwrite to write it "
                        "again")
  elif fileio.exists(staging) and not options.resume:
    raise run_options.ShardingError(f"{out} holds an interrupted run; pass --resume to "
                        "finish it or --overwrite to start again")
  plan_path = fileio.join(staging, "plan.json")
  if fileio.exists(plan_path):
    before = fileio.read_json(plan_path)
    if before.get("extract") != fingerprints["extract"]:
      raise run_options.ShardingError(
          f"{out}: cannot resume, the CSV, the feature parameters or the "
          "options differ from the interrupted run's; pass --overwrite to "
          "start again")
    if before.get("write") != fingerprints["write"]:
      shards = [n for n in fileio.listdir(out)
                if n.startswith(f"{options.split}-")]
      for name in shards:  # written under other folds / PCA / sizes
        tf.io.gfile.remove(fileio.join(out, name))
      logging.info("resuming with other fold, PCA or shard options: the "
                   "staged features are reused, %d shard(s) are re-made",
                   len(shards))
  fileio.makedirs(staging)
  fileio.remove_temp_files(staging)
  fileio.remove_temp_files(out)
  fileio.write_json(plan_path, fingerprints)
  return staging


def check_output_dir(path: str) -> None:
  """The output folder can be made and written, before any work."""
  if fileio.exists(path) and not tf.io.gfile.isdir(path):
    raise run_options.ShardingError(f"--output_dir {path} is a file, not a folder")
  try:
    fileio.makedirs(path)
    probe = fileio.temp_name(fileio.join(path, ".write-check"))
    fileio.atomic_write_text(probe, "write check\n")
    tf.io.gfile.remove(probe)
  except (tf.errors.OpError, OSError) as e:
    raise run_options.ShardingError(f"--output_dir {path} cannot be written "
                        f"({getattr(e, 'message', None) or e})") from e


def lock_output_dir(path: str) -> None:
  """One live run per output folder (fileio.lock_dir)."""
  try:
    fileio.lock_dir(path, "make_tfrecords", "--output_dir")
  except fileio.InUseError as e:
    raise run_options.ShardingError(str(e)) from None


def release_output_dir(path: str) -> None:
  fileio.release_dir(path)
