r"""Shards a Kaggle-layout audio dataset into TFRecords of log-mels + PCA.

  python -m tools.make_tfrecords --csv=train.csv --audio_dir=audio_train \
      --output_dir=tfrecords/train --split=train
  python -m tools.make_tfrecords --csv=sample_submission.csv \
      --audio_dir=audio_test --output_dir=tfrecords/test --split=test \
      --pca_from=tfrecords/train

Several train CSVs (FSDKaggle2019: curated + noisy, multi-label `labels`
column) go into one shard set, each clip keeping its source:

  python -m tools.make_tfrecords --csv=train_curated.csv,train_noisy.csv \
      --audio_dir=train_curated,train_noisy --sources=curated,noisy \
      --output_dir=tfrecords/train2019 --split=train
"""

from absl import app
from absl import flags

from tagger.audio import params as params_lib
from tagger.cli import run_tool
from tagger.shards import run_options
from tagger.shards import sharding

FLAGS = flags.FLAGS
flags.DEFINE_string("csv", None, "Kaggle CSV: fname,label[,manually_verified]"
                    " or fname,labels (several labels, comma separated in "
                    "quotes: multi-label) for train; fname[,...] for test. "
                    "Several CSVs: comma separated.", required=True)
flags.DEFINE_string("audio_dir", None, "Folder holding the CSV's files (one "
                    "per CSV, comma separated, or one for all).",
                    required=True)
flags.DEFINE_string("sources", "", "Names of the CSVs' sources, comma "
                    "separated (default: the CSV file names without .csv); "
                    "kept per record, selectable in training.")
flags.DEFINE_string("output_dir", None, "Where shards and manifest go "
                    "(any tf.io.gfile path).", required=True)
flags.DEFINE_enum("split", "train", run_options.SPLITS, "train: fits PCA and "
                  "folds; test: reuses --pca_from's, never drops a clip.")
flags.DEFINE_string("pca_from", None, "Train output_dir whose PCA fit and "
                    "feature parameters a test split reuses.")
flags.DEFINE_string("labels", None, "Optional labels.txt fixing the label "
                    "vocabulary and its order (default: sorted CSV labels).")
flags.DEFINE_enum("features", "reference", sorted(params_lib.PRESETS),
                  "The log-mel's parameters (tagger/params.py): the "
                  "reference recipe's, or aisfx's front-end (what the "
                  "cnn9_aisfx backbone needs). A test split always takes "
                  "its --pca_from train split's.")
flags.DEFINE_integer("num_workers", 0, "Feature processes (0: all cores).")
flags.DEFINE_float("shard_mb", 32.0, "Target shard size in MB (> 0).")
flags.register_validator("shard_mb", lambda v: v > 0,
                         "--shard_mb: a size in MB above 0")
flags.DEFINE_integer("min_shards", 8, "At least this many shards (if there "
                     "are as many clips), for parallel reads.",
                     lower_bound=1)
flags.DEFINE_enum("compression", "none", ["none", "gzip"], "Shard files.")
flags.DEFINE_integer("num_folds", 10, "Stratified folds (train).")
flags.DEFINE_integer("fold_seed", 20180629, "Seed of the folds and of the "
                     "train shard order.")
flags.DEFINE_integer("pca_components", 350, "PCA components kept (fewer if "
                     "the train split has fewer clips).")
flags.DEFINE_bool("resume", False, "Finish an interrupted run in output_dir.")
flags.DEFINE_bool("overwrite", False, "Replace what output_dir holds.")
flags.DEFINE_bool("keep_staging", False, "Keep staged features afterwards.")
flags.DEFINE_integer("chunk_size", 64, "Clips per staged chunk (the unit of "
                     "--resume).", lower_bound=1)
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_string("runner", "", "Run as an Apache Beam pipeline on this "
                    "runner (DirectRunner, DataflowRunner, FlinkRunner, "
                    "SparkRunner; needs pip install -e '.[beam]'). Empty: "
                    "the local process pool.")
flags.DEFINE_string("beam_options", "", "The runner's pipeline options, as "
                    "on its command line ('--project=p --region=r "
                    "--temp_location=gs://b/tmp'). DirectRunner defaults to "
                    "one process per core (--num_workers).")


def options_from_flags() -> sharding.Options:
  return sharding.Options(
      csv=FLAGS.csv, audio_dir=FLAGS.audio_dir, output_dir=FLAGS.output_dir,
      split=FLAGS.split, sources=FLAGS.sources, pca_from=FLAGS.pca_from, labels_file=FLAGS.labels,
      num_workers=FLAGS.num_workers, shard_mb=FLAGS.shard_mb,
      min_shards=FLAGS.min_shards, compression=FLAGS.compression,
      num_folds=FLAGS.num_folds, fold_seed=FLAGS.fold_seed,
      pca_components=FLAGS.pca_components, resume=FLAGS.resume,
      overwrite=FLAGS.overwrite, chunk_size=FLAGS.chunk_size,
      keep_staging=FLAGS.keep_staging, progress=FLAGS.progress,
      runner=FLAGS.runner, beam_options=FLAGS.beam_options,
      params=params_lib.preset(FLAGS.features))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  options = options_from_flags()
  if options.runner:  # Apache Beam is imported only when asked for
    from tagger.shards import beam_sharding  # pylint: disable=g-import-not-at-top
    manifest = beam_sharding.make_tfrecords(options)
  else:
    manifest = sharding.make_tfrecords(options)
  print(sharding.describe(manifest, FLAGS.output_dir))


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
