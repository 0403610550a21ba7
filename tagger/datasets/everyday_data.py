"""A Kaggle-layout evaluation set of everyday sounds, cut from the recorded
sound effects that Debian's game packages ship.

The recorded instrument set (recorded_data.py) plays soundfonts; this one
uses sound effects that people recorded (dogs, doors, rain, engines, ...)
and that games ship as files, so each game is a recording source of its
own (other microphones, rooms, editing and formats):

  - sources: each folder under a root given as "ROOT/*" is one source
    (/usr/share/games/openarena: the openarena-* packages together, which
    share recordings), a root given without "/*" is one source as a whole
    (/usr/share/tuxpaint). Each file's Debian package comes from dpkg's
    database (/var/lib/dpkg/info/*.list, what dpkg -L reads) and is
    reported in packages.csv; files in no package are still used.
    WAV, OGG, FLAC, MP3 and Opus files are read with soundfile (libsndfile),
    and so are the members of zip archives (.pk3, .zip, .wz).
  - labels from the path by keyword (CLASSES): the file name's words decide,
    else the nearest folder's; a path with a word of EXCLUDE (music,
    speech, menus, user-interface sounds) or of a class's own exclusions is
    not used, nor one whose words name two classes. A class needs
    min_sources sources (after the steps below) or it is left out.
  - clips of 0.3 s to 30 s with audible sound (RMS over -50 dBFS); the
    others are listed in skipped.csv with the reason;
  - near-duplicates removed before the split (games share public
    recordings): a clip whose coarse log-mel envelope correlates above
    duplicate_corr with an earlier one's (see near_duplicates) is dropped,
    whatever its class; duplicates.csv lists each with the copy kept;
  - at most per_source_cap clips of a class from one source (drawn by
    seed), so no game dominates a class;
  - cross-source split: whole sources are test-only (chosen by seed among
    the assignments that give every class a training source and a
    test-only source, or given), the others train; same_source_test of the
    training sources' clips of each class go to test too. sources.csv
    (fname,split,source) names each clip's source, so tools/benchmark_quality
    reports the test split as 'same_source' (sources training hears) and
    'cross_source' (sources it never hears).

Layout written: train.csv (all manually_verified=1), audio_train/,
sample_submission.csv, audio_test/, test_labels.csv, sources.csv, plus
duplicates.csv, skipped.csv and packages.csv. Audio: 16-bit mono WAV at
44.1 kHz (soxr, tagger.audio.decode.resample), named by a random hex id.
Deterministic by seed for the same installed files.

Needs the games' data packages (Debian: see BUILD_PACKAGES); nothing else
in tagger does.
"""

import collections
import dataclasses
import glob
import io
import os
import re
import zipfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tagger import errors
from tagger.audio import decode
from tagger.datasets import demo_data

RATE = demo_data.SAMPLE_RATE   # every clip is written at this rate

DEFAULT_ROOTS = ("/usr/share/games/*", "/usr/share/sounds/*",
                 "/usr/share/tuxpaint")
AUDIO_EXTENSIONS = (".wav", ".ogg", ".oga", ".flac", ".mp3", ".opus")
ARCHIVE_EXTENSIONS = (".pk3", ".zip", ".wz")

# The packages the default build was made from (apt-get install -y
# --no-install-recommends ...); any subset works.
BUILD_PACKAGES = (
    "0ad-data btanks-data chromium-bsu-data cube2-data endless-sky-data "
    "freeciv-data freedroid-data freeorion-data hedgewars-data "
    "lincity-ng-data megaglest-data nexuiz-data openarena-data pingus-data "
    "scorched3d-data supertux-data supertuxkart-data torcs-data "
    "trigger-rally-data tuxpaint-stamps-default warmux-data "
    "warzone2100-data wesnoth-1.16-data widelands-data")


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


