"""A Kaggle-layout evaluation set made of real recorded sounds.

The synthetic demo set is too easy to tell where quality comes from. This
one is built from the sampled recordings in Debian's General MIDI
soundfonts (FluidR3_GM: recorded instruments, drums and effects; TimGM6mb
and MuseScore General: other recordings of the same instruments), played
by fluidsynth, then given the realism of a user's data:

  - 39 classes: pitched instruments (several confusable families: violin /
    cello, trumpet / trombone / horn, oboe / clarinet / flute), drums and
    percussion, and recorded effects (applause, helicopter, seashore, ...);
  - each clip is a short performance (one note, a phrase, a chord, an
    arpeggio, a drum pattern) in one of three soundfonts, with random
    pitch, velocity, tempo and length (0.3 s to about 10 s);
  - a room (synthetic reverberation) on half the clips, a band-limited
    "microphone" on some, 22.05 kHz files on some;
  - background noise (white, pink or brown, some with mains hum) at 5-35 dB
    SNR, and on a quarter of the clips a second sound of another class
    underneath (6-18 dB lower);
  - 60% of the train rows are unverified (manually_verified=0) and a fifth
    of those carry a wrong label, as in FSDKaggle2018.

Sources: each soundfont is a recording source (other instruments, rooms
and microphones behind the samples). A fourth source, Freepats (Debian's
freepats: GUS patches of other recorded instruments, played by timidity),
covers 32 of the classes. With `test_only_sources` (the cross-source set)
those sources are heard only in the test split: the test split then holds
test_per_class clips of each class from the training sources ("same
source") and as many from the held-out ones ("cross source"), and the set
is restricted to the classes every source can play. sources.csv
(fname,split,source) names each clip's source; tools/benchmark_quality
reports the two groups side by side.

Layout written: train.csv, audio_train/, sample_submission.csv, audio_test/,
test_labels.csv (the test answers, all correct), sources.csv,
wrong_labels.csv (the train rows given a wrong label, and the true one).
Deterministic by seed for a given fluidsynth, timidity and soundfont
version.

Needs the fluidsynth program and the soundfonts (Debian: apt-get install
fluidsynth fluid-soundfont-gm timgm6mb-soundfont
musescore-general-soundfont-small), and for Freepats timidity and freepats;
nothing else in tagger does.
"""

import dataclasses
import os
import shutil
import subprocess
import tempfile
from typing import List, Optional, Sequence, Tuple

import numpy as np

from tagger import errors
from tagger.datasets import demo_data
from tagger.datasets import instruments
from tagger.datasets import midi
from tagger.datasets import recording

RATE = recording.RATE   # every sound is rendered at this rate
# The train rows given a wrong label (fname, label, true_label): what
# tools/benchmark_labels checks the label issues found against.
WRONG_LABELS = "wrong_labels.csv"


@dataclasses.dataclass(frozen=True)
class RecordedSpec:
  train_per_class: int = 25
  test_per_class: int = 12
  seed: int = 0
  unverified: float = 0.6        # share of train rows not verified
  wrong_label: float = 0.2       # share of unverified rows mislabelled
  second_sound: float = 0.25     # share of clips with a sound underneath
  snr_db: Tuple[float, float] = (5.0, 35.0)
  sources: Tuple[str, ...] = instruments.DEFAULT_SOURCES
  test_only_sources: Tuple[str, ...] = ()   # heard only in the test split


class RecordedDataError(errors.UserError):
  """fluidsynth or the soundfonts are missing; the message says what."""


# ---------------------------------------------------------------------------
# Performances: what is played, as MIDI notes.


def _performance(sound: instruments.SoundClass, rng) -> List[midi.Note]:
  """A short random performance of one class (notes in seconds)."""
  if sound.kind == "drum":
    hits = int(rng.integers(1, 12))
    step = rng.uniform(0.12, 0.6)
    notes, t = [], 0.0
    for _ in range(hits):
      notes.append(midi.Note(t, 0.1, int(rng.choice(sound.drum_keys)),
                        int(rng.integers(50, 128))))
      t += step * rng.choice([0.5, 1.0, 1.0, 2.0])
    return notes
  low, high = sound.keys
  if sound.kind == "effect":
    return [midi.Note(0.0, float(rng.uniform(0.5, 6.0)),
                 int(rng.integers(low, high + 1)), int(rng.integers(70, 128)))]
  pattern = rng.choice(["note", "phrase", "phrase", "chord", "arpeggio"])
  velocity = int(rng.integers(45, 128))
  if pattern == "note":
    return [midi.Note(0.0, float(rng.uniform(0.3, 4.0)),
                 int(rng.integers(low, high + 1)), velocity)]
  if pattern == "chord":
    root = int(rng.integers(low, max(low + 1, high - 7)))
    shape = [0, 4, 7] if rng.uniform() < 0.5 else [0, 3, 7, 12]
    length = float(rng.uniform(0.4, 3.0))
    return [midi.Note(0.0, length, min(high, root + s), velocity) for s in shape]
  notes, t = [], 0.0
  key = int(rng.integers(low, high + 1))
  step = rng.uniform(0.1, 0.5)
  for _ in range(int(rng.integers(3, 13))):
    length = step * rng.choice([1.0, 1.0, 2.0, 0.5])
    legato = length * (1.6 if pattern == "arpeggio" else rng.uniform(0.6,
                                                                     1.0))
    notes.append(midi.Note(t, legato, key, int(np.clip(
        velocity + rng.integers(-15, 16), 1, 127))))
    t += length
    key = int(np.clip(key + rng.choice([-5, -3, -2, -1, 1, 2, 3, 4, 5, 7]),
                      low, high))
  return notes


