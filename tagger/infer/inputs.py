"""What the scorer reads: the records of test shards, or records made in
memory from raw audio files with the shards' own feature code."""

import dataclasses
from typing import List, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from tagger import fileio
from tagger import parallel
from tagger.infer import scorer
from tagger.model import model_dir as model_dir_lib
from tagger.shards import clip_files
from tagger.shards import data_info
from tagger.shards import extraction
from tagger.shards import records


def shard_records(data_dir: str) -> tf.data.Dataset:
  """The records of a shard folder (test split) in CSV order."""
  info = data_info.load_data_info(data_dir, verify=True)
  files = info.all_files()
  return tf.data.TFRecordDataset(files, info.compression, buffer_size=8 << 20)


@dataclasses.dataclass(frozen=True)
class FileProblem:
  """A file tools/score could not use whole: status is one of STATUSES;
  scored says whether its row holds scores (of what decoded, or of the
  class frequencies for a silent file) or none."""
  fname: str
  status: str
  reason: str
  scored: bool


STATUSES = ("unusable", "silent", "truncated", "cut", "clipped", "frames")


def audio_records(audio_dir: str, model_dir: str, num_workers: int = 0,
                  csv_path: str = "", max_file_mb: float =
                  clip_files.MAX_FILE_MB, progress: bool = True
                  ) -> Tuple[tf.data.Dataset, List[FileProblem]]:
  """Records made in memory from raw audio files with the feature code of
  the shards: the files of csv_path's fname column, or every file in
  audio_dir (sorted). Each file is judged as make_tfrecords judges it
  (the same reader and checks); a file that cannot be used becomes an
  empty record, a truncated or cut one is scored from what decoded, and
  each is reported with the file and the reason (logged, and returned as
  FileProblems beside the records)."""
  from tagger.audio import extract  # pylint: disable=g-import-not-at-top
  from tagger.audio import pca as pca_lib  # pylint: disable=g-import-not-at-top
  from tagger.audio.params import FeatureParams  # pylint: disable=g-import-not-at-top
  data = model_dir_lib.read_data(model_dir)
  params = FeatureParams.from_dict(data.feature_params)
  fit = pca_lib.PcaFit.load(fileio.join(model_dir, model_dir_lib.PCA_FIT))
  try:
    names = clip_files.names_to_score(audio_dir, csv_path)
  except clip_files.CsvError as e:
    raise scorer.ScoreError(str(e)) from e
  rows = [clip_files.Row(i, name, "", 1) for i, name in enumerate(names)]
  results = extraction.featurise(rows, audio_dir, params, max_file_mb,
                                 num_workers)
  serialized, problems = [], []
  bar = parallel.progress_bar(len(rows), unit="file", enabled=progress)
  for row, result in zip(rows, results):
    bar.update(1)
    mel = result.log_mel_db
    found = _problems(row.fname, result)
    for problem in found:
      logging.warning("%s (%s)", problem.reason, _HOW[problem.status])
    problems += found
    if result.status not in (extract.OK, extract.TRUNCATED, extract.CUT):
      mel = mel[:, :0]
    pca = fit.apply(result.summary[None])[0] if mel.shape[1] else np.zeros(
        fit.dim, np.float32)
    serialized.append(records.serialize_example(
        fname=row.fname, label=-1, label_name="", fold=-1,
        manually_verified=1, log_mel_db=mel, pca=pca))
  bar.close()
  return tf.data.Dataset.from_tensor_slices(serialized), problems


_HOW = {"unusable": "not scored", "silent": "ranked by class frequencies",
        "truncated": "scored from the audio that decoded",
        "cut": "scored from the part heard", "clipped": "scored",
        "frames": "no frame scores"}


def _problems(fname: str, result) -> List[FileProblem]:
  """What a file's extraction result tells the user: nothing for a clean
  clip; its notes (truncated, cut, clipped); or why it was not used."""
  from tagger.audio import extract  # pylint: disable=g-import-not-at-top
  if result.status == extract.EMPTY and result.duration_s > 0:
    return [FileProblem(fname, "silent", result.reason, True)]
  if result.status not in (extract.OK, extract.TRUNCATED, extract.CUT):
    return [FileProblem(fname, "unusable", result.reason, False)]
  return [FileProblem(fname, kind, note, True)
          for kind, note in result.notes]