@dataclasses.dataclass(frozen=True)
class EverydaySpec:
  roots: Tuple[str, ...] = DEFAULT_ROOTS
  per_source_cap: int = 30       # clips of one class from one source at most
  same_source_test: float = 0.2  # share of training sources' clips in test
  test_only_sources: Tuple[str, ...] = ()   # () : chosen by seed
  test_only_share: float = 0.25  # of the clips, when chosen by seed
  min_sources: int = 2           # a class needs clips from this many sources
  min_clips: int = 6             # and this many clips (after duplicates, cap)
  min_seconds: float = 0.3
  max_seconds: float = 30.0
  min_rms_db: float = -50.0      # quieter clips are skipped as silent
  duplicate_corr: float = 0.95   # envelope_corr of a near-duplicate
  seed: int = 0


class EverydayDataError(errors.UserError):
  """No usable sound effects under the roots; the message says what."""


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
# Decoding.


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


def _skip_reason(waveform: np.ndarray, rate: int,
                 spec: EverydaySpec) -> Optional[str]:
  seconds = len(waveform) / rate
  if seconds < spec.min_seconds:
    return f"too short ({seconds:.2f} s < {spec.min_seconds} s)"
  if seconds > spec.max_seconds:
    return f"too long ({seconds:.1f} s > {spec.max_seconds} s)"
  if not np.all(np.isfinite(waveform)):
    return "NaN or infinite samples"
  rms_db = 10 * np.log10(np.mean(waveform.astype(np.float64)**2) + 1e-20)
  if rms_db < spec.min_rms_db:
    return f"silent (RMS {rms_db:.0f} dBFS < {spec.min_rms_db:.0f})"
  return None


def decode_clips(clips: Sequence[Clip], spec: EverydaySpec,
                 progress: bool = False) -> Tuple[List[Clip], List[list]]:
  """(the clips that decode to a usable sound, at RATE; skipped.csv's rows
  [source, path, label, reason] for the others)."""
  kept, skipped = [], []
  for i, clip in enumerate(clips):
    try:
      waveform, rate = read_audio(clip.path)
    except Exception as e:  # pylint: disable=broad-except
      # libsndfile, zip and header errors all mean: not this file.
      reason = "unreadable: " + decode.decode_reason(e).splitlines()[0][:120]
      skipped.append([clip.source, clip.path, clip.label, reason])
      continue
    reason = _skip_reason(waveform, rate, spec)
    if reason:
      skipped.append([clip.source, clip.path, clip.label, reason])
      continue
    clip.waveform = decode.resample(waveform, rate, RATE)
    clip.seconds = len(clip.waveform) / RATE
    kept.append(clip)
    if progress and (i + 1) % 200 == 0:
      print(f"  decoded {i + 1}/{len(clips)}", flush=True)
  return kept, skipped


# ---------------------------------------------------------------------------
# Near-duplicates.

FP_RATE = 8000      # fingerprints are taken at this rate (any source has it)
FP_HOP = 160        # 20 ms frames
FP_BANDS = 32       # mel bands, 60 Hz to 3.8 kHz
FP_FRAMES = 250     # the first 5 s after the onset are compared
FP_FLOOR_DB = 40.0  # the envelope is floored this far below its peak
FP_SHIFTS = 3       # frames of misalignment tried each way (small trims)


@dataclasses.dataclass
class Fingerprint:
  frames: np.ndarray    # [T, FP_BANDS] log-mel envelope from the onset
  profile: np.ndarray   # [FP_BANDS] its mean over time, z-normalised
  audible: float        # seconds from the first to the last audible frame


def fingerprint(waveform: np.ndarray, rate: int) -> Fingerprint:
  """The coarse log-mel envelope of a sound at FP_RATE: 32 bands every
  20 ms, in dB floored FP_FLOOR_DB below the peak, from the first frame
  within 30 dB of the peak, at most FP_FRAMES frames. Gain (a dB offset)
  and resampling (bands below 3.8 kHz) leave it as it was; trims move it
  by a few frames."""
  import librosa  # pylint: disable=g-import-not-at-top
  y = decode.resample(waveform, rate, FP_RATE)
  mel = librosa.feature.melspectrogram(
      y=y, sr=FP_RATE, n_fft=512, hop_length=FP_HOP, n_mels=FP_BANDS,
      fmin=60.0, fmax=3800.0, power=2.0, center=True)
  db = 10 * np.log10(mel.T + 1e-12)   # [T, bands]
  db = np.maximum(db, db.max() - FP_FLOOR_DB)
  level = db.max(axis=1)
  loud = np.nonzero(level > db.max() - 30.0)[0]
  start, stop = int(loud[0]), int(loud[-1]) + 1
  frames = db[start:start + FP_FRAMES]
  profile = frames.mean(axis=0)
  profile = (profile - profile.mean()) / (profile.std() + 1e-9)
  return Fingerprint(frames, profile, (stop - start) * FP_HOP / FP_RATE)


