r"""Exports a trained model dir as a SavedModel (no tagger needed to serve).

  python -m tools.export --model_dir=runs/stage2/fold0 \
      --export_dir=runs/stage2/fold0/saved_model

Signature serving_default: log_mel [B, 64, T] (dB) and, for stage-2 models,
pca [B, 350] -> probabilities [B, C], embedding [B, D]; labels in
assets/labels.txt.
"""

from absl import app
from absl import flags

from tagger import export
from tools import run_tool

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A tools/train output dir.")
flags.DEFINE_string("export_dir", "", "Default: model_dir/saved_model.")
flags.mark_flag_as_required("model_dir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  path = export.export(FLAGS.model_dir, FLAGS.export_dir or
                       export.default_export_dir(FLAGS.model_dir))
  print(f"wrote SavedModel {path}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
