"""A trained model dir -> a SavedModel anyone can serve without this code.

Signature `serving_default`: log_mel float32 [B, num_mels, T] in dB (what
the feature code / tools/make_tfrecords computes, before normalisation),
and for stage-2 models pca float32 [B, pca_dim] -> probabilities float32
[B, C] and embedding float32 [B, D] (the pooled features). T >= 32 frames.
The label list is an asset (assets/labels.txt) and a `labels` string
constant of the loaded object; normalisation bounds are baked in.
"""

import os
import tempfile

import tensorflow as tf

from tagger import features
from tagger import fileio
from tagger import records
from tagger import score as score_lib

LABELS_ASSET = "labels.txt"


class Serving(tf.Module):
  """What the SavedModel holds: the model, its labels, one function."""

  def __init__(self, loaded: score_lib.LoadedModel, labels_path: str):
    super().__init__()
    data = loaded.data
    self.model = loaded.model
    self.labels_asset = tf.saved_model.Asset(labels_path)
    self.labels = tf.constant(data.labels)
    self._norm = (float(data.normalization["min_db"]),
                  float(data.normalization["max_db"]))
    self._stage2 = loaded.stage2

  def _run(self, log_mel, pca=None):
    image = features.normalize(log_mel, *self._norm)[..., None]
    # image: [B, num_mels, T, 1]
    inputs = {records.LOG_MEL: image}
    if pca is not None:
      inputs[records.PCA] = pca
    probs, pooled = self.model(inputs, training=False)
    return {"probabilities": tf.cast(probs, tf.float32),
            "embedding": tf.cast(pooled, tf.float32)}


def export(model_dir: str, export_dir: str) -> str:
  """Writes the SavedModel (atomically: a temp dir renamed)."""
  loaded = score_lib.load_model(model_dir)
  data = loaded.data
  mels, pca_dim = int(data.num_mels), int(data.pca_dim)
  broken = [l for l in data.labels if "\n" in l or "\r" in l]
  if broken:
    raise score_lib.ScoreError(
        f"{model_dir}: labels {broken} hold line breaks, so labels.txt could "
        "not map line i to label i; re-make the shards (make_tfrecords "
        "refuses such labels) and retrain")
  with tempfile.TemporaryDirectory() as tmp:
    labels_path = os.path.join(tmp, LABELS_ASSET)
    with open(labels_path, "w", encoding="utf-8") as f:  # local temp file
      f.write("\n".join(data.labels) + "\n")
    module = Serving(loaded, labels_path)
    mel_spec = tf.TensorSpec([None, mels, None], tf.float32, name="log_mel")
    if loaded.stage2:
      pca_spec = tf.TensorSpec([None, pca_dim], tf.float32, name="pca")
      module.serve = tf.function(module._run, input_signature=[  # pylint: disable=protected-access
          mel_spec, pca_spec])
    else:
      module.serve = tf.function(lambda log_mel: module._run(log_mel),  # pylint: disable=protected-access
                                 input_signature=[mel_spec])
    target = export_dir.rstrip("/") + ".tmp-export"
    if fileio.exists(target):
      fileio.remove_tree(target)
    tf.saved_model.save(module, target,
                        signatures={"serving_default": module.serve})
    if fileio.exists(export_dir):
      fileio.remove_tree(export_dir)
    tf.io.gfile.rename(target, export_dir)
  return export_dir


def default_export_dir(model_dir: str) -> str:
  return fileio.join(model_dir, "saved_model")

