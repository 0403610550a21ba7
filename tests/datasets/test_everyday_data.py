"""The everyday-sound set: labels from paths, near-duplicates, the split,
on small folders of real audio files written here; and one build from the
installed Debian game packages (skipped without them)."""

import csv
import hashlib
import os

import numpy as np
import pytest
import soundfile as sf

from tagger.audio import decode
from tagger.datasets import everyday_data
from tagger.datasets import near_duplicates
from tagger.datasets import sound_effects
from tagger.lab import baselines

SR = 44100


def _sound(seed: int, seconds: float = 1.0) -> np.ndarray:
  """A distinct sound: a few decaying tones at random times and pitches
  over a faint noise floor."""
  rng = np.random.default_rng(seed)
  n = int(seconds * SR)
  t = np.arange(n) / SR
  y = 0.003 * rng.standard_normal(n)
  for _ in range(5):
    start, length = rng.uniform(0, 0.8 * seconds), rng.uniform(0.05, 0.3)
    hz = rng.uniform(150, 3000)
    on = (t >= start) & (t < start + length)
    y[on] += np.sin(2 * np.pi * hz * t[on]) * np.exp(-(t[on] - start) /
                                                     (length / 3))
  return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def _write(path, waveform, rate=SR, **kwargs):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  sf.write(str(path), waveform, rate, **kwargs)


def _altered_copy(waveform: np.ndarray, path) -> None:
  """The same recording as another game might ship it: 10 dB quieter,
  22.05 kHz, 15 ms trimmed off the start, Ogg Vorbis."""
  quieter = 0.3 * waveform[int(0.015 * SR):]
  _write(path, decode.resample(quieter, SR, 22050), 22050, format="OGG",
         subtype="VORBIS")


def _games(root) -> dict:
  """Three game folders of real audio files: {name: waveform} of the
  originals. Game 'gamma' holds an altered copy of alpha's dog1, and each
  game some files that must not be used (music, speech, a broken file, a
  silent one, one too short)."""
  sounds = {}
  seed = 0
  for game, files in {
      "alpha": ["sounds/dog1.wav", "sounds/dog2.wav", "sounds/rain.wav",
                "sounds/rain_heavy.wav", "sfx/explosion1.wav",
                "sfx/explosion2.wav", "sfx/Footstep01.wav"],
      "beta": ["snd/dog_bark.wav", "snd/dog_bark2.flac", "ambient/rain1.wav",
               "ambient/rain2.wav", "fx/boom.wav", "fx/big_explosion.wav",
               "player/footsteps/boot1.wav"],
      "gamma": ["animals/dogs/dog.ogg", "weather/rain.ogg",
                "weapons/explosion.ogg", "misc/footstep_wood.wav"]}.items():
    for name in files:
      seed += 1
      sounds[f"{game}/{name}"] = _sound(seed, 0.8 + 0.1 * (seed % 5))
      _write(root / game / name, sounds[f"{game}/{name}"])
  _altered_copy(sounds["alpha/sounds/dog1.wav"], root / "gamma/animals/dogs/"
                "dog_copy.ogg")
  _write(root / "alpha/music/rain_theme.wav", _sound(90))   # music: no
  _write(root / "beta/voices/dog_taunt.wav", _sound(91))    # speech: no
  _write(root / "beta/snd/dog_short.wav", _sound(92, 0.1))  # too short
  _write(root / "gamma/weather/rain_silent.wav", np.zeros(SR, np.float32))
  (root / "alpha/sounds/dog_broken.wav").write_bytes(b"RIFF\0\0\0\0WAVEjunk")
  return sounds


def _read_csv(path):
  with open(path, encoding="utf-8", newline="") as f:
    return list(csv.DictReader(f))


@pytest.mark.parametrize("path,label", [
    ("sounds/dog1.wav", "dog"),
    ("misc/MetalFootstep01.wav", "footsteps"),      # camel case, suffix
    ("player/footsteps/boot1.wav", "footsteps"),    # the folder decides
    ("player/footsteps/splash2.wav", "footsteps"),  # splash's exclusion
    ("pak0.pk3!sound/world/wind1.wav", "wind"),     # an archive member
    ("explosions/thunder.wav", "thunder"),          # the file name first
    ("sounds/Water1.wav", "water_flow"),
    ("ambient/windgust_11.ogg", "wind"),            # prefix of 5+ letters
    ("sounds/WindMill1.wav", None),                 # wind's exclusion
    ("sounds/Fire_Bullet_Laser.wav", None),         # fire's exclusion
    ("sounds/lamborghinidiablo.wav", None),         # 'lamb' is too short
    ("music/rain_theme.ogg", None),                 # EXCLUDE
    ("voices/dog_taunt.wav", None),
    ("stamps/animals/dogs/dog_desc_fr.ogg", None),  # spoken name
    ("stamps/animals/dogs/dog_en_GB.ogg", None),
    ("sounds/rain_train.wav", None),                # two classes
    ("sounds/computer.wav", None),                  # none
])
def test_label_from_path(path, label):
  assert sound_effects.label_from_path(path) == label


