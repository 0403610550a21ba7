"""Nothing lost, nothing silent on the serving side: export never deletes
what it did not write, one intake for a user's file (tag, frames,
tools/score), long audio heard the same way everywhere, every file of a
scored folder accounted for, settings refused before any work."""

import csv
import dataclasses
import json
import logging
import os
import shutil
import threading

import numpy as np
import pytest
import tensorflow as tf

from tagger import api
from tagger import settings
from tagger.audio import decode
from tagger.audio import graph_features
from tagger.audio.params import FeatureParams
from tagger.infer import export as export_lib
from tagger.infer import score
from tagger.infer import scorer
from serving_model import demo, saved  # pylint: disable=g-bad-import-order,unused-import
from conftest import tone, wav_bytes  # pylint: disable=g-bad-import-order

PARAMS = FeatureParams()


def _tree(path):
  return sorted(os.path.relpath(os.path.join(r, n), path)
                for r, ds, fs in os.walk(path) for n in ds + fs)


# -- export: never delete what tagger did not write ---------------------------

def test_export_refuses_folders_it_did_not_write(demo, tmp_path,
                                                 monkeypatch):
  model_dir = demo[2]
  user = tmp_path / "mine"
  user.mkdir()
  (user / "notes.txt").write_text("keep me")
  before = _tree(model_dir)
  cases = [str(user), os.path.dirname(model_dir), model_dir,
           os.path.dirname(os.path.dirname(model_dir))]
  for target in cases:
    with pytest.raises(export_lib.ExportDirError) as e:
      export_lib.export(model_dir, target)
    assert "\n" not in str(e.value) and target in str(e.value)
  monkeypatch.chdir(user)
  with pytest.raises(export_lib.ExportDirError):
    export_lib.export(model_dir, ".")
  (tmp_path / "a_file").write_text("x")
  with pytest.raises(export_lib.ExportDirError, match="is a file"):
    export_lib.export(model_dir, str(tmp_path / "a_file"))
  assert (user / "notes.txt").read_text() == "keep me"
  assert _tree(str(user)) == ["notes.txt"]
  assert _tree(model_dir) == before
  assert (tmp_path / "a_file").read_text() == "x"


def test_export_replaces_only_its_own_export(demo, saved, tmp_path):
  target = tmp_path / "export"
  shutil.copytree(saved, target)
  assert (target / export_lib.EXPORT_MARK).exists()
  mark = json.loads((target / export_lib.EXPORT_MARK).read_text())
  assert mark["written_by"] == "tagger tools/export"
  (target / "variables" / "stale").write_text("old")   # inside an entry
  export_lib.export(demo[2], str(target))
  assert not (target / "variables" / "stale").exists()
  assert tf.saved_model.load(str(target)).signatures["frames"] is not None
  # An export beside which the user put a file of theirs: refused, kept.
  (target / "README.txt").write_text("mine")
  with pytest.raises(export_lib.ExportDirError, match="README.txt"):
    export_lib.export(demo[2], str(target))
  assert (target / "README.txt").read_text() == "mine"
  # An empty folder is taken; nothing is left beside it.
  empty = tmp_path / "empty"
  empty.mkdir()
  export_lib.export(demo[2], str(empty))
  assert (empty / "saved_model.pb").exists()
  assert sorted(os.listdir(tmp_path)) == ["empty", "export"]


def test_a_failed_export_leaves_nothing_behind(demo, tmp_path,
                                               monkeypatch):
  def fail(*args, **kwargs):
    raise OSError("disk full")
  target = tmp_path / "out"
  monkeypatch.setattr(tf.saved_model, "save", fail)
  with pytest.raises(OSError, match="disk full"):
    export_lib.export(demo[2], str(target))
  assert os.listdir(tmp_path) == []


def test_export_settings_refused_before_any_work(demo, tmp_path):
  for kwargs, match in (({"tries": 0}, "--tries"), ({"tries": -3}, "--tries"),
                        ({"window": -4}, "--window")):
    with pytest.raises(scorer.ScoreError, match=match):
      export_lib.export(demo[2], str(tmp_path / "x"), **kwargs)
  assert os.listdir(tmp_path) == []


