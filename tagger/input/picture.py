"""A picture of what the model is fed (tools/show_batch): one training
batch stage by stage."""

import numpy as np

from tagger import settings
from tagger.input import batches
from tagger.input import pipeline
from tagger.shards import data_info
from tagger.shards import records
from tagger.shards.data_info import DataInfo


def batch_picture(info: DataInfo, config: settings.InputConfig,
                  aug: settings.AugmentConfig, fold=0, rows: int = 6,
                  epoch: int = 0) -> bytes:
  """PNG of the first training batch of an epoch, stage by stage: the
  window cropped/padded only, augmented, its augmented mixup partner, and
  the mix the model sees."""
  from tagger.input import augment  # pylint: disable=g-import-not-at-top
  from tagger import plots  # pylint: disable=g-import-not-at-top
  folds = data_info.select_folds(info, fold, "train")
  batch = next(iter(pipeline.train_dataset(info, folds, config, aug,
                                  start_epoch=epoch, num_epochs=1)))
  spec = info.batch_spec
  plain = batches.prepare_eval_batch(batch, spec, aug.pad_mode)[records.LOG_MEL]
  primary, partner, weight = batches.augment_parts(batch, spec, aug)
  columns = [plain, primary[records.LOG_MEL]]
  titles = ["cropped/padded", "augmented"]
  def names(prefix):
    """The rows' label names (several: joined with '+')."""
    if spec.multi_label:
      hot = batch[prefix + records.LABELS].numpy()[:rows]
      return ["+".join(info.labels[i] for i in np.flatnonzero(h))
              for h in hot]
    return [info.labels[i] for i in batch[prefix + records.LABEL].numpy()[
        :rows]]

  labels = names("")
  if partner is not None:
    mixed = augment.mixup(primary, partner, weight)[records.LOG_MEL]
    columns += [partner[records.LOG_MEL], mixed]
    titles += ["mixup partner (augmented)", "mixed: model input"]
    partners = names(batches.PARTNER)
    labels = [f"{w:.2f} {a}\n+ {1 - w:.2f} {b}" for a, b, w in
              zip(labels, partners, weight.numpy()[:rows])]
  length = int(batch[records.LOG_MEL].shape[1])
  return plots.batch_grid(
      [c.numpy()[:rows, :, :, 0] for c in columns], titles, labels,
      title=f"{info.data_dir}: epoch {epoch}, first batch, length {length}")
