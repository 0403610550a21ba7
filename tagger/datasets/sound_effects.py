"""The games' sound effects: where they are, which source and Debian
package each comes from, and the class its path names.

  - sources: each folder under a root given as "ROOT/*" is one source
    (/usr/share/games/openarena: the openarena-* packages together, which
    share recordings), a root given without "/*" is one source as a whole
    (/usr/share/tuxpaint). Each file's Debian package comes from dpkg's
    database (/var/lib/dpkg/info/*.list, what dpkg -L reads).
    WAV, OGG, FLAC, MP3 and Opus files are read with soundfile (libsndfile),
    and so are the members of zip archives (.pk3, .zip, .wz).
  - labels from the path by keyword (CLASSES): the file name's words decide,
    else the nearest folder's; a path with a word of EXCLUDE (music,
    speech, menus, user-interface sounds) or of a class's own exclusions is
    not used, nor one whose words name two classes.

everyday_data.py builds the evaluation set from them.
"""

import dataclasses
import glob
import io
import os
import re
import zipfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tagger.datasets import demo_data

RATE = demo_data.SAMPLE_RATE   # every clip is written at this rate

AUDIO_EXTENSIONS = (".wav", ".ogg", ".oga", ".flac", ".mp3", ".opus")
ARCHIVE_EXTENSIONS = (".pk3", ".zip", ".wz")


@dataclasses.dataclass(frozen=True)
class Rule:
  """A class's words: a path word equal to a keyword, or starting or
  ending with one of 5+ letters, names the class, unless a path word
  equals one of exclude."""
  keywords: Tuple[str, ...]
  exclude: Tuple[str, ...] = ()


CLASSES: Dict[str, Rule] = {
    "footsteps": Rule(("footstep", "footsteps", "steps", "step"),
                      ("energy", "mech")),
    "dog": Rule(("dog", "dogs", "bark", "barking", "woof", "puppy"),
                ("fox",)),
    "bird": Rule(("bird", "birds", "birdchirp", "chirp", "tweet", "crow",
                  "seagull", "gull", "owl", "cuckoo", "lark", "blackbird",
                  "sparrow", "pigeon", "parrot", "tucan", "rooster", "hen",
                  "chicken", "duck"),
                 ("birdie", "birdy", "birdylay", "rubberduck")),
    "cow": Rule(("cow", "cows", "moo", "bull", "ox", "bison", "cattle")),
    "horse": Rule(("horse", "horses", "neigh", "gallop", "canter", "whinny"),
                  ("horseman",)),
    "sheep_goat": Rule(("sheep", "lamb", "goat", "baa")),
    "wolf": Rule(("wolf", "wolves", "coyote", "howl"), ("tree",)),
    "frog": Rule(("frog", "frogs", "toad")),
    "insects": Rule(("bee", "bees", "mosquito", "cricket", "crickets",
                     "hornet", "grasshopper"), ("beesting", "beewater")),
    "door": Rule(("door", "doors", "doorslam")),
    "splash": Rule(("splash", "splashes", "watersplash", "splsh"),
                   ("footsteps",)),
    "water_flow": Rule(("waterfall", "river", "stream", "water", "waves",
                        "oceanwaves", "drip", "droplet", "waterdrip",
                        "pipewater"), ("splash", "watr", "beewater",
                                       "planewater", "rubberduck",
                                       "outwater")),
    "fire": Rule(("campfire", "burning", "fire", "firesoft", "crackle",
                  "embers", "flame"),
                 ("bullet", "gun", "bow", "crossbow", "lance", "station",
                  "truck", "punch", "flower", "cracker", "works",
                  "fireworks", "missile", "melee", "slime", "friendly",
                  "big", "wasteland", "miss", "crylink", "electro",
                  "fireball", "grenade", "bfg", "lg", "pulsed", "porto",
                  "wicker")),
    "wind": Rule(("wind", "windgust", "windhowling", "windoutside", "gust"),
                 ("window", "winding", "painwind", "demonwind", "mill")),
    "explosion": Rule(("explosion", "explosions", "explode", "explo", "expl",
                       "boom", "blast", "detonation"),
                      ("bubblegum", "blaster", "richet", "squish", "acid",
                       "beesting", "bhit", "empsmall", "gas", "lightning",
                       "lightningbolt", "radiation", "gloop", "crunch",
                       "bees", "shockwave", "thud", "quake", "electricity",
                       "thunder")),
    "gunshot": Rule(("gunshot", "gun", "pistol", "rifle", "shotgun",
                     "machinegun", "minigun", "shotgunfire", "revolver"),
                    ("laser", "plasma", "nail", "sinegun", "landgun",
                     "reload", "cartridge", "lasersight", "drillgun",
                     "shotgunreload", "sniperreload", "ice", "portalshot",
                     "ric", "buletby")),
    "engine": Rule(("engine", "motor", "revup", "accel", "trafic", "traffic",
                    "tractor"),
                   ("spaceship", "jetengine", "airplane", "beam",
                    "attractor")),
    "aircraft": Rule(("helicopter", "apache", "plane", "airplane", "jet",
                      "cessna", "aircraft"), ("planewater", "rcplane", "bomb")),
    "glass": Rule(("glass", "shatter", "glassbreak"),
                  ("musical", "hourglass")),
    "metal_hit": Rule(("anvil", "clang", "clank", "hammer", "hammering",
                       "smith", "blacksmith", "toolsmith", "mallet"),
                      ("airhammer", "pickhammer", "collision", "fall",
                       "footsteps", "sharpening")),
    "wood_chop": Rule(("woodcutting", "woodcutter", "chop", "chopping",
                       "woodbrk", "lumber")),
    "pig": Rule(("pig", "pigs", "oink", "boar", "squeal")),
    "saw": Rule(("saw", "sawing", "sawmill", "benchsaw", "chainsaw")),
    "thunder": Rule(("thunder", "thunderclap"),
                    ("thunderbird", "thunderstick", "thunderhead")),
    "rain": Rule(("rain", "rainfall"), ("ion",)),
    "bell": Rule(("bell", "bells", "churchbell", "doorbell", "savebell")),
    "crowd": Rule(("applause", "crowd", "croud", "cheer", "cheering",
                   "cheeringloop", "clapping")),
    "train": Rule(("train", "locomotive", "steamlocomotive", "railtrain"),
                  ("trained",)),
    "car_horn": Rule(("carhorn", "klaxon", "honk")),
    "scream": Rule(("scream", "screaming", "wilhelmscream")),
    "tyre_skid": Rule(("skid", "screech")),
}