def test_path_words_split_case_digits_and_parts():
  assert sound_effects.path_words("sfx/MetalFootstep01.wav") == [
      ["metal", "footstep"], ["sfx"]]
  assert sound_effects.path_words("a.pk3!sound/exploBig.ogg") == [
      ["explo", "big"], ["sound"], ["a", "pk"]]


def test_finds_labelled_files_by_source_and_skips_bad_ones(tmp_path):
  _games(tmp_path)
  spec = everyday_data.EverydaySpec(roots=(str(tmp_path) + "/*",))
  found = sound_effects.find_labelled(spec.roots)
  names = {(c.source, os.path.relpath(c.path, tmp_path)) for c in found}
  assert ("alpha", "alpha/sounds/dog1.wav") in names
  assert ("beta", "beta/player/footsteps/boot1.wav") in names
  assert not any("music" in n or "voices" in n for _, n in names)
  clips, skipped = everyday_data.decode_clips(found, spec)
  reasons = {os.path.basename(r[1]): r[3] for r in skipped}
  assert set(reasons) == {"dog_short.wav", "rain_silent.wav",
                          "dog_broken.wav"}
  assert reasons["dog_short.wav"].startswith("too short")
  assert reasons["rain_silent.wav"].startswith("silent")
  assert reasons["dog_broken.wav"].startswith("unreadable")
  assert all(c.waveform.dtype == np.float32 and c.seconds >= 0.3
             for c in clips)


def test_near_duplicates_survive_gain_resampling_trim_and_format(tmp_path):
  _games(tmp_path)
  spec = everyday_data.EverydaySpec(roots=(str(tmp_path) + "/*",))
  clips, _ = everyday_data.decode_clips(
      sound_effects.find_labelled(spec.roots), spec)
  kept, rows = near_duplicates.near_duplicates(clips, spec.duplicate_corr)
  assert len(rows) == 1
  source, path, label, kept_source, kept_path = rows[0][:5]
  assert (source, os.path.basename(path), label) == ("gamma", "dog_copy.ogg",
                                                     "dog")
  assert (kept_source, os.path.basename(kept_path)) == ("alpha", "dog1.wav")
  assert float(rows[0][6]) > spec.duplicate_corr
  assert len(kept) == len(clips) - 1
  # Distinct sounds of one class are far from it.
  prints = [near_duplicates.fingerprint(c.waveform, sound_effects.RATE)
            for c in clips]
  dogs = [i for i, c in enumerate(clips) if c.label == "dog"
          and "copy" not in c.path]
  corr = [near_duplicates.envelope_corr(prints[a], prints[b])
          for a in dogs for b in dogs if a < b]
  assert max(corr) < 0.7


def _clip(source, label):
  return sound_effects.Clip(source, f"{source}/{label}.wav", label)


def test_test_only_sources_give_every_class_both_sides():
  by_class = {"dog": ["a", "b"], "rain": ["a", "c"], "boom": ["b", "c", "d"]}
  rng = np.random.default_rng(0)
  held = everyday_data.choose_test_sources(by_class, 0.3, rng)
  assert all(set(v) & set(held) and set(v) - set(held)
             for v in by_class.values())
  assert held == everyday_data.choose_test_sources(
      by_class, 0.3, np.random.default_rng(0))


def test_split_keeps_whole_test_only_sources_in_test():
  clips = ([_clip("a", "dog") for _ in range(8)] +
           [_clip("b", "dog") for _ in range(5)] +
           [_clip("c", "dog") for _ in range(2)])
  assigned = everyday_data.split_clips(clips, ["b"], 0.25,
                                       np.random.default_rng(0))
  sides = [(c.source, split) for c, split in assigned]
  assert sides.count(("b", "test")) == 5 and ("b", "train") not in sides
  # 10 clips of the training sources: round(2.5) = 2 held out.
  assert sum(1 for s, split in sides if s != "b" and split == "test") == 2
  capped = everyday_data.cap_per_source(clips, 3, np.random.default_rng(0))
  assert [c.source for c in capped] == ["a"] * 3 + ["b"] * 3 + ["c"] * 2