def _corr(x: np.ndarray, y: np.ndarray) -> float:
  x, y = x.ravel() - x.mean(), y.ravel() - y.mean()
  return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-9))


def envelope_corr(a: Fingerprint, b: Fingerprint) -> float:
  """How alike two envelopes are over their common length: the smaller of
  the correlation of their loudness contours (mean dB per frame) and that
  of their spectral shapes (dB less each frame's mean), at the best of up
  to FP_SHIFTS frames of offset either way. Two sounds that only share a
  contour (two bangs, two hisses) differ in shape."""
  best = -1.0
  for shift in range(-FP_SHIFTS, FP_SHIFTS + 1):
    x = a.frames[max(shift, 0):]
    y = b.frames[max(-shift, 0):]
    n = min(len(x), len(y))
    if n < 5:
      continue
    x, y = x[:n], y[:n]                        # [n, FP_BANDS]
    level_x, level_y = x.mean(axis=1), y.mean(axis=1)
    shape = _corr(x - level_x[:, None], y - level_y[:, None])
    best = max(best, min(_corr(level_x, level_y), shape))
  return best


def near_duplicates(clips: Sequence[Clip], spec: EverydaySpec
                    ) -> Tuple[List[int], List[list]]:
  """(indices of the clips kept, duplicates.csv's rows). A clip is a
  near-duplicate of an earlier kept one when their audible lengths are
  within 25% of each other, their mean spectra correlate above 0.8 and
  their envelopes (envelope_corr) above spec.duplicate_corr; the earlier
  one (source, then path order) is kept."""
  prints = [fingerprint(c.waveform, RATE) for c in clips]
  profiles = np.stack([p.profile for p in prints]) / np.sqrt(FP_BANDS)
  similar = profiles @ profiles.T        # [N, N] correlations of spectra
  audible = np.array([p.audible for p in prints])
  ratio = np.minimum.outer(audible, audible) / np.maximum(
      np.maximum.outer(audible, audible), 1e-9)
  candidates = (similar > 0.8) & (ratio > 0.75)
  kept, rows = [], []
  for i, clip in enumerate(clips):
    match = None
    for j in kept:
      if candidates[i, j]:
        corr = envelope_corr(prints[i], prints[j])
        if corr > spec.duplicate_corr:
          match = (j, corr)
          break
    if match is None:
      kept.append(i)
      continue
    j, corr = match
    rows.append([clip.source, clip.path, clip.label, clips[j].source,
                 clips[j].path, clips[j].label, f"{corr:.3f}"])
  return kept, rows


# ---------------------------------------------------------------------------
# The split.


def cap_per_source(clips: Sequence[Clip], cap: int, rng) -> List[Clip]:
  """At most cap clips of each (class, source), drawn at random; order
  kept."""
  groups = collections.defaultdict(list)
  for i, clip in enumerate(clips):
    groups[(clip.label, clip.source)].append(i)
  chosen = set()
  for key in sorted(groups):
    members = groups[key]
    if len(members) > cap:
      members = sorted(rng.choice(members, size=cap, replace=False).tolist())
    chosen.update(members)
  return [c for i, c in enumerate(clips) if i in chosen]


def class_sources(clips: Sequence[Clip]) -> Dict[str, List[str]]:
  """Class -> the sources that have clips of it, sorted."""
  out = collections.defaultdict(set)
  for clip in clips:
    out[clip.label].add(clip.source)
  return {k: sorted(v) for k, v in sorted(out.items())}


