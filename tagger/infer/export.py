"""Trained model dirs -> one SavedModel anyone can serve without this code.

Stage-1 models (one or several folds) give a waveform-in SavedModel:
  serving_default  waveform float32 [N], mono at 44.1 kHz (any length) ->
                   probabilities [C], log_probabilities [C], embedding [D],
                   empty (bool: no sound after trimming). In the graph:
                   trim, resample, log-mel, the models' validation lengths x
                   `tries` windows spread over the clip, every model, the
                   geometric mean (serving.WaveformTagger; the same as
                   tools/score --tta=even).
  frames           waveform [N], hop_seconds [] -> frame_probabilities
                   [F, C] of windows of `window` frames every hop,
                   start_seconds [F], probabilities [C] (their geometric
                   mean). No trimming: times are the file's.
  log_mel          log_mel float32 [B, num_mels, T] dB -> probabilities
                   [B, C], embedding [B, D] (the geometric mean over models
                   of one window each, no TTA).
Stage-2 models take the PCA vector too, which only tagger's numpy features
make, so their SavedModel has the log_mel signature as serving_default,
with pca float32 [B, pca_dim]. T >= the backbone's minimum (32 frames).
The label list is an asset (assets/labels.txt) and the loaded object's
`labels` variable; normalisation bounds and feature constants are baked in.
"""

import os
import tempfile
from typing import Optional, Sequence

import tensorflow as tf

from tagger import fileio
from tagger.audio import features
from tagger.infer import scorer
from tagger.infer import serving
from tagger.model import networks as model_lib
from tagger.shards import records

LABELS_ASSET = "labels.txt"


def _log_mel_function(module, models, stage2: bool):
  """log_mel [B, M, T] (+ pca) -> mean over models, as a tf.function."""
  norm = models[0].data.batch_spec.normalization
  networks = [m.model for m in models]

  def run(log_mel, pca=None):
    image = features.normalize(log_mel, *norm)[..., None]
    # image: [B, num_mels, T, 1]
    inputs = {records.LOG_MEL: image}
    if pca is not None:
      inputs[records.PCA] = pca
    log_probs, pooled = 0.0, []
    for network in networks:
      probs, embedding = network(inputs, training=False)
      log_probs += model_lib.log_probabilities(probs)
      pooled.append(embedding)
    n = float(len(networks))
    return {"probabilities": model_lib.probabilities_of(
        log_probs / n, models[0].data.multi_label),
            "embedding": model_lib.ensemble_pooled(pooled)}

  data = models[0].data
  mel_spec = tf.TensorSpec([None, int(data.num_mels), None], tf.float32,
                           name="log_mel")
  module.networks = networks
  if stage2:
    pca_spec = tf.TensorSpec([None, int(data.pca_dim)], tf.float32,
                             name="pca")
    return tf.function(run, input_signature=[mel_spec, pca_spec])
  return tf.function(lambda log_mel: run(log_mel),
                     input_signature=[mel_spec])


def _waveform_signatures(module: serving.WaveformTagger, models) -> dict:
  """The waveform SavedModel's signatures (serving_default, frames,
  log_mel) and the frames' window scorer, on the module."""
  data = models[0].data
  module.serve_clip = tf.function(
      module.clip, input_signature=[
          tf.TensorSpec([None], tf.float32, name="waveform")])
  module.serve_frames = tf.function(
      module.frames, input_signature=[
          tf.TensorSpec([None], tf.float32, name="waveform"),
          tf.TensorSpec([], tf.float32, name="hop_seconds")])
  module.score_windows = tf.function(
      module.window_scores, input_signature=[
          tf.TensorSpec([None, int(data.num_mels)], tf.float16),
          tf.TensorSpec([None], tf.int32)])
  module.log_mel_fn = _log_mel_function(module, models, False)
  return {"serving_default": module.serve_clip,
          "frames": module.serve_frames, "log_mel": module.log_mel_fn}


def export(model_dirs: str, export_dir: str, *,
           tries: int = serving.DEFAULT_TRIES,
           window: Optional[int] = None) -> str:
  """Writes the SavedModel of the model dirs (a dir, or globs, comma
  separated) into export_dir, which must be new, empty or an earlier
  export (check_export_dir: refused before any model is read); the new
  SavedModel is written beside it and moved in whole. Returns
  export_dir."""
  if tries < 1:
    raise scorer.ScoreError(f"--tries must be >= 1, not {tries}")
  if window is not None and window < 1:
    raise scorer.ScoreError(f"--window must be >= 1 frame, not {window}")
  dirs = scorer.find_model_dirs(model_dirs)
  check_export_dir(export_dir, dirs)
  models = [scorer.load_model(d) for d in dirs]
  scorer.check_compatible(models)
  data = models[0].data
  broken = [l for l in data.labels if "\n" in l or "\r" in l]
  if broken:
    raise scorer.ScoreError(
        f"{dirs[0]}: labels {broken} hold line breaks, so labels.txt could "
        "not map line i to label i; re-make the shards (make_tfrecords "
        "refuses such labels) and retrain")
  stage2 = [m.stage2 for m in models]
  if any(stage2) and not all(stage2):
    raise scorer.ScoreError("export stage-1 and stage-2 model dirs "
                               "separately")
  with tempfile.TemporaryDirectory() as tmp:
    labels_path = os.path.join(tmp, LABELS_ASSET)
    with open(labels_path, "w", encoding="utf-8") as f:  # local temp file
      f.write("\n".join(data.labels) + "\n")
    if all(stage2):
      module = tf.Module()
      module.labels = tf.Variable(list(data.labels), trainable=False)
      module.log_mel = _log_mel_function(module, models, True)
      signatures = {"serving_default": module.log_mel}
    else:
      module = serving.WaveformTagger(models, tries=tries, window=window)
      signatures = _waveform_signatures(module, models)
    module.labels_asset = tf.saved_model.Asset(labels_path)
    _save_in_place(module, signatures, export_dir, dirs)
  return export_dir


