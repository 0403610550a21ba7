"""What the recorded sets play, and on what: the sound classes (General
MIDI programs and pitch ranges, drum keys, effects) and the recording
sources (Debian's soundfonts and Freepats, each with its synthesizer)."""

import dataclasses
from typing import Tuple




@dataclasses.dataclass(frozen=True)
class Source:
  """A recording source: a sample set and the synthesizer that plays it."""
  name: str
  synth: str        # fluidsynth (path: a soundfont) | timidity (a .cfg)
  path: str
  apt: str          # the Debian packages that bring it


SOURCES = {s.name: s for s in (
    Source("fluidr3", "fluidsynth", "/usr/share/sounds/sf2/FluidR3_GM.sf2",
           "fluidsynth fluid-soundfont-gm"),
    Source("timgm6mb", "fluidsynth", "/usr/share/sounds/sf2/TimGM6mb.sf2",
           "fluidsynth timgm6mb-soundfont"),
    Source("musescore", "fluidsynth",
           "/usr/share/sounds/sf3/MuseScore_General.sf3",
           "fluidsynth musescore-general-soundfont-small"),
    Source("freepats", "timidity", "/etc/timidity/freepats.cfg",
           "timidity freepats"),
)}


DEFAULT_SOURCES = ("fluidr3", "timgm6mb", "musescore")


SOUNDFONTS = tuple(SOURCES[n].path for n in DEFAULT_SOURCES)


APT_PACKAGES = ("fluidsynth fluid-soundfont-gm timgm6mb-soundfont "
                "musescore-general-soundfont-small")


@dataclasses.dataclass(frozen=True)
class SoundClass:
  name: str
  programs: Tuple[int, ...] = ()   # GM programs (0-based); () = drums
  keys: Tuple[int, int] = (48, 84)  # pitch range, or drum keys (listed)
  drum_keys: Tuple[int, ...] = ()
  kind: str = "pitched"             # pitched | drum | effect


def _pitched(name, programs, low, high):
  return SoundClass(name, tuple(programs), (low, high))


def _drum(name, keys):
  return SoundClass(name, drum_keys=tuple(keys), kind="drum")


def _effect(name, program):
  return SoundClass(name, (program,), (52, 72), kind="effect")


CLASSES = (
    _pitched("Acoustic_guitar", (24, 25), 40, 76),
    _pitched("Electric_guitar", (29, 30), 40, 76),
    _pitched("Bass_guitar", (32, 33, 34), 28, 52),
    _pitched("Piano", (0, 1), 36, 96),
    _pitched("Electric_piano", (4, 5), 40, 84),
    _pitched("Organ", (16, 19), 36, 84),
    _pitched("Accordion", (21,), 48, 84),
    _pitched("Harmonica", (22,), 60, 84),
    _pitched("Glockenspiel", (9,), 72, 96),
    _pitched("Marimba", (12,), 48, 84),
    _pitched("Violin_or_fiddle", (40,), 55, 91),
    _pitched("Cello", (42,), 36, 64),
    _pitched("Harp", (46,), 36, 88),
    _pitched("Choir", (52, 53), 48, 76),
    _pitched("Trumpet", (56,), 55, 82),
    _pitched("Trombone", (57,), 40, 70),
    _pitched("French_horn", (60,), 41, 72),
    _pitched("Saxophone", (65, 66), 49, 80),
    _pitched("Oboe", (68,), 58, 88),
    _pitched("Clarinet", (71,), 50, 86),
    _pitched("Flute", (73,), 60, 96),
    _pitched("Banjo", (105,), 48, 80),
    _pitched("Steel_drum", (114,), 52, 84),
    _drum("Bass_drum", (35, 36)),
    _drum("Snare_drum", (38, 40)),
    _drum("Hi-hat", (42, 44, 46)),
    _drum("Cymbal", (49, 51, 57)),
    _drum("Tom", (41, 43, 45, 47, 48, 50)),
    _drum("Hand_clap", (39,)),
    _drum("Cowbell", (56,)),
    _drum("Tambourine", (54,)),
    _drum("Bongo_or_conga", (60, 61, 62, 63, 64)),
    _drum("Triangle", (80, 81)),
    _effect("Telephone", 124),
    _effect("Bird", 123),
    _effect("Applause", 126),
    _effect("Gunshot", 127),
    _effect("Helicopter", 125),
    _effect("Seashore", 122),
)