# Words that rule a path out whatever else it names: music, speech and
# voices, menus and other interface sounds.
EXCLUDE = ("music", "musics", "bgm", "tunes", "song", "songs", "theme",
           "menu", "click", "button", "voice", "voices", "taunt", "taunts",
           "speech", "announcer", "feedback", "talk", "narrator", "codriver",
           "robotic", "coms", "ack", "select", "selected", "intro", "credits",
           "fanfare", "male", "female", "desc", "tutorial", "vo",
           # unit actions in strategy games: weapons and fighters' cries
           "attack", "archer", "horseman", "thrower", "rider", "daemon",
           "golem", "behemoth", "catapult", "warrior")

# tuxpaint-stamps' spoken names: "dog_desc_fr.ogg", "dog_en_GB.ogg".
_LOCALIZED = re.compile(r"_(desc|[a-z]{2}(_[a-z]{2})?)$", re.I)


@dataclasses.dataclass
class Clip:
  """One labelled sound effect, decoded."""
  source: str
  path: str            # a file, or ARCHIVE!MEMBER
  label: str
  package: str = ""    # the Debian package that ships it ('' : none)
  waveform: Optional[np.ndarray] = None   # mono float32 at RATE
  seconds: float = 0.0


# ---------------------------------------------------------------------------
# Labels from paths.


def path_words(path: str) -> List[List[str]]:
  """The words of each path part, nearest (the file name) first: split at
  non-letters and lower-to-upper case changes, lower-cased, digits
  dropped. 'sfx/MetalFootstep01.wav' -> [['metal', 'footstep'], ['sfx']]."""
  parts = [p for p in re.split(r"[/!]", path) if p]
  if parts:
    parts[-1] = os.path.splitext(parts[-1])[0]
  words = []
  for part in reversed(parts):
    part = re.sub(r"([a-z])([A-Z])", r"\1 \2", part)
    words.append([w.lower() for w in re.split(r"[^A-Za-z]+", part) if w])
  return words


def _matches(word: str, keyword: str) -> bool:
  return word == keyword or (len(keyword) >= 5 and (
      word.startswith(keyword) or word.endswith(keyword)))


def _classes_of(words: Sequence[str], every_word: set) -> set:
  """The classes whose keywords a part's words match, less those whose
  exclusions some word of the path equals."""
  return {name for name, rule in CLASSES.items()
          if any(_matches(w, k) for w in words for k in rule.keywords)
          and not every_word & set(rule.exclude)}


