r"""Exports trained model dirs as one SavedModel (no tagger needed to serve).

  python -m tools.export --model_dir='runs/demo/stage1/fold*' \
      --export_dir=runs/demo/saved_model

Stage-1 models (one or several folds): serving_default takes a mono
float32 waveform at 44.1 kHz and returns probabilities [C] (trim, log-mel,
test-time augmentation and the fold ensemble in the graph); `frames` takes
a waveform and hop_seconds and returns frame_probabilities [F, C] and
start_seconds [F]; `log_mel` takes log_mel [B, 64, T] (dB). Stage-2 models:
serving_default takes log_mel [B, 64, T] and pca [B, 350]. Labels in
assets/labels.txt. --tflite also writes the per-window model as .tflite
files (float32 and dynamic-range quantised) beside it.
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.infer import export
from tagger.infer import serving

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "tools/train output dir(s): a dir, "
                    "or globs, comma separated ('runs/stage1/fold*').")
flags.DEFINE_string("export_dir", "", "Default: model_dir/saved_model (one "
                    "dir) or saved_model beside the first dir.")
flags.DEFINE_integer("tries", serving.DEFAULT_TRIES, "Windows per clip and "
                     "length, spread evenly over the clip.")
flags.DEFINE_integer("window", 0, "Frames of a `frames` window (default: "
                     "the models' shortest validation length).")
flags.DEFINE_bool("tflite", False, "Also write the per-window model "
                  "(log_mel [1, 64, window] dB -> probabilities) as .tflite "
                  "files, float32 and dynamic-range quantised, into "
                  "export_dir/tflite.")
flags.mark_flag_as_required("model_dir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  path = export.export(FLAGS.model_dir, FLAGS.export_dir or
                       export.default_export_dir(FLAGS.model_dir),
                       tries=FLAGS.tries, window=FLAGS.window or None)
  print(f"wrote SavedModel {path}")
  if FLAGS.tflite:
    for variant, tflite in export.export_tflite(
        FLAGS.model_dir, path.rstrip("/") + "/tflite",
        window=FLAGS.window or None).items():
      print(f"wrote {variant} TFLite model {tflite}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