def choose_test_sources(by_class: Dict[str, List[str]], share: float, rng,
                        sizes: Optional[Dict[str, int]] = None,
                        tries: int = 4000) -> Tuple[str, ...]:
  """Test-only sources such that as many classes as possible have both a
  test-only and a training source: the best of `tries` random draws (each
  source test-only with probability share), ties to the draw whose
  test-only sources hold the share of the clips (sizes: source -> clips;
  default one each) nearest to share."""
  sources = sorted({s for v in by_class.values() for s in v})
  sizes = sizes or {s: 1 for s in sources}
  total = sum(sizes[s] for s in sources)
  best, best_key = (), None
  for _ in range(tries):
    held = {s for s in sources if rng.uniform() < share}
    served = sum(1 for v in by_class.values()
                 if set(v) & held and set(v) - held)
    key = (served, -abs(sum(sizes[s] for s in held) / total - share))
    if best_key is None or key > best_key:
      best, best_key = tuple(sorted(held)), key
  return best


def split_clips(clips: Sequence[Clip], test_only: Sequence[str],
                same_source_test: float, rng) -> List[Tuple[Clip, str]]:
  """(clip, split) for each clip: test-only sources' clips go to test; of
  each class's clips from the other sources, round(same_source_test * n)
  drawn at random go to test too (at least one when n >= 3), the rest to
  train."""
  held = set(test_only)
  out = []
  by_class = collections.defaultdict(list)
  for clip in clips:
    if clip.source in held:
      out.append((clip, "test"))
    else:
      by_class[clip.label].append(clip)
  for label in sorted(by_class):
    members = by_class[label]
    n_test = int(round(same_source_test * len(members)))
    if len(members) >= 3:
      n_test = max(n_test, 1)
    test = set(rng.choice(len(members), size=n_test, replace=False).tolist())
    out.extend((c, "test" if i in test else "train")
               for i, c in enumerate(members))
  return out


def eligible_classes(clips: Sequence[Clip], spec: EverydaySpec
                     ) -> Dict[str, List[str]]:
  """Class -> its sources, for the classes with spec.min_clips clips from
  spec.min_sources sources."""
  sizes = collections.Counter(c.label for c in clips)
  return {label: sources for label, sources in class_sources(clips).items()
          if len(sources) >= spec.min_sources
          and sizes[label] >= spec.min_clips}


def usable_classes(by_class: Dict[str, List[str]],
                   test_only: Sequence[str]) -> List[str]:
  """The classes of by_class with a test-only source and another."""
  held = set(test_only)
  return [label for label, sources in by_class.items()
          if set(sources) & held and set(sources) - held]


# ---------------------------------------------------------------------------
# The set.


def _write_audio(output_dir: str, assigned, rng) -> Tuple[dict, list]:
  """Writes each clip under audio_<split>/ by a random hex name; (rows by
  split, sources.csv's rows)."""
  names = rng.choice(16**8, size=len(assigned), replace=False)
  order = rng.permutation(len(assigned))
  rows, source_rows = {"train": [], "test": []}, []
  for split in rows:
    os.makedirs(os.path.join(output_dir, f"audio_{split}"), exist_ok=True)
  for k, i in enumerate(order):
    clip, split = assigned[i]
    fname = f"{int(names[k]):08x}.wav"
    with open(os.path.join(output_dir, f"audio_{split}", fname), "wb") as f:
      f.write(demo_data.wav_bytes(clip.waveform, RATE))
    rows[split].append([fname, clip.label] + ([1] if split == "train"
                                              else []))
    source_rows.append([fname, split, clip.source])
  return rows, source_rows


def _write_csvs(output_dir: str, labels, rows, source_rows) -> None:
  """train.csv, sample_submission.csv, test_labels.csv, sources.csv."""
  demo_data.write_csv(os.path.join(output_dir, "train.csv"),
                      ["fname", "label", "manually_verified"], rows["train"])
  placeholder = " ".join(labels[:3])
  demo_data.write_csv(os.path.join(output_dir, "sample_submission.csv"),
                      ["fname", "label"],
                      [[r[0], placeholder] for r in rows["test"]])
  demo_data.write_csv(os.path.join(output_dir, "test_labels.csv"),
                      ["fname", "label"], rows["test"])
  demo_data.write_csv(os.path.join(output_dir, "sources.csv"),
                      ["fname", "split", "source"], source_rows)


