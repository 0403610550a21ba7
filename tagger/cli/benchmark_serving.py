r"""Frame scoring of long recordings, the SavedModel on a 20-minute clip
and the TFLite window model (last line: the clip's peak memory, the
10-minute recording's frame time and peak memory rise).

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
flags.DEFINE_float("long_clip_minutes", 20.0, "A recording this long tagged "
                   "whole by the SavedModel in a fresh process (peak "
                   "memory; agreement with tools/score --tta=even); 0: "
                   "skip.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  minutes = [float(m) for m in FLAGS.minutes]
  r = speed_infer.benchmark_serving(FLAGS.model_dirs, minutes,
                                   FLAGS.hop_seconds,
                                   chunk_seconds=FLAGS.chunk_seconds,
                                   long_clip_minutes=FLAGS.long_clip_minutes)
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
  long = FLAGS.long_clip_minutes
  if long:
    key = f"long_clip_{long:g}min"
    print(f"SavedModel serving_default, a {long:g} min recording in a fresh "
          f"process: peak memory {r[f'{key}_peak_mb']:.0f} MB, "
          f"{r[f'{key}_heard_seconds']:.0f} s heard (max_clip_seconds), "
          f"tools/score --tta=even: max |diff| "
          f"{r[f'{key}_max_abs_diff']:.2g}, same top class: "
          f"{r[f'{key}_same_top']}")
  m = minutes[-1]
  print((f"long_clip_{long:g}min_peak_mb={r[f'long_clip_{long:g}min_peak_mb']:.0f} "
         if long else "") + f"frames_{m:g}min_s={r[f'frames_{m:g}min_s']:.1f} "
        f"peak_rise_mb={r[f'frames_{m:g}min_peak_rise_mb']:.0f} "
        f"clip_{r['clip_seconds']:g}s_s={r['clip_s']:.3f}")


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