def test_a_damaged_saved_model_is_one_line(saved, tmp_path):
  target = tmp_path / "damaged"
  shutil.copytree(saved, target)
  data = next((target / "variables").glob("variables.data*"))
  data.write_bytes(data.read_bytes()[:1000])
  with pytest.raises(api.ApiError) as e:
    api.Tagger.load(str(target))
  assert str(target) in str(e.value) and "\n" not in str(e.value)


# -- one intake for a file ------------------------------------------------------

def _run_with_deadline(fn, seconds=60):
  """fn() in a thread; fails (instead of hanging the suite) if it blocks."""
  out = {}

  def target():
    try:
      out["value"] = fn()
    except Exception as e:  # pylint: disable=broad-except
      out["error"] = e
  thread = threading.Thread(target=target, daemon=True)
  thread.start()
  thread.join(seconds)
  assert not thread.is_alive(), "blocked"
  return out


@pytest.fixture(scope="module")
def tagger_of(demo):
  return api.Tagger.load(demo[2])


def test_tag_and_frames_refuse_what_is_not_a_regular_file(tagger_of,
                                                          tmp_path):
  fifo = str(tmp_path / "pipe.wav")
  os.mkfifo(fifo)
  folder = str(tmp_path / "folder.wav")
  os.mkdir(folder)
  for path, reason in ((fifo, "FIFO"), (folder, "directory"),
                       (str(tmp_path / "gone.wav"), "not found")):
    for call in (tagger_of.tag, tagger_of.frames):
      out = _run_with_deadline(lambda: call(path))
      error = out.get("error")
      assert isinstance(error, api.ApiError), out
      assert path in str(error) and reason in str(error)
      assert "\n" not in str(error)


def test_bad_audio_is_refused_alike_by_tag_and_frames(tagger_of, tmp_path):
  nan = tone(1.0)
  nan[100] = np.nan
  cases = {"nan.wav": (wav_bytes(nan, subtype="FLOAT"), "NaN"),
           "empty.wav": (b"", "empty"),
           "text.wav": (b"hello, this is not audio" * 20,
                        "tagger reads WAV, FLAC")}
  for name, (data, reason) in cases.items():
    path = tmp_path / name
    path.write_bytes(data)
    for call in (tagger_of.tag, tagger_of.frames):
      with pytest.raises((api.ApiError, decode.AudioError), match=reason):
        call(str(path))
  with pytest.raises(api.ApiError, match="NaN"):
    tagger_of.tag(nan, 44100)
  for hop in (0, -1, float("nan"), float("inf")):
    with pytest.raises(api.ApiError, match="hop_seconds"):
      tagger_of.frames(tone(1.0), hop, sample_rate=44100)