def _package_rows(assigned) -> List[list]:
  """packages.csv: source, package, version, clips used."""
  owners = dpkg_owners()
  counts = collections.Counter()
  for clip, _ in assigned:
    path = clip.path.split("!", 1)[0]
    counts[(clip.source, owners.get(path, ""))] += 1
  versions = dpkg_versions({p for _, p in counts})
  return [[s, p, versions.get(p, ""), n]
          for (s, p), n in sorted(counts.items())]


def _summary(assigned, test_only) -> dict:
  """Clip counts by class, split and group (same / cross source)."""
  table = collections.defaultdict(collections.Counter)
  for clip, split in assigned:
    group = ("train" if split == "train" else
             "cross_source" if clip.source in test_only else "same_source")
    table[clip.label][group] += 1
  return {k: dict(v) for k, v in sorted(table.items())}


def make_everyday_data(output_dir: str,
                       spec: EverydaySpec = EverydaySpec(),
                       progress: bool = True) -> dict:
  """Writes the set under output_dir (local); returns counts and the
  class x group table."""
  rng = np.random.default_rng(spec.seed)
  found = find_labelled(spec.roots)
  if not found:
    raise EverydayDataError(
        f"no labelled sound effects under {list(spec.roots)}: apt-get "
        f"install -y --no-install-recommends {BUILD_PACKAGES}")
  if progress:
    print(f"{len(found)} labelled files in "
          f"{len({c.source for c in found})} sources; decoding", flush=True)
  clips, skipped = decode_clips(found, spec, progress)
  kept, duplicates = near_duplicates(clips, spec)
  clips = cap_per_source([clips[i] for i in kept], spec.per_source_cap, rng)
  by_class = eligible_classes(clips, spec)
  sizes = collections.Counter(c.source for c in clips
                              if c.label in by_class)
  test_only = tuple(spec.test_only_sources) or choose_test_sources(
      by_class, spec.test_only_share, rng, sizes)
  labels = usable_classes(by_class, test_only)
  if len(labels) < 2:
    raise EverydayDataError(
        f"only {len(labels)} class(es) have {spec.min_clips}+ clips from "
        f"{spec.min_sources}+ sources, one of them test-only (test-only: "
        f"{list(test_only)}): apt-get install -y --no-install-recommends "
        f"{BUILD_PACKAGES}")
  clips = [c for c in clips if c.label in labels]
  assigned = split_clips(clips, test_only, spec.same_source_test, rng)
  rows, source_rows = _write_audio(output_dir, assigned, rng)
  _write_csvs(output_dir, labels, rows, source_rows)
  demo_data.write_csv(os.path.join(output_dir, "duplicates.csv"),
                      ["source", "path", "label", "kept_source", "kept_path",
                       "kept_label", "corr"], duplicates)
  demo_data.write_csv(os.path.join(output_dir, "skipped.csv"),
                      ["source", "path", "label", "reason"], skipped)
  demo_data.write_csv(os.path.join(output_dir, "packages.csv"),
                      ["source", "package", "version", "clips"],
                      _package_rows(assigned))
  return {"train": len(rows["train"]), "test": len(rows["test"]),
          "classes": len(labels), "duplicates": len(duplicates),
          "skipped": len(skipped), "test_only_sources": list(test_only),
          "sources": sorted({c.source for c in clips}),
          "cross_source_test": sum(1 for c, _ in assigned
                                   if c.source in test_only),
          "table": _summary(assigned, set(test_only))}


def describe(counts: dict) -> str:
  """The class x group table of make_everyday_data's counts, as text."""
  groups = ("train", "same_source", "cross_source")
  lines = [f"{'class':<12}" + "".join(f"{g:>14}" for g in groups)]
  for label, row in counts["table"].items():
    lines.append(f"{label:<12}" + "".join(f"{row.get(g, 0):>14}"
                                          for g in groups))
  totals = [sum(r.get(g, 0) for r in counts["table"].values())
            for g in groups]
  lines.append(f"{'total':<12}" + "".join(f"{t:>14}" for t in totals))
  return "\n".join(lines)