def _digest(root):
  h = hashlib.sha256()
  for dirpath, _, files in sorted(os.walk(root)):
    for name in sorted(files):
      with open(os.path.join(dirpath, name), "rb") as f:
        h.update(name.encode() + f.read())
  return h.hexdigest()


def test_writes_the_kaggle_layout_with_source_groups(tmp_path):
  _games(tmp_path / "games")
  spec = everyday_data.EverydaySpec(
      roots=(str(tmp_path / "games") + "/*",), test_only_sources=("gamma",),
      min_clips=3, seed=1)
  out = tmp_path / "set"
  counts = everyday_data.make_everyday_data(str(out), spec, progress=False)
  assert counts["classes"] == 4 and counts["duplicates"] == 1
  assert counts["test_only_sources"] == ["gamma"]
  train, test = _read_csv(out / "train.csv"), _read_csv(out / "test_labels.csv")
  sources = _read_csv(out / "sources.csv")
  assert list(train[0]) == ["fname", "label", "manually_verified"]
  assert {r["manually_verified"] for r in train} == {"1"}
  assert len(sources) == len(train) + len(test) == counts["train"] + counts[
      "test"]
  by_name = {r["fname"]: r for r in sources}
  assert all(by_name[r["fname"]]["source"] != "gamma" for r in train)
  assert [r["fname"] for r in _read_csv(out / "sample_submission.csv")] == [
      r["fname"] for r in test]
  # tools/benchmark_quality's groups: gamma's clips are the cross-source
  # ones, the held-out clips of alpha and beta the same-source ones.
  groups = baselines.read_source_groups(str(out))
  assert set(groups) == {r["fname"] for r in test}
  for fname, group in groups.items():
    cross = by_name[fname]["source"] == "gamma"
    assert group == (baselines.CROSS if cross else baselines.SAME)
  assert {baselines.CROSS, baselines.SAME} == set(groups.values())
  for row in counts["table"].values():
    assert row.get("train", 0) > 0 and row.get("cross_source", 0) > 0
  # Names say nothing; audio is 16-bit mono 44.1 kHz.
  for r in train + test:
    assert len(r["fname"]) == 12 and int(r["fname"][:8], 16) >= 0
  for split, rows in (("train", train), ("test", test)):
    for r in rows:
      info = sf.info(str(out / f"audio_{split}" / r["fname"]))
      assert (info.samplerate, info.channels, info.subtype) == (
          SR, 1, "PCM_16")
  dups = _read_csv(out / "duplicates.csv")
  assert [os.path.basename(r["path"]) for r in dups] == ["dog_copy.ogg"]
  assert len(_read_csv(out / "skipped.csv")) == 3
  # Same seed, same files.
  everyday_data.make_everyday_data(str(tmp_path / "again"), spec,
                                   progress=False)
  assert _digest(out) == _digest(tmp_path / "again")


def test_no_sound_effects_is_one_line(tmp_path):
  with pytest.raises(everyday_data.EverydayDataError, match="apt-get"):
    everyday_data.make_everyday_data(
        str(tmp_path / "set"),
        everyday_data.EverydaySpec(roots=(str(tmp_path) + "/*",)),
        progress=False)


INSTALLED = ("/usr/share/games/scorched3d", "/usr/share/games/widelands",
             "/usr/share/tuxpaint/stamps")


def test_builds_from_the_installed_debian_packages(tmp_path):
  missing = [p for p in INSTALLED if not os.path.isdir(p)]
  if missing:
    pytest.skip(f"{missing} not installed: apt-get install -y "
                "--no-install-recommends scorched3d-data widelands-data "
                "tuxpaint-stamps-default")
  spec = everyday_data.EverydaySpec(roots=INSTALLED, per_source_cap=4,
                                    min_clips=4)
  out = tmp_path / "set"
  counts = everyday_data.make_everyday_data(str(out), spec, progress=False)
  assert counts["classes"] >= 4
  assert counts["test_only_sources"] and counts["cross_source_test"] > 0
  groups = baselines.read_source_groups(str(out))
  assert set(groups.values()) == {baselines.CROSS, baselines.SAME}
  packages = {r["package"] for r in _read_csv(out / "packages.csv")}
  assert {"scorched3d-data", "widelands-data"} <= packages
