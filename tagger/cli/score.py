r"""Scores test clips with test-time augmentation; writes a Kaggle submission.

  python -m tools.score --data_dir=tfrecords/test \
      --model_dirs='runs/stage2/fold*' --output=submission.csv
  python -m tools.score --audio_dir=my_clips/ --model_dirs='runs/stage2/fold*' \
      --output=predictions.csv --probs_out=probs.csv
  # models of two feature sets (MobileNetV2 + fine-tuned CNN9 on the
  # reference's features, the CNN9 probe on aisfx's): one folder of each
  python -m tools.score --data_dir=tfrecords/test,tfrecords_aisfx/test \
      --model_dirs=runs/cpu/stage1/fold0,runs/cpu/pretrained/fold0,runs/cpu/probe/fold0

Every clip: each model x each length (the models' validation lengths unless
--lengths) x --tries random crops/pads, combined by a geometric mean (each
model on the shards, or the features of the audio, it was trained on); the
top 3 labels per clip, one row per clip in the input order (clips without
audio are ranked by the training class frequencies, with a warning).
--labels_csv (fname,label) prints MAP@3, top-1 and per-class accuracy and
writes a confusion matrix PNG; with fname,labels (several labels, FSDKaggle
2019) or multi-label models it prints lwlrap, per-class average precision
and MAP@3 of the single-label clips, and writes a per-class AP PNG.
With --audio_dir, every file not used whole (unreadable, silent, truncated,
cut at max_clip_seconds, clipped) is a row of <output>_errors.csv (fname,
status, reason); the submission's rows of unusable files are left empty,
and a run where no file could be used exits 1.
Multi-label models write FSDKaggle2019's submission (fname and a
probability column per class; --submission_format).
"""

import json
import os

from absl import app
from absl import flags

from tagger import api
from tagger.cli import run_tool
from tagger.infer import inputs
from tagger.infer import outputs
from tagger.infer import score
from tagger.infer import scorer

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "", "Test shards (tools/make_tfrecords "
                    "--split=test); models of several feature sets: one "
                    "folder of each, comma separated.")
flags.DEFINE_string("audio_dir", "", "Or: a folder of audio files, scored "
                    "directly (features computed here).")
flags.DEFINE_string("audio_csv", "", "With --audio_dir: score the files of "
                    "this CSV's fname column, in its order.")
flags.DEFINE_string("model_dirs", None, "Glob(s) of model dirs, comma "
                    "separated, e.g. 'runs/stage2/fold*'.")
flags.DEFINE_string("output", "submission.csv", "The submission: see "
                    "--submission_format.")
flags.DEFINE_enum("submission_format", "auto", ["auto", "kaggle2018",
                                                "kaggle2019"],
                  "kaggle2018: fname,label with the top 3 labels; "
                  "kaggle2019: fname and a probability column per class; "
                  "auto: kaggle2019 for multi-label models.")
flags.DEFINE_list("lengths", [], "Crop lengths in frames (default: the "
                  "models' validation lengths).")
flags.DEFINE_integer("tries", scorer.DEFAULT_TRIES, "Random crops/pads per "
                     "clip and length.", lower_bound=1)
flags.DEFINE_integer("batch_size", 256, "Model batch (clips x tries).",
                     lower_bound=1)
flags.register_validator(
    "lengths", lambda v: all(x.strip().isdigit() and int(x) >= 1 for x in v),
    "--lengths: whole numbers of frames >= 1, comma separated")
flags.DEFINE_integer("seed", 0, "Seed of the random crops.")
flags.DEFINE_enum("tta", "random", ["random", "even"], "Where the tries' "
                  "windows go: seeded random places, or spread evenly over "
                  "each clip (the waveform SavedModel's way: same scores).")
flags.DEFINE_string("probs_out", "", "CSV of all class probabilities.")
flags.DEFINE_string("embeddings_out", "", "NPZ of pooled features (fname, "
                    "embedding).")
flags.DEFINE_string("labels_csv", "", "CSV fname,label or fname,labels "
                    "(several, comma separated): evaluate.")
flags.DEFINE_string("confusion_png", "", "Where the confusion matrix goes "
                    "(default: next to --output).")
flags.DEFINE_string("report_dir", "", "With --labels_csv: a folder for an "
                    "HTML evaluation report (index.html: figures per class, "
                    "the confusion, the worst clips with players and "
                    "log-mels; opens from the disk).")
