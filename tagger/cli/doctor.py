r"""Says what this machine gives tagger: GPUs, precision, strategy.

  python -m tools.doctor

What TensorFlow sees (each GPU's compute capability), what nvidia-smi
lists, what --strategy=auto and --precision=auto would pick and why. The
last line is OK, or PROBLEM and the line training would stop with (then
the exit status is 1): e.g. GPUs that TensorFlow cannot use because the
install is CPU-only (pip install -e '.[gpu]').
"""

from absl import app

from tagger import distribute
from tagger.cli import run_tool


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  lines = distribute.describe_devices(distribute.devices())
  print("\n".join(lines), flush=True)
  if lines[-1] != "OK":
    raise SystemExit(1)


def run():
  run_tool(main)


if __name__ == "__main__":
  run()
