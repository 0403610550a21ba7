"""A Kaggle-layout evaluation set of everyday sounds, cut from the recorded
sound effects that Debian's game packages ship.

The recorded instrument set (recorded_data.py) plays soundfonts; this one
uses sound effects that people recorded (dogs, doors, rain, engines, ...)
and that games ship as files, so each game is a recording source of its
own (other microphones, rooms, editing and formats):

  - sources and labels (sound_effects.py): each game's folder under the
    roots is a source, each file's class comes from its path's words
    (CLASSES, EXCLUDE), and each file's Debian package from dpkg's
    database is reported in packages.csv; files in no package are still
    used. A class needs min_sources sources (after the steps below) or it
    is left out.
  - clips of 0.3 s to 30 s with audible sound (RMS over -50 dBFS); the
    others are listed in skipped.csv with the reason;
  - near-duplicates removed before the split (games share public
    recordings): a clip whose coarse log-mel envelope correlates above
    duplicate_corr with an earlier one's (near_duplicates.py) is dropped,
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
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tagger import errors
from tagger.audio import decode
from tagger.datasets import demo_data
from tagger.datasets import near_duplicates
from tagger.datasets import sound_effects

DEFAULT_ROOTS = ("/usr/share/games/*", "/usr/share/sounds/*",
                 "/usr/share/tuxpaint")

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
class EverydaySpec:
  """How the set is built: the roots scanned, the clip checks, the
  near-duplicate threshold, the cap per source and the split."""
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


# ---------------------------------------------------------------------------
# Decoding.


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


def decode_clips(clips: Sequence[sound_effects.Clip], spec: EverydaySpec,
                 progress: bool = False
                 ) -> Tuple[List[sound_effects.Clip], List[list]]:
  """(the clips that decode to a usable sound, at sound_effects.RATE;
  skipped.csv's rows [source, path, label, reason] for the others)."""
  kept, skipped = [], []
  for i, clip in enumerate(clips):
    try:
      waveform, rate = sound_effects.read_audio(clip.path)
    except Exception as e:  # pylint: disable=broad-except
      # libsndfile, zip and header errors all mean: not this file.
      reason = "unreadable: " + decode.decode_reason(e).splitlines()[0][:120]
      skipped.append([clip.source, clip.path, clip.label, reason])
      continue
    reason = _skip_reason(waveform, rate, spec)
    if reason:
      skipped.append([clip.source, clip.path, clip.label, reason])
      continue
    clip.waveform = decode.resample(waveform, rate, sound_effects.RATE)
    clip.seconds = len(clip.waveform) / sound_effects.RATE
    kept.append(clip)
    if progress and (i + 1) % 200 == 0:
      print(f"  decoded {i + 1}/{len(clips)}", flush=True)
  return kept, skipped


# ---------------------------------------------------------------------------
# The split.


def cap_per_source(clips: Sequence[sound_effects.Clip], cap: int,
                   rng) -> List[sound_effects.Clip]:
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


def class_sources(clips: Sequence[sound_effects.Clip]) -> Dict[str, List[str]]:
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


def split_clips(clips: Sequence[sound_effects.Clip],
                test_only: Sequence[str], same_source_test: float,
                rng) -> List[Tuple[sound_effects.Clip, str]]:
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


def eligible_classes(clips: Sequence[sound_effects.Clip], spec: EverydaySpec
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
      f.write(demo_data.wav_bytes(clip.waveform, sound_effects.RATE))
    rows[split].append([fname, clip.label] + ([1] if split == "train"
                                              else []))
    source_rows.append([fname, split, clip.source])
  return rows, source_rows


def _package_rows(assigned) -> List[list]:
  """packages.csv: source, package, version, clips used."""
  owners = sound_effects.dpkg_owners()
  counts = collections.Counter()
  for clip, _ in assigned:
    path = clip.path.split("!", 1)[0]
    counts[(clip.source, owners.get(path, ""))] += 1
  versions = sound_effects.dpkg_versions({p for _, p in counts})
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
  demo_data.mark_dataset_folder(output_dir, "make_everyday_data")
  rng = np.random.default_rng(spec.seed)
  found = sound_effects.find_labelled(spec.roots)
  if not found:
    raise EverydayDataError(
        f"no labelled sound effects under {list(spec.roots)}: apt-get "
        f"install -y --no-install-recommends {BUILD_PACKAGES}")
  if progress:
    print(f"{len(found)} labelled files in "
          f"{len({c.source for c in found})} sources; decoding", flush=True)
  clips, skipped = decode_clips(found, spec, progress)
  kept, duplicates = near_duplicates.near_duplicates(
      clips, spec.duplicate_corr)
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
  demo_data.write_layout_csvs(output_dir, labels, rows, source_rows)
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