def check_tools(sources: Sequence[str] = instruments.DEFAULT_SOURCES) -> dict:
  """{synth name: its program path} for the sources; RecordedDataError
  naming what is missing and the apt line that brings it."""
  unknown = [n for n in sources if n not in instruments.SOURCES]
  if unknown:
    raise RecordedDataError(f"unknown source(s) {unknown}; known: "
                            f"{sorted(instruments.SOURCES)}")
  programs, missing, packages = {}, [], []
  for name in sources:
    source = instruments.SOURCES[name]
    program = shutil.which(source.synth)
    if program is None or not os.path.exists(source.path):
      missing.append(f"the {source.synth} program" if program is None
                     else source.path)
      packages.append(source.apt)
    programs[source.synth] = program
  if missing:
    apt = " ".join(dict.fromkeys(" ".join(packages).split()))
    raise RecordedDataError(
        f"the recorded evaluation set needs {', '.join(missing)}: apt-get "
        f"install {apt} (Debian/Ubuntu; BUILD.md)")
  return programs


def _timidity_instruments(cfg: str) -> Tuple[set, set]:
  """(melodic programs, drum keys) that a timidity .cfg maps to patches."""
  programs, keys, section = set(), set(), None
  with open(cfg, encoding="utf-8", errors="replace") as f:
    for line in f:
      words = line.split("#")[0].split()
      if len(words) >= 2 and words[0] in ("bank", "drumset"):
        section = words[0] if words[1] == "0" else None
      elif len(words) >= 2 and words[0].isdigit() and section:
        (programs if section == "bank" else keys).add(int(words[0]))
  return programs, keys


def playable(sound: instruments.SoundClass, source: instruments.Source) -> instruments.SoundClass:
  """The class restricted to the programs or drum keys the source has; a
  class with none left has programs == () and drum_keys == ()."""
  if source.synth != "timidity":
    return sound        # the soundfonts are complete General MIDI sets
  programs, keys = _timidity_instruments(source.path)
  if sound.kind == "drum":
    return dataclasses.replace(sound, drum_keys=tuple(
        k for k in sound.drum_keys if k in keys))
  return dataclasses.replace(sound, programs=tuple(
      p for p in sound.programs if p in programs))


def _can_play(sound: instruments.SoundClass) -> bool:
  return bool(sound.drum_keys if sound.kind == "drum" else sound.programs)