def test_truncated_and_clipped_audio_are_said_everywhere(tagger_of, tmp_path,
                                                        caplog):
  full = wav_bytes(tone(3.0))
  truncated = tmp_path / "cut_short.wav"
  truncated.write_bytes(full[:len(full) // 2])
  clipped = tmp_path / "loud.wav"
  clipped.write_bytes(wav_bytes(np.clip(tone(2.0, amp=3.0), -1, 1)))
  for path, word in ((truncated, "truncated"), (clipped, "clipped")):
    for call in (tagger_of.tag, tagger_of.frames):
      caplog.clear()
      with caplog.at_level(logging.WARNING):
        call(str(path))
      said = [r.getMessage() for r in caplog.records if word in
              r.getMessage()]
      assert len(said) == 1 and str(path) in said[0], (call, said)


def test_saved_model_refuses_nan_and_bad_hops(saved):
  model = tf.saved_model.load(saved)
  nan = tone(1.0)
  nan[5] = np.nan
  with pytest.raises(tf.errors.InvalidArgumentError, match="NaN"):
    model.signatures["serving_default"](waveform=tf.constant(nan))
  for hop in (0.0, -1.0, float("nan")):
    with pytest.raises(tf.errors.InvalidArgumentError, match="hop_seconds"):
      model.signatures["frames"](waveform=tf.constant(tone(1.0)),
                                 hop_seconds=tf.constant(hop))


# -- long audio: one meaning -----------------------------------------------------

def test_log_mel_in_blocks_equals_the_whole(monkeypatch):
  """The graph's log-mel, resampling and trim, computed a block at a time
  (memory flat in length), equal the one-pass results."""
  waveform = tf.constant(np.concatenate([np.zeros(9000, np.float32),
                                         tone(2.5, seed=3)]))
  whole_mel = graph_features.log_mel(waveform, PARAMS).numpy()
  whole_trim = graph_features.trim_bounds(waveform, PARAMS).numpy()
  whole_low = graph_features.resample(waveform, PARAMS).numpy()
  monkeypatch.setattr(graph_features, "FRAMES_PER_BLOCK", 37)
  monkeypatch.setattr(graph_features, "SAMPLES_PER_BLOCK", 1001)
  blocks_mel = graph_features.log_mel(waveform, PARAMS).numpy()
  blocks_trim = graph_features.trim_bounds(waveform, PARAMS).numpy()
  np.testing.assert_allclose(graph_features.resample(waveform, PARAMS),
                             whole_low, atol=1e-6)
  assert whole_mel.shape == blocks_mel.shape
  np.testing.assert_allclose(blocks_mel, whole_mel, atol=1e-3)
  np.testing.assert_array_equal(blocks_trim, whole_trim)


@pytest.fixture(scope="module")
def capped(demo, tmp_path_factory):
  """The demo model with max_clip_seconds = 2 in its data.json, exported:
  (model dir, SavedModel dir)."""
  root = tmp_path_factory.mktemp("capped")
  model_dir = str(root / "fold0")
  shutil.copytree(demo[2], model_dir)
  path = os.path.join(model_dir, "data.json")
  data = json.load(open(path, encoding="utf-8"))
  data["feature_params"]["max_clip_seconds"] = 2.0
  json.dump(data, open(path, "w", encoding="utf-8"))
  return model_dir, export_lib.export(model_dir, str(root / "saved"))


def test_long_audio_means_the_same_to_tag_score_and_the_saved_model(
    capped, tmp_path, caplog):
  """A clip longer than max_clip_seconds: tag(), the SavedModel and
  tools/score --tta=even hear its first max_clip_seconds, give the same
  scores, and say so."""
  model_dir, saved_dir = capped
  audio = tmp_path / "audio"
  audio.mkdir()
  long = np.concatenate([tone(2.0, 300.0), tone(3.0, 2000.0, seed=1)])
  (audio / "long.wav").write_bytes(wav_bytes(long))
  with caplog.at_level(logging.WARNING):
    clip = api.Tagger.load(model_dir).tag(str(audio / "long.wav"))
  assert clip.seconds == pytest.approx(5.0) and clip.heard_seconds == 2.0
  assert any("only the first 2 s are heard" in r.getMessage()
             for r in caplog.records)
  head = api.Tagger.load(model_dir).tag(long[:88200], 44100)
  np.testing.assert_allclose(clip.probabilities, head.probabilities,
                             atol=1e-5)
  served = tf.saved_model.load(saved_dir).signatures["serving_default"](
      waveform=tf.constant(long))
  assert float(served["heard_seconds"]) == pytest.approx(2.0)
  assert float(served["seconds"]) == pytest.approx(5.0)
  np.testing.assert_allclose(served["probabilities"].numpy(),
                             clip.probabilities, atol=1e-4)
  out = score.score(score.ScoreJob(
      model_dirs=model_dir, audio_dir=str(audio), output=str(tmp_path /
                                                             "s.csv"),
      probs_out=str(tmp_path / "p.csv"), tta="even", num_workers=1,
      progress=False))
  rows = list(csv.reader(open(tmp_path / "p.csv", encoding="utf-8")))
  offline = np.array([float(x) for x in rows[1][1:]])
  np.testing.assert_allclose(offline, clip.probabilities, atol=2e-4)
  assert [p.status for p in out["problems"]] == ["cut"]


# -- tools/score --audio_dir: every file accounted for ----------------------------

def _folder(tmp_path, good):
  audio = tmp_path / "audio"
  audio.mkdir()
  shutil.copy(good[0], audio / "=1+1.wav")
  shutil.copy(good[1], audio / "b_good.wav")
  (audio / "c_broken.wav").write_bytes(b"RIFF....WAVEfmt nothing here")
  (audio / "d_empty.wav").write_bytes(b"")
  (audio / "e_silent.wav").write_bytes(wav_bytes(np.zeros(44100,
                                                          np.float32)))
  os.mkfifo(audio / "f_pipe.wav")
  return audio


def test_score_audio_dir_accounts_for_every_file(demo, tmp_path):
  audio = _folder(tmp_path, demo[3])
  output = tmp_path / "out" / "sub.csv"
  frames = tmp_path / "out" / "frames.csv"
  job = score.ScoreJob(model_dirs=demo[2], audio_dir=str(audio),
                       output=str(output), probs_out=str(tmp_path / "p.csv"),
                       num_workers=1, progress=False,
                       frames_out=str(frames))
  result = score.score(job)
  errors = list(csv.DictReader(open(job.errors_csv, encoding="utf-8")))
  by_name = {r["fname"]: r["status"] for r in errors}
  assert by_name == {"c_broken.wav": "unusable", "d_empty.wav": "unusable",
                     "e_silent.wav": "silent", "f_pipe.wav": "unusable"}
  assert all(r["reason"] for r in errors)
  rows = {r["fname"]: r["label"] for r in csv.DictReader(open(
      output, encoding="utf-8"))}
  assert rows["'=1+1.wav"] and rows["b_good.wav"] and rows["e_silent.wav"]
  for name in ("c_broken.wav", "d_empty.wav", "f_pipe.wav"):
    assert rows[name] == ""
  assert result["unscored"] == 3
  # frames: names escaped as in the other CSVs, skipped files said.
  written = api.frames_of_files(demo[2], str(audio), str(frames),
                                progress=False)
  names = {r["fname"] for r in csv.DictReader(open(frames,
                                                   encoding="utf-8"))}
  assert "'=1+1.wav" in names and "=1+1.wav" not in names
  skipped = sorted(os.path.basename(p) for p, _ in written["skipped"])
  assert skipped == ["c_broken.wav", "d_empty.wav", "f_pipe.wav"]


def test_score_of_a_folder_with_nothing_usable_fails(demo, tmp_path):
  audio = tmp_path / "audio"
  audio.mkdir()
  (audio / "a.wav").write_bytes(b"not audio at all")
  (audio / "b.wav").write_bytes(b"")
  job = score.ScoreJob(model_dirs=demo[2], audio_dir=str(audio),
                       output=str(tmp_path / "sub.csv"), num_workers=1,
                       progress=False)
  with pytest.raises(scorer.ScoreError, match="none of the 2 file"):
    score.score(job)
  assert len(list(csv.DictReader(open(job.errors_csv)))) == 2


def test_score_flags_refused_before_any_scoring(demo, tmp_path):
  audio = str(tmp_path)
  base = dict(model_dirs=demo[2], output=str(tmp_path / "s.csv"))
  folder = tmp_path / "folder"
  folder.mkdir()
  cases = [(dict(data_dir=demo[1], frames_out="f.csv"), "needs --audio_dir"),
           (dict(audio_dir=audio, frames_out=str(tmp_path / "f.csv"),
                 hop_seconds=0.0), "--hop_seconds"),
           (dict(audio_dir=audio, frames_out=str(tmp_path / "f.csv"),
                 hop_seconds=float("nan")), "--hop_seconds"),
           (dict(audio_dir=audio, frames_png_dir="p"), "needs --frames_out"),
           (dict(audio_dir=audio, output=str(folder)), "is a folder"),
           (dict(audio_dir=audio, batch_size=0), "--batch_size"),
           (dict(audio_dir=audio, tries=0), "--tries")]
  for kwargs, match in cases:
    job = score.ScoreJob(**{**base, **kwargs})
    with pytest.raises(scorer.ScoreError, match=match):
      job.check()


def test_input_settings_are_checked_where_they_live():
  for key, value in (("batch_size", 0), ("batch_size", -4),
                     ("shuffle_buffer", 0), ("eval_lengths", (0, 32)),
                     ("length_range", (64, 32))):
    with pytest.raises(settings.SettingsError, match=f"input.{key}"):
      dataclasses.replace(settings.InputConfig(), **{key: value})