EXPORT_MARK = "tagger_export.json"  # in every folder tools/export writes
# What an export writes into its folder; nothing else may be replaced.
_EXPORT_ENTRIES = ("saved_model.pb", "fingerprint.pb", "variables",
                   "assets", "tflite", EXPORT_MARK)


def _is_inside(path: str, folder: str) -> bool:
  if "://" in path or "://" in folder:
    return path.rstrip("/").startswith(folder.rstrip("/") + "/") or \
        path.rstrip("/") == folder.rstrip("/")
  path, folder = os.path.realpath(path), os.path.realpath(folder)
  return os.path.commonpath([path, folder]) == folder


def check_export_dir(export_dir: str, model_dirs: Sequence[str]) -> None:
  """export_dir may be replaced: it is not there, or an empty folder, or a
  SavedModel an earlier export wrote (its EXPORT_MARK, and nothing else
  beside what an export writes), and it holds none of the model dirs.
  Anything else is ExportDirError: tagger never deletes what it did not
  write."""
  if not export_dir or not export_dir.strip("/"):
    raise ExportDirError(f"--export_dir {export_dir!r}: name a folder")
  for model_dir in model_dirs:
    if _is_inside(model_dir, export_dir):
      raise ExportDirError(
          f"--export_dir {export_dir} holds the model dir {model_dir}; "
          "export into a new folder (the default is model_dir/saved_model)")
  try:
    fileio.check_replaceable(export_dir, EXPORT_MARK, "--export_dir",
                             _EXPORT_ENTRIES)
  except fileio.NotOursError as e:
    raise ExportDirError(str(e)) from None


class ExportDirError(scorer.ScoreError):
  """An export folder that holds what tagger did not write."""


def _save_in_place(module, signatures: dict, export_dir: str,
                   model_dirs: Sequence[str]) -> None:
  """tf.saved_model.save into a temporary folder beside export_dir, marked
  as tagger's (EXPORT_MARK), then moved in: an earlier export there is
  replaced only once the new one is whole; a failed save leaves nothing
  behind."""
  target = fileio.temp_name(export_dir.rstrip("/")) + "-export"
  try:
    tf.saved_model.save(module, target, signatures=signatures)
    fileio.write_mark(target, EXPORT_MARK, "tools/export",
                      model_dirs=list(model_dirs))
    if fileio.exists(export_dir):
      old = fileio.temp_name(export_dir.rstrip("/")) + "-old"
      tf.io.gfile.rename(export_dir, old)   # checked: empty or an export
      try:
        tf.io.gfile.rename(target, export_dir)
      except BaseException:
        tf.io.gfile.rename(old, export_dir)  # the earlier export back
        raise
      fileio.remove_tree(old)
    else:
      tf.io.gfile.rename(target, export_dir)
  finally:
    fileio.remove_tree(target)   # only when the move did not happen


TFLITE_FILES = {"float32": "window_float32.tflite",
                "dynamic_range": "window_dynamic_range.tflite"}


def export_tflite(model_dirs: str, export_dir: str,
                  window: Optional[int] = None) -> dict:
  """The per-window model as TFLite files in export_dir: log_mel float32
  [1, num_mels, window] dB -> probabilities [1, C] (the models' geometric
  mean), float32 and with dynamic-range quantised weights. Returns
  {variant: path}."""
  dirs = scorer.find_model_dirs(model_dirs)
  models = [scorer.load_model(d) for d in dirs]
  scorer.check_compatible(models)
  if any(m.stage2 for m in models):
    raise scorer.ScoreError("--tflite takes stage-1 model dirs (a "
                               "window of log-mel in, no PCA vector)")
  data = models[0].data
  window = int(window or min(data.eval_lengths))
  module = tf.Module()
  run = _log_mel_function(module, models, False)
  probabilities = tf.function(
      lambda log_mel: {"probabilities": run(log_mel)["probabilities"]})
  concrete = probabilities.get_concrete_function(tf.TensorSpec(
      [1, int(data.num_mels), window], tf.float32, name="log_mel"))
  # TF 2.16's converter aborts on Keras 3 models' variable reads ("missing
  # attribute 'value'", tensorflow/tensorflow#63987): the weights are
  # frozen into constants first, the known workaround.
  from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  fileio.makedirs(export_dir)
  written = {}
  for variant, name in TFLITE_FILES.items():
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if variant == "dynamic_range":
      converter.optimizations = [tf.lite.Optimize.DEFAULT]
    path = fileio.join(export_dir, name)
    fileio.atomic_write_bytes(path, converter.convert())
    written[variant] = path
  fileio.atomic_write_text(fileio.join(export_dir, LABELS_ASSET),
                           "\n".join(data.labels) + "\n")
  return written


def default_export_dir(model_dirs: str) -> str:
  """model_dir/saved_model for one dir; for globs, beside the first."""
  dirs = scorer.find_model_dirs(model_dirs)
  if len(dirs) == 1:
    return fileio.join(dirs[0], "saved_model")
  return fileio.join(os.path.dirname(dirs[0].rstrip("/")),
                     "saved_model")

