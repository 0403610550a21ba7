"""The baselines every quality figure stands beside, fitted on the same
shards, and the source groups of a set with sources.csv.

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
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tagger import errors
from tagger import fileio
from tagger.infer import evaluation
from tagger.model import logistic
from tagger.shards import data_info
from tagger.shards import records


ALL, SAME, CROSS = evaluation.ALL, "same_source", "cross_source"
SOURCES_CSV = "sources.csv"


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
