r"""Frame scoring of long recordings and the TFLite window model (last
line: the 10-minute recording's time and peak memory rise).

  python -m tools.benchmark_serving                 # untrained model
  python -m tools.benchmark_serving --model_dirs='runs/demo/stage1/fold*'

Recordings are made here (tones and noise, 44.1 kHz WAV) and scored with
tagger.api (streamed in chunks); memory is the rise of the peak resident
memory over the process's after warm-up, so a flat figure across lengths
means memory does not grow with the recording.
"""

from absl import app
from absl import flags

from tagger.cli import run_tool
from tagger.lab import speed_infer

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dirs", "", "Stage-1 model dirs or a recipe's "
                    "(default: one untrained model).")
flags.DEFINE_list("minutes", ["2", "10"], "Recording lengths in minutes.")
flags.DEFINE_float("hop_seconds", 0.5, "Hop between windows.")
flags.DEFINE_float("chunk_seconds", 60.0, "Audio per chunk.")
flags.DEFINE_string("audio_dir", "", "With --model_dirs: also compare the "
                    "waveform SavedModel with tools.score --tta=even on "
                    "these files (top-1 agreement, largest differences); "
                    "without: only the in-graph features against the "
                    "offline ones (no model needed).")
flags.DEFINE_string("audio_csv", "", "--audio_dir: only this CSV's files.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  minutes = [float(m) for m in FLAGS.minutes]
  if FLAGS.audio_dir and not FLAGS.model_dirs:
    f = speed_infer.graph_feature_agreement(FLAGS.audio_dir, FLAGS.audio_csv)
    print(f"{f['clips']} clips: in-graph trims identical for "
          f"{f['trims_equal']}, log-mel within "
          f"{f['max_log_mel_difference_db']:.4f} dB")
    print(f"max_log_mel_difference_db={f['max_log_mel_difference_db']:.5f}")
    return
  if FLAGS.audio_dir:
    a = speed_infer.serving_agreement(FLAGS.model_dirs, FLAGS.audio_dir,
                                     FLAGS.audio_csv)
    print(f"{a['clips']} clips: SavedModel vs tools.score --tta=even: "
          f"top-1 agreement {a['top1_agreement']:.4f}, largest probability "
          f"difference {a['max_probability_difference']:.2e}; in-graph "
          f"trims identical for {a['trims_equal']}, log-mel within "
          f"{a['max_log_mel_difference_db']:.4f} dB; "
          f"{a['saved_model_s']:.1f} s vs {a['tools_score_s']:.1f} s")
  r = speed_infer.benchmark_serving(FLAGS.model_dirs, minutes,
                                   FLAGS.hop_seconds,
                                   chunk_seconds=FLAGS.chunk_seconds)
  for m in minutes:
    print(f"{m:g} min: {r[f'frames_{m:g}min_windows']} windows of "
          f"{r['window_frames']} frames in {r[f'frames_{m:g}min_s']:.1f} s "
          f"({r[f'frames_{m:g}min_realtime_factor']:.0f}x real time), peak "
          f"memory +{r[f'frames_{m:g}min_peak_rise_mb']:.0f} MB")
  print(f"SavedModel serving_default, a {r['clip_seconds']:g} s clip: "
        f"{r['clip_s']:.3f} s ({r['clip_ms_per_audio_second']:.1f} ms per "
        "second of audio)")
  for variant in ("float32", "dynamic_range"):
    print(f"TFLite {variant}: {r[f'tflite_{variant}_mb']:.1f} MB, "
          f"{r[f'tflite_{variant}_ms_per_window']:.1f} ms per window")
  m = minutes[-1]
  print(f"frames_{m:g}min_s={r[f'frames_{m:g}min_s']:.1f} "
        f"peak_rise_mb={r[f'frames_{m:g}min_peak_rise_mb']:.0f} "
        f"clip_{r['clip_seconds']:g}s_s={r['clip_s']:.3f}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
