"""What a run shows while it trains: TensorBoard scalars and augmented
batches, and the best model's picture (confusion matrix, or average
precision per class for multi-label data). Only the chief writes."""

from typing import Sequence

import numpy as np
import tensorflow as tf

from tagger import fileio
from tagger import metrics
from tagger import plots
from tagger.model import model_dir as model_dir_lib
from tagger.train import run_state


class Recorder:
  """The run's TensorBoard writer (a no-op writer off the chief)."""

  def __init__(self, model_dir: str, chief: bool):
    self.model_dir, self.chief = model_dir, chief
    self._writer = None

  def writer(self):
    if self._writer is None:
      self._writer = (tf.summary.create_file_writer(fileio.join(
          self.model_dir, model_dir_lib.TENSORBOARD)) if self.chief
                      else tf.summary.create_noop_writer())
    return self._writer

  def batch_images(self, images: tf.Tensor, epoch: int) -> None:
    """images: [b, M, L, 1] augmented log-mels; low frequencies at the
    bottom."""
    with self.writer().as_default():
      tf.summary.image("augmented_log_mel", tf.reverse(images, [1]),
                       step=epoch, max_outputs=int(images.shape[0]))

  def epoch(self, row: dict, epoch: int) -> None:
    with self.writer().as_default():
      for key in run_state.HISTORY_KEYS[2:]:
        if row.get(key) is not None:
          tf.summary.scalar(key, row[key], step=epoch)
    self.writer().flush()

  def best_model(self, result: dict, labels: Sequence[str], title: str,
                 multi_label: bool, epoch: int) -> dict:
    """The best model's validation picture (a PNG in the model dir and in
    TensorBoard); returns what the summary adds (per-class AP)."""
    added = {}
    if multi_label:  # per-class AP: what a confusion cannot show
      ap = metrics.average_precision_per_class(result["_labels"],
                                               result["_scores"])
      added["per_class_ap"] = {
          l: None if np.isnan(a) else round(float(a), 4)
          for l, a in zip(labels, ap)}
      png = plots.per_class_bars(
          ap, labels, title + f"lwlrap {result['val_lwlrap']:.3f}"
          ", average precision per class")
    else:
      matrix = metrics.confusion(result["_scores"], result["_labels"],
                                 len(labels))
      png = plots.confusion_matrix(matrix, labels,
                                   title + f"MAP@3 {result['val_map3']:.3f}")
    name = (model_dir_lib.PER_CLASS_AP if multi_label else
            model_dir_lib.CONFUSION)
    fileio.atomic_write_bytes(fileio.join(self.model_dir, name), png)
    with self.writer().as_default():
      tf.summary.image(name.split(".")[0] + "_best",
                       tf.io.decode_png(png)[None], step=epoch)
    return added

  def flush(self) -> None:
    self.writer().flush()