flags.DEFINE_string("strategy", "auto", "auto|mirrored|one_device.")
flags.DEFINE_integer("num_workers", 0, "Feature processes for --audio_dir.")
flags.DEFINE_bool("progress", True, "Show a progress bar.")
flags.DEFINE_string("frames_out", "", "With --audio_dir and stage-1 models: "
                    "also write window scores over time (fname, "
                    "start_seconds, end_seconds, a column per class) of "
                    "recordings of any length, streamed in chunks.")
flags.DEFINE_float("hop_seconds", 0.5, "--frames_out: hop between windows.")
flags.DEFINE_string("frames_png_dir", "", "--frames_out: a timeline PNG of "
                    "the top classes per file in this folder.")
flags.mark_flag_as_required("model_dirs")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  result = score.score(score.ScoreJob(
      model_dirs=FLAGS.model_dirs, output=FLAGS.output,
      data_dir=FLAGS.data_dir, audio_dir=FLAGS.audio_dir,
      audio_csv=FLAGS.audio_csv,
      lengths=[int(x) for x in FLAGS.lengths] or None, tries=FLAGS.tries,
      batch_size=FLAGS.batch_size, seed=FLAGS.seed,
      probs_out=FLAGS.probs_out, embeddings_out=FLAGS.embeddings_out,
      labels_csv=FLAGS.labels_csv, confusion_png=FLAGS.confusion_png,
      strategy_name=FLAGS.strategy, num_workers=FLAGS.num_workers,
      progress=FLAGS.progress, tta=FLAGS.tta,
      submission_format=FLAGS.submission_format,
      report_dir=FLAGS.report_dir, frames_out=FLAGS.frames_out,
      hop_seconds=FLAGS.hop_seconds, frames_png_dir=FLAGS.frames_png_dir))
  print(f"wrote {result['output']}: {result['clips']} clips, "
        f"{len(result['models'])} model(s), {result['empty']} without audio"
        + (f", {result['unscored']} not usable (rows left empty)"
           if result.get("unscored") else ""))
  if "errors_csv" in result:
    print(f"files not used whole: {len(result['problems'])}, listed in "
          f"{result['errors_csv']}")
  if result.get("report"):
    print(f"report: {result['report']} (open it in a browser)")
  report = result.get("evaluation")
  if report:
    multi = report.get("multi_label", False)
    figure = "average precision" if multi else "accuracy"
    per_class = report["per_class_ap" if multi else "per_class_accuracy"]
    worst = sorted(((k, v) for k, v in per_class.items() if v is not None),
                   key=lambda x: x[1])
    print(f"lowest per-class {figure}: " + ", ".join(
        f"{k} {v:.2f}" for k, v in worst[:5]))
    print(f"{'per-class AP' if multi else 'confusion matrix'}: "
          f"{report['confusion_png']}")
    if report["unknown_labels"] or report["without_label"]:
      print(json.dumps({k: report[k] for k in ("unknown_labels",
                                               "without_label")}))
    if multi:
      map3 = "n/a" if report["map3"] is None else f"{report['map3']:.4f}"
      print(f"lwlrap={report['lwlrap']:.4f} MAP@3(single-label "
            f"clips)={map3} clips={report['clips']} "
            f"single_label={report['single_label_clips']}")
    else:
      print(f"MAP@3={report['map3']:.4f} accuracy={report['accuracy']:.4f} "
            f"clips={report['clips']}")
  if FLAGS.frames_out:
    frames = api.frames_of_files(
        FLAGS.model_dirs, FLAGS.audio_dir, FLAGS.frames_out,
        audio_csv=FLAGS.audio_csv, hop_seconds=FLAGS.hop_seconds,
        png_dir=FLAGS.frames_png_dir, progress=FLAGS.progress)
    print(f"wrote {FLAGS.frames_out}: {frames['rows']} windows of "
          f"{frames['window_seconds']:.2f} s from {frames['files']} file(s)"
          + (f", {len(frames['skipped'])} skipped" if frames["skipped"]
             else ""))
    if frames["skipped"]:
      outputs.write_errors(result["errors_csv"], result["problems"] + [
          inputs.FileProblem(os.path.basename(path), "frames", reason, False)
          for path, reason in frames["skipped"]])


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