def render(program: str, source: instruments.Source, midi: bytes, workdir: str
           ) -> np.ndarray:
  """The synthesizer's rendering of a MIDI file: mono float32 at RATE,
  without its own reverb and chorus (rooms are added per clip)."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  midi_path = os.path.join(workdir, "score.mid")
  wav_path = os.path.join(workdir, "render.wav")
  with open(midi_path, "wb") as f:
    f.write(midi)
  if source.synth == "timidity":
    command = [program, "-c", source.path, "-Ow", "--output-mono", "-s",
               str(RATE), "-EFreverb=0", "-EFchorus=0", "-o", wav_path,
               midi_path]
  else:
    command = [program, "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.5", "-r",
               str(RATE), "-F", wav_path, source.path, midi_path]
  result = subprocess.run(command, capture_output=True, text=True,
                          check=False)
  if result.returncode != 0 or not os.path.exists(wav_path):
    raise RecordedDataError(f"{source.synth} failed on {source.path}: "
                            f"{result.stderr.strip()[-300:]}")
  waveform, rate = sf.read(wav_path, dtype="float32", always_2d=True)
  assert rate == RATE, rate
  return waveform.mean(axis=1)


# ---------------------------------------------------------------------------
# The set.


def set_classes(spec: RecordedSpec) -> List[instruments.SoundClass]:
  """The classes every source of the set can play (all 39 with the
  default soundfonts)."""
  return [c for c in instruments.CLASSES
          if all(_can_play(playable(c, instruments.SOURCES[n])) for n in spec.sources)]


def _plan(spec: RecordedSpec, classes, rng):
  """Every clip's (split, class, source index, performance), shuffled.
  Test clips of held-out sources come after the others in the draw, so a
  set without them draws as before."""
  heard = [i for i, n in enumerate(spec.sources)
           if n not in spec.test_only_sources]
  held = [i for i, n in enumerate(spec.sources)
          if n in spec.test_only_sources]
  clips = []
  for split, per_class in (("train", spec.train_per_class),
                           ("test", spec.test_per_class)):
    for k, sound in enumerate(classes):
      for _ in range(per_class):
        clips.append((split, k, heard[int(rng.integers(len(heard)))],
                      _performance(sound, rng)))
  for k, sound in enumerate(classes):
    for _ in range(spec.test_per_class if held else 0):
      clips.append(("test", k, held[int(rng.integers(len(held)))],
                    _performance(sound, rng)))
  order = rng.permutation(len(clips))
  return [clips[i] for i in order]


def _render_all(plan, spec: RecordedSpec, classes, programs, rng
                ) -> List[np.ndarray]:
  """Renders every planned performance: one synthesizer run per source."""
  sounds: List[Optional[np.ndarray]] = [None] * len(plan)
  with tempfile.TemporaryDirectory() as workdir:
    for source_index, name in enumerate(spec.sources):
      source = instruments.SOURCES[name]
      mine = [i for i, clip in enumerate(plan) if clip[2] == source_index]
      performances = []
      for i in mine:
        sound = playable(classes[plan[i][1]], source)
        notes = plan[i][3]
        if sound.kind == "drum":
          # Keys the source lacks are played by one it has.
          notes = [n if n.key in sound.drum_keys else dataclasses.replace(
              n, key=int(rng.choice(sound.drum_keys))) for n in notes]
          performances.append((0, midi.DRUMS, notes))
        else:
          performances.append((int(rng.choice(sound.programs)), 0, notes))
      if not mine:
        continue
      score, spans = midi.midi_score(performances)
      audio = render(programs[source.synth], source, score, workdir)
      for i, (start, stop) in zip(mine, spans):
        piece = audio[int(start * RATE):int(stop * RATE)]
        sounds[i] = _trim_tail(piece)
  return sounds


def _trim_tail(piece: np.ndarray) -> np.ndarray:
  """Cuts the silent end of a rendered performance (below -60 dB)."""
  loud = np.nonzero(np.abs(piece) > 1e-3 * (np.max(np.abs(piece)) + 1e-12))[0]
  if not len(loud):
    return piece[:RATE // 10]
  return piece[:loud[-1] + 1]


def make_recorded_data(output_dir: str,
                       spec: RecordedSpec = RecordedSpec(),
                       progress: bool = True) -> dict:
  """Writes the set under output_dir (local); returns counts."""
  programs = check_tools(spec.sources)
  demo_data.mark_dataset_folder(output_dir, "make_recorded_data")
  held = set(spec.test_only_sources)
  if held - set(spec.sources) or held == set(spec.sources):
    raise RecordedDataError(
        f"test_only_sources {sorted(held)} must be some, not all, of the "
        f"sources {list(spec.sources)}")
  classes = set_classes(spec)
  rng = np.random.default_rng(spec.seed)
  plan = _plan(spec, classes, rng)
  sounds = _render_all(plan, spec, classes, programs, rng)
  names = rng.choice(16**8, size=len(plan), replace=False)
  rows = {"train": [], "test": []}
  source_rows = []
  labels = [c.name for c in classes]
  for split in rows:
    os.makedirs(os.path.join(output_dir, f"audio_{split}"), exist_ok=True)
  # A second sound comes from the same split and side of the hold-out.
  def group(clip):
    return clip[0], spec.sources[clip[2]] in held
  by_group = {}
  for i, clip in enumerate(plan):
    by_group.setdefault(group(clip), []).append(i)
  wrong, wrong_rows = 0, []
  for i, (split, k, source_index, _) in enumerate(plan):
    under = None
    if rng.uniform() < spec.second_sound:
      other = int(rng.choice(by_group[group(plan[i])]))
      if plan[other][1] != k:
        under = sounds[other]
    clip, rate = recording.make_clip(sounds[i], under, rng, spec.snr_db)
    fname = f"{int(names[i]):08x}.wav"
    with open(os.path.join(output_dir, f"audio_{split}", fname), "wb") as f:
      f.write(demo_data.wav_bytes(clip, rate))
    label = labels[k]
    source_rows.append([fname, split, spec.sources[source_index]])
    if split == "train":
      verified = int(rng.uniform() >= spec.unverified)
      if not verified and rng.uniform() < spec.wrong_label:
        label = labels[int(rng.choice([j for j in range(len(labels))
                                       if j != k]))]
        wrong += 1
        wrong_rows.append([fname, label, labels[k]])
      rows[split].append([fname, label, verified])
    else:
      rows[split].append([fname, label])
    if progress and (i + 1) % 200 == 0:
      print(f"  {i + 1}/{len(plan)} clips", flush=True)
  demo_data.write_layout_csvs(output_dir, labels, rows, source_rows)
  demo_data.write_csv(os.path.join(output_dir, WRONG_LABELS),
                      ["fname", "label", "true_label"], wrong_rows)
  return {"train": len(rows["train"]), "test": len(rows["test"]),
          "classes": len(labels), "wrong_train_labels": wrong,
          "cross_source_test": sum(1 for c in plan if c[0] == "test" and
                                   spec.sources[c[2]] in held)}
