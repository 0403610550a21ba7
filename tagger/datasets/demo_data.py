"""A synthetic dataset in the Kaggle layout, so everything runs offline.

41 classes with the FSDKaggle2018 label names. Class k is a sound family
(k % 8: tone, harmonic stack, chirp, noise band, click train, AM, FM, decays)
in an octave band (k // 8: base pitch 100 Hz * 2**band), so classes differ
clearly in the log-mel while each clip varies in pitch (+-1/4 octave), gain,
background noise, duration (log-normal, median 4 s, 0.3 s to 30 s) and
leading/trailing silence. Deterministic by seed.

Layout written:
  train.csv (fname,label,manually_verified), audio_train/*.wav,
  sample_submission.csv (fname,label), audio_test/*.wav,
  test_labels.csv (fname,label): the test answers, for scoring.
One test clip is an empty WAV, as in the real set.

`make_multilabel_demo_data` writes the FSDKaggle2019 layout from the same
classes: some clips mix two classes' sounds and carry both labels, and a
noisy set has some labels wrong (`MultiLabelSpec`).
"""

import csv
import dataclasses
import io
import os
from typing import List

import numpy as np

from tagger import fileio

FSD_KAGGLE_2018_LABELS = (
    "Acoustic_guitar", "Applause", "Bark", "Bass_drum",
    "Burping_or_eructation", "Bus", "Cello", "Chime", "Clarinet",
    "Computer_keyboard", "Cough", "Cowbell", "Double_bass",
    "Drawer_open_or_close", "Electric_piano", "Fart", "Finger_snapping",
    "Fireworks", "Flute", "Glockenspiel", "Gong", "Gunshot_or_gunfire",
    "Harmonica", "Hi-hat", "Keys_jangling", "Knock", "Laughter", "Meow",
    "Microwave_oven", "Oboe", "Saxophone", "Scissors", "Shatter",
    "Snare_drum", "Squeak", "Tambourine", "Tearing", "Telephone", "Trumpet",
    "Violin_or_fiddle", "Writing")
FAMILIES = ("tone", "harmonic_stack", "chirp", "noise_band", "click_train",
            "am", "fm", "decays")
SAMPLE_RATE = 44100


@dataclasses.dataclass(frozen=True)
class DemoSpec:
  train_per_class: int = 16
  test_per_class: int = 4
  seed: int = 0
  median_duration_s: float = 4.0
  duration_sigma: float = 0.7
  min_duration_s: float = 0.3
  max_duration_s: float = 30.0


def class_recipe(class_index: int):
  """(family, base frequency Hz) of a class."""
  return FAMILIES[class_index % 8], 100.0 * 2.0**(class_index // 8)


def _band_noise(rng, n, low_hz, high_hz):
  spectrum = np.fft.rfft(rng.standard_normal(n))
  freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
  spectrum[(freqs < low_hz) | (freqs > high_hz)] = 0
  out = np.fft.irfft(spectrum, n)
  return out / (np.abs(out).max() + 1e-9)


def synthesize(family: str, f0: float, n: int, rng) -> np.ndarray:
  """One clip's sound [n] in [-1, 1] (before gain, noise and silence)."""
  t = np.arange(n) / SAMPLE_RATE
  if family == "tone":
    vibrato = 0.004 * np.sin(2 * np.pi * rng.uniform(3, 6) * t)
    return np.sin(2 * np.pi * f0 * t * (1 + vibrato))
  if family == "harmonic_stack":
    return sum(np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 6.3)) / h
               for h in range(1, 9)) / 2.7
  if family == "chirp":
    span = max(t[-1], 1e-3)
    sweep = f0 * 4.0**(t / span)  # two octaves up over the clip
    return np.sin(2 * np.pi * np.cumsum(sweep) / SAMPLE_RATE)
  if family == "noise_band":
    return _band_noise(rng, n, f0 * 3.2, f0 * 4.8)
  if family == "click_train":
    out = np.zeros(n)
    period = max(1, int(SAMPLE_RATE / (4 + f0 / 25)))
    out[rng.integers(0, period)::period] = 1.0
    ring = np.exp(-np.arange(800) / 120.0) * np.sin(
        2 * np.pi * 3 * f0 * np.arange(800) / SAMPLE_RATE)
    out = np.convolve(out, ring)[:n]
    return out / (np.abs(out).max() + 1e-9)
  if family == "am":
    rate = 2.0 + f0 / 100.0
    return (0.5 + 0.5 * np.sin(2 * np.pi * rate * t)) * np.sin(
        2 * np.pi * 2 * f0 * t)
  if family == "fm":
    return np.sin(2 * np.pi * 2 * f0 * t +
                  (f0 / 12.0) * np.sin(2 * np.pi * 6.0 * t))
  if family == "decays":
    out = np.zeros(n)
    step = int(SAMPLE_RATE * rng.uniform(0.35, 0.6))
    length = min(n, step)
    note = np.exp(-np.arange(length) / (0.08 * SAMPLE_RATE)) * np.sin(
        2 * np.pi * 2 * f0 * np.arange(length) / SAMPLE_RATE)
    for start in range(0, n, step):
      stop = min(n, start + length)
      out[start:stop] += note[:stop - start]
    return out
  raise ValueError(f"unknown family {family!r}")