def label_from_path(path: str) -> Optional[str]:
  """The class a sound's path (relative to its source) names: the file
  name's words decide, else the nearest folder's that names a class. None
  when a word is in EXCLUDE, the file is a localized (spoken) variant, no
  part names a class or the deciding part names two."""
  stem = os.path.splitext(re.split(r"[/!]", path)[-1])[0]
  if _LOCALIZED.search(stem):
    return None
  words = path_words(path)
  every_word = {w for part in words for w in part}
  if every_word & set(EXCLUDE):
    return None
  for part in words:
    found = _classes_of(part, every_word)
    if len(found) == 1:
      return found.pop()
    if found:
      return None   # ambiguous
  return None


# ---------------------------------------------------------------------------
# Finding the files.


def _source_folders(roots: Sequence[str]) -> List[Tuple[str, str]]:
  """(source name, folder) for each root: 'ROOT/*' gives each folder under
  ROOT, a plain root itself."""
  out = []
  for root in roots:
    if root.endswith("/*"):
      base = root[:-2]
      for folder in sorted(glob.glob(os.path.join(base, "*"))):
        if os.path.isdir(folder) and not os.path.islink(folder):
          out.append((os.path.basename(folder), folder))
      loose = [f for f in glob.glob(os.path.join(base, "*"))
               if os.path.isfile(f)]
      if loose:   # files directly under ROOT: one source named as ROOT
        out.append((os.path.basename(base.rstrip("/")), base + "!loose"))
    elif os.path.isdir(root):
      out.append((os.path.basename(root.rstrip("/")), root))
  return out


def _files_under(folder: str) -> List[str]:
  if folder.endswith("!loose"):
    base = folder[:-len("!loose")]
    return sorted(os.path.join(base, f) for f in os.listdir(base)
                  if os.path.isfile(os.path.join(base, f)))
  out = []
  for dirpath, dirnames, files in os.walk(folder):
    dirnames.sort()
    out.extend(os.path.join(dirpath, f) for f in sorted(files))
  return out


def find_labelled(roots: Sequence[str]) -> List[Clip]:
  """Every audio file (and zip-archive member) under the roots whose path
  names a class, undecoded, in a fixed order."""
  clips = []
  for source, folder in _source_folders(roots):
    base = folder[:-len("!loose")] if folder.endswith("!loose") else folder
    for path in _files_under(folder):
      lower = path.lower()
      names = []
      if lower.endswith(AUDIO_EXTENSIONS):
        names = [path]
      elif lower.endswith(ARCHIVE_EXTENSIONS) and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
          names = [f"{path}!{m}" for m in sorted(archive.namelist())
                   if m.lower().endswith(AUDIO_EXTENSIONS)]
      for name in names:
        label = label_from_path(os.path.relpath(name, base))
        if label:
          clips.append(Clip(source, name, label))
  return clips


def dpkg_owners(info_dir: str = "/var/lib/dpkg/info") -> Dict[str, str]:
  """File path -> the Debian package that installed it, from dpkg's
  database (the .list files dpkg -L reads); {} without dpkg."""
  owners = {}
  for list_file in sorted(glob.glob(os.path.join(info_dir, "*.list"))):
    package = os.path.basename(list_file)[:-len(".list")].split(":")[0]
    with open(list_file, encoding="utf-8", errors="replace") as f:
      for line in f:
        owners[line.rstrip("\n")] = package
  return owners


def dpkg_versions(packages: Sequence[str],
                  status: str = "/var/lib/dpkg/status") -> Dict[str, str]:
  """Installed version of each of the packages, from dpkg's status file."""
  versions, package = {}, None
  if not os.path.exists(status):
    return versions
  with open(status, encoding="utf-8", errors="replace") as f:
    for line in f:
      if line.startswith("Package: "):
        package = line.split(":", 1)[1].strip()
      elif line.startswith("Version: ") and package in packages:
        versions[package] = line.split(":", 1)[1].strip()
  return versions


# ---------------------------------------------------------------------------
# Reading a file.


def read_audio(path: str) -> Tuple[np.ndarray, int]:
  """(mono float32 samples, rate) of a file or ARCHIVE!MEMBER."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  if "!" in path:
    archive_path, member = path.split("!", 1)
    with zipfile.ZipFile(archive_path) as archive:
      data = archive.read(member)
    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
  else:
    audio, rate = sf.read(path, dtype="float32", always_2d=True)
  return audio.mean(axis=1), rate

