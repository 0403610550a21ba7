r"""Quality on a real-recorded set: the recipe's MAP@3 beside two linear
baselines on the same split, and the wall time (last lines).

  python -m tools.make_recorded_data --output_dir=recorded_data  # once
  python -m tools.benchmark_quality --data_dir=recorded_data \
      --workdir=runs/quality

Shards the set, trains --stage1 then --stage2 (configs; override fields as
--stage1.schedule.cyclic_epochs=20) on --fold, scores the test split with
TTA, and fits logistic regression on the shards' PCA vectors and on log-mel
mean/std statistics (tagger/quality.py), and with --pretrained_weights on
a frozen audio-pretrained embedding. A set with sources.csv (fname,source:
tools.make_recorded_data writes it) is measured by group: test clips of
sources the training set holds, and of sources it never heard. Works on any Kaggle-layout folder
that has test_labels.csv, FSDKaggle2019's multi-label layout included
(train_curated.csv + train_noisy.csv; lwlrap is then the headline). A
re-run in the same --workdir skips what is done.
"""

from absl import app
from absl import flags

from tagger.cli import define_config_file
from tagger.cli import run_tool
from tagger.lab import baselines
from tagger.lab import quality

FLAGS = flags.FLAGS
CPU_CONFIG = "cpu"  # configs/cpu.py, shipped (tagger.configs)
flags.DEFINE_string("data_dir", "recorded_data", "Kaggle-layout set with "
                    "test_labels.csv (tools.make_recorded_data).")
flags.DEFINE_string("workdir", "runs/quality", "Shards and models go here.")
define_config_file("stage1", f"{CPU_CONFIG}:stage1",
                   "Stage-1 config.")
define_config_file("stage2", f"{CPU_CONFIG}:stage2",
                   "Stage-2 config.")
define_config_file("pretrained", f"{CPU_CONFIG}:pretrained",
                   "The pretrained backbone's config (stage "
                   "'pretrained').")
define_config_file("probe", f"{CPU_CONFIG}:probe",
                   "The frozen pretrained backbone's config "
                   "(stage 'probe').")
flags.DEFINE_string("recipe", f"{CPU_CONFIG}:new_audio", "The recipe "
                    "config the stage 'new_audio' trains (tools/train "
                    "--config=...).")
flags.DEFINE_list("recipe_flags", [], "More tools/train flags for the "
                  "recipe, e.g. --config.members.mobilenet.schedule."
                  "cyclic_epochs=20.")
flags.DEFINE_list("stages", ["1", "2"], "Which stages to train, of 1, 2, "
                  "pretrained, probe and new_audio (the recipe, through "
                  "tools/train; rows per member, without each member, and "
                  "whole) (stage 2 alone starts from "
                  "--stage2.model.init_from; with several kinds of model, "
                  "an 'ensemble' row scores the last of each kind "
                  "together).")
flags.DEFINE_integer("fold", 0, "The validated fold.")
flags.DEFINE_integer("num_workers", 0, "Sharding workers (0: all cores).")
flags.DEFINE_string("pretrained_weights", "", "aisfx's wheel (pip download "
                    "aisfx==0.1.2 --no-deps) or its checkpoint.pth: adds the "
                    "frozen pretrained embedding's logistic regression (and "
                    "is the pretrained stage's backbone_weights).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  chosen = {"1": FLAGS.stage1, "2": FLAGS.stage2,
            "pretrained": FLAGS.pretrained, "probe": FLAGS.probe}
  unknown = sorted(set(FLAGS.stages) - set(chosen) - {"new_audio"})
  if unknown or not FLAGS.stages:
    raise app.UsageError(f"--stages: of 1, 2, pretrained, probe, new_audio "
                         f"(got {FLAGS.stages})")
  if FLAGS.pretrained_weights:
    for stage in ("pretrained", "probe"):
      chosen[stage].model.backbone_weights = FLAGS.pretrained_weights
  configs = [chosen[s] for s in chosen if s in FLAGS.stages]
  recipe, recipe_flags = "", list(FLAGS.recipe_flags)
  if "new_audio" in FLAGS.stages:
    recipe = FLAGS.recipe
    if FLAGS.pretrained_weights:
      recipe_flags += quality.recipe_weights_flags(recipe,
                                                   FLAGS.pretrained_weights)
  r = quality.run_benchmark(FLAGS.data_dir, FLAGS.workdir, configs,
                            fold=FLAGS.fold, num_workers=FLAGS.num_workers,
                            pretrained_weights=FLAGS.pretrained_weights,
                            recipe=recipe, recipe_flags=recipe_flags)
  print_table(r)


NAMES = {"pca": "logistic regression, PCA vectors",
         "mel_stats": "logistic regression, log-mel stats",
         baselines.PRETRAINED: "logistic regression, CNN9 embedding"}


def print_table(r: dict) -> None:
  """The figures, by source group where the set says its sources; the
  warnings; the headline on the last line."""
  b = r["baselines"]
  multi = "lwlrap" in b["pca"]
  key = "lwlrap" if multi else "map3"
  groups = [g for g in (baselines.ALL, baselines.SAME, baselines.CROSS)
            if g in b["pca"]["groups"]]
  counts = ", ".join(f"{g} {b['pca']['groups'][g]['test_clips']}"
                     for g in groups)
  print(f"{key} on the test split ({counts} clips); validation: the "
        "validated fold (shares the training sources)")
  print(f"{'what':<38} " + " ".join(f"{g:>12}" for g in groups) +
        f" {'validation':>10}")
  rows = [(f"recipe {s['name']} ({s['train_seconds'] / 60:.1f} min)",
           s["groups"], s.get("val_map3")) for s in r["stages"]]
  rows += [(NAMES[n], f["groups"], f.get("val_map3")) for n, f in b.items()]
  for name, figures, val in rows:
    cells = " ".join(f"{figures[g][key]:>12.4f}" for g in groups)
    print(f"{name:<38} {cells} " + (f"{val:>10.4f}" if val is not None
                                     else f"{'':>10}"))
  for line in r["warnings"]:
    print(f"WARNING: {line}")
  headline = baselines.CROSS if baselines.CROSS in groups else baselines.ALL
  final = r["stages"][-1]["groups"][headline][key]
  best_name, best = max(((n, f["groups"][headline][key])
                         for n, f in b.items()), key=lambda x: x[1])
  print(f"wall time {r['seconds'] / 60:.1f} min; recipe - best baseline "
        f"({best_name}) on {headline} = {final - best:+.4f}")
  print(f"recipe_{key}={final:.4f} best_baseline_{key}={best:.4f} "
        f"group={headline} minutes={r['seconds'] / 60:.1f}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