DATASET_MARK = "tagger_dataset.json"   # in every set a make_*_data wrote


def mark_dataset_folder(output_dir: str, tool: str) -> None:
  """Before a set is written: output_dir is new, empty or a set tagger
  wrote (its DATASET_MARK; a killed run's folder has it, so the same
  command runs again), else NotOursError (a user's train.csv is never
  overwritten); then marks it."""
  fileio.check_replaceable(output_dir, DATASET_MARK, "--output_dir")
  fileio.write_mark(output_dir, DATASET_MARK, tool)


def make_clip(class_index: int, rng, spec: DemoSpec) -> np.ndarray:
  """A whole clip, int16-ready float32 [n] with silence at both ends."""
  family, f0 = class_recipe(class_index)
  f0 *= 2.0**rng.uniform(-0.25, 0.25)
  duration = float(np.clip(
      spec.median_duration_s * np.exp(spec.duration_sigma *
                                      rng.standard_normal()),
      spec.min_duration_s, spec.max_duration_s))
  n = int(duration * SAMPLE_RATE)
  sound = synthesize(family, f0, n, rng)
  fade = min(n // 2, int(0.01 * SAMPLE_RATE))
  if fade:
    ramp = np.linspace(0, 1, fade)
    sound[:fade] *= ramp
    sound[n - fade:] *= ramp[::-1]
  gain = 10.0**(rng.uniform(-20, -1) / 20)
  noise = 10.0**(-rng.uniform(15, 40) / 20) * rng.standard_normal(n)
  clip = gain * (0.9 * sound + noise * 0.9)
  lead, tail = (int(rng.uniform(0, 0.5) * SAMPLE_RATE) for _ in range(2))
  return np.concatenate([np.zeros(lead), clip,
                         np.zeros(tail)]).astype(np.float32)


def wav_bytes(waveform: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
  """16-bit PCM WAV bytes of a float waveform in [-1, 1] (clipped)."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  buffer = io.BytesIO()
  sf.write(buffer, np.clip(waveform, -1, 1), rate, subtype="PCM_16",
           format="WAV")
  return buffer.getvalue()


def write_csv(path: str, header: List[str], rows: List[list]) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def make_demo_data(output_dir: str, spec: DemoSpec = DemoSpec()) -> dict:
  """Writes the demo dataset; returns counts. Local directory only.

  Demo data is made where the user runs it; shards, manifests and models,
  which may live on remote filesystems, go through tf.io.gfile elsewhere.
  """
  mark_dataset_folder(output_dir, "make_demo_data")
  rng = np.random.default_rng(spec.seed)
  num_classes = len(FSD_KAGGLE_2018_LABELS)
  names = rng.choice(16**8, size=num_classes * (spec.train_per_class +
                                                spec.test_per_class) + 1,
                     replace=False)
  fnames = iter(f"{int(x):08x}.wav" for x in names)
  counts = {}
  for split, per_class in (("train", spec.train_per_class),
                           ("test", spec.test_per_class)):
    audio_dir = os.path.join(output_dir, f"audio_{split}")
    os.makedirs(audio_dir, exist_ok=True)
    classes = np.repeat(np.arange(num_classes), per_class)
    rng.shuffle(classes)
    rows = []
    for k in classes:
      fname = next(fnames)
      with open(os.path.join(audio_dir, fname), "wb") as f:
        f.write(wav_bytes(make_clip(int(k), rng, spec)))
      rows.append([fname, FSD_KAGGLE_2018_LABELS[k],
                   int(rng.uniform() < 0.6)])
    if split == "train":
      write_csv(os.path.join(output_dir, "train.csv"),
                 ["fname", "label", "manually_verified"], rows)
    else:
      # As in the real set, one test file holds no audio at all.
      empty = next(fnames)
      with open(os.path.join(audio_dir, empty), "wb") as f:
        f.write(wav_bytes(np.zeros(0, np.float32)))
      rows.append([empty, FSD_KAGGLE_2018_LABELS[int(rng.integers(
          num_classes))], 1])
      placeholder = " ".join(FSD_KAGGLE_2018_LABELS[:3])
      write_csv(os.path.join(output_dir, "sample_submission.csv"),
                 ["fname", "label"], [[r[0], placeholder] for r in rows])
      write_csv(os.path.join(output_dir, "test_labels.csv"),
                 ["fname", "label"], [[r[0], r[1]] for r in rows])
    counts[split] = len(rows)
  return counts


# ---------------------------------------------------------------------------
# The multi-label variant: FSDKaggle2019's layout.


@dataclasses.dataclass(frozen=True)
class MultiLabelSpec:
  """Curated clips (labels right), noisy clips (some labels wrong), test
  clips; a share of each set mixes two classes and has both labels."""
  curated_per_class: int = 10
  noisy_per_class: int = 6
  test_per_class: int = 4
  mixed_fraction: float = 0.3     # clips holding two classes
  noisy_wrong_fraction: float = 0.3  # noisy clips whose label is another
  seed: int = 0
  clip: DemoSpec = DemoSpec()


def mix_clips(first: np.ndarray, second: np.ndarray, rng) -> np.ndarray:
  """The two clips summed: the shorter starts at a random place within
  the longer (peak-normalised to the louder input's peak)."""
  if len(first) < len(second):
    first, second = second, first
  out = first.astype(np.float64).copy()
  start = int(rng.integers(0, len(first) - len(second) + 1))
  out[start:start + len(second)] += second
  peak = max(np.abs(first).max(initial=0), np.abs(second).max(initial=0))
  return (out * peak / max(np.abs(out).max(initial=0), 1e-9)).astype(
      np.float32)


def _label_sets(count_per_class: int, num_classes: int, mixed: float, rng):
  """Label index tuples: each class's clips, a share of them with a
  second, different class."""
  classes = np.repeat(np.arange(num_classes), count_per_class)
  rng.shuffle(classes)
  sets = []
  for k in classes:
    if rng.uniform() < mixed:
      other = int(rng.integers(num_classes - 1))
      sets.append((int(k), other + (other >= k)))
    else:
      sets.append((int(k),))
  return sets


def make_multilabel_demo_data(output_dir: str,
                              spec: MultiLabelSpec = MultiLabelSpec()) -> dict:
  """Writes train_curated.csv + train_curated/, train_noisy.csv +
  train_noisy/ (fname,labels), test/ + sample_submission.csv (fname and a
  column per class, FSDKaggle2019's submission) and test_labels.csv
  (fname,labels): the test answers. Returns clip counts per set."""
  mark_dataset_folder(output_dir, "make_demo_data")
  rng = np.random.default_rng(spec.seed + 2019)
  labels = FSD_KAGGLE_2018_LABELS
  num_classes = len(labels)
  sets = {
      "train_curated": _label_sets(spec.curated_per_class, num_classes,
                                   spec.mixed_fraction, rng),
      "train_noisy": _label_sets(spec.noisy_per_class, num_classes,
                                 spec.mixed_fraction, rng),
      "test": _label_sets(spec.test_per_class, num_classes,
                          spec.mixed_fraction, rng),
  }
  total = sum(len(v) for v in sets.values())
  names = iter(f"{int(x):08x}.wav" for x in
               rng.choice(16**8, size=total, replace=False))
  counts = {}
  for name, label_sets in sets.items():
    audio_dir = os.path.join(output_dir, name)
    os.makedirs(audio_dir, exist_ok=True)
    rows = []
    for classes in label_sets:
      clip = make_clip(classes[0], rng, spec.clip)
      if len(classes) > 1:
        clip = mix_clips(clip, make_clip(classes[1], rng, spec.clip), rng)
      written = list(classes)
      if name == "train_noisy" and rng.uniform() < spec.noisy_wrong_fraction:
        wrong = int(rng.integers(num_classes - 1))
        written[0] = wrong + (wrong >= classes[0])
        written = list(dict.fromkeys(written))
      fname = next(names)
      with open(os.path.join(audio_dir, fname), "wb") as f:
        f.write(wav_bytes(clip))
      rows.append([fname, ",".join(labels[k] for k in written)])
    if name == "test":
      write_csv(os.path.join(output_dir, "sample_submission.csv"),
                ["fname"] + list(labels),
                [[r[0]] + [0] * num_classes for r in rows])
      write_csv(os.path.join(output_dir, "test_labels.csv"),
                ["fname", "labels"], rows)
    else:
      write_csv(os.path.join(output_dir, f"{name}.csv"), ["fname", "labels"],
                rows)
    counts[name] = len(rows)
  counts["mixed"] = sum(len(c) > 1 for v in sets.values() for c in v)
  return counts


def write_layout_csvs(output_dir: str, labels, rows, source_rows) -> None:
  """A cross-source set's CSVs: train.csv, sample_submission.csv (a
  placeholder label), test_labels.csv, sources.csv."""
  write_csv(os.path.join(output_dir, "train.csv"),
                      ["fname", "label", "manually_verified"], rows["train"])
  placeholder = " ".join(labels[:3])
  write_csv(os.path.join(output_dir, "sample_submission.csv"),
                      ["fname", "label"],
                      [[r[0], placeholder] for r in rows["test"]])
  write_csv(os.path.join(output_dir, "test_labels.csv"),
                      ["fname", "label"], rows["test"])
  write_csv(os.path.join(output_dir, "sources.csv"),
                      ["fname", "split", "source"], source_rows)
