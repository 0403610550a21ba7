"""make_tfrecords on tiny real datasets: outputs, bad input, resume."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import tone, wav_bytes
from tagger import parallel
from tagger.audio.params import FeatureParams
from tagger.shards import records
from tagger.shards import output_folder
from tagger.shards import sharding

LABELS = {"low": 220.0, "mid": 880.0, "high": 3520.0}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def good_clips(per_class=6):
  clips = []
  for label, freq in LABELS.items():
    for i in range(per_class):
      seconds = 0.4 + 0.15 * i
      clips.append((f"{label}{i}.wav", label,
                    wav_bytes(tone(seconds, freq * (1 + 0.01 * i), seed=i))))
  return clips


def bad_clips():
  truncated = wav_bytes(tone(1.0))
  return [
      ("missing.wav", "low", None),
      ("garbage.wav", "mid", b"this is not audio" * 50),
      ("nothing.wav", "low", wav_bytes(np.zeros(0, np.float32))),
      ("silent.wav", "high", wav_bytes(np.zeros(22050, np.float32))),
      ("truncated.wav", "mid", truncated[:len(truncated) // 2]),
      ("low0.wav", "low", None),  # duplicate fname
  ]


def options(tmp_path, csv_path, audio_dir, **kw):
  kw.setdefault("num_workers", 1)
  kw.setdefault("num_folds", 3)
  kw.setdefault("min_shards", 2)
  kw.setdefault("progress", False)
  kw.setdefault("chunk_size", 5)
  return sharding.Options(csv=csv_path, audio_dir=audio_dir,
                          output_dir=str(tmp_path / kw.pop("out", "train")),
                          **kw)


def read_all(output_dir, manifest):
  spec_dim = manifest.pca.dim
  files = [os.path.join(output_dir, s.file) for s in manifest.shards]
  ds = tf.data.TFRecordDataset(
      files, compression_type="GZIP" if manifest.compression == "gzip"
      else None)
  return [records.example_to_numpy(r.numpy(), spec_dim) for r in ds]


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("train")
  csv_path, audio_dir = __import__("conftest").write_dataset(
      str(tmp), good_clips() + bad_clips())
  opts = options(tmp, csv_path, audio_dir, pca_components=350)
  manifest = sharding.make_tfrecords(opts)
  return tmp, opts, manifest


def test_train_outputs(train_run):
  tmp, opts, manifest = train_run
  out = opts.output_dir
  assert manifest.num_records == 18
  assert list(manifest.labels) == ["high", "low", "mid"]
  assert manifest.per_class_counts == {"high": 6, "low": 6, "mid": 6}
  assert manifest.per_fold_counts == {"0": 6, "1": 6, "2": 6}
  assert manifest.pca.dim == 18  # fewer clips than 350 components
  # One fold per train shard (min_shards=2 < 3 folds gives one each).
  assert [s.fold for s in manifest.shards] == [0, 1, 2]
  assert manifest.to_json()["record_format"] == 2
  for name in ("labels.txt", "pca.npz", "errors.csv", "manifest.json"):
    assert os.path.exists(os.path.join(out, name))
  assert not os.path.exists(os.path.join(out, output_folder.STAGING))
  examples = read_all(out, manifest)
  assert sorted(e["fname"] for e in examples) == sorted(
      c[0] for c in good_clips())
  for shard in manifest.shards:
    in_shard = read_all(out, manifest.with_shards([shard]))
    assert {e["fold"] for e in in_shard} == {shard.fold}
  for e in examples:
    assert e["label_name"] == manifest.labels[e["label"]]
    assert e["log_mel"].shape == (64, e["num_frames"]) and e["empty"] == 0
    assert e["fold"] in (0, 1, 2)
  # Folds are stratified: two clips of each class per fold.
  per = {(e["fold"], e["label"]) for e in examples}
  assert len(per) == 9
  frames = sorted(e["num_frames"] for e in examples)
  assert manifest.crop_range[0] == round(np.percentile(frames, 25))


def test_every_bad_train_clip_is_reported_with_its_reason(train_run):
  _, opts, manifest = train_run
  with open(os.path.join(opts.output_dir, "errors.csv")) as f:
    rows = {r["fname"] + r["csv_row"]: r for r in csv.DictReader(f)}
  reasons = {k: r["reason"] for k, r in rows.items()}
  assert len(rows) == 6 and manifest.num_skipped == 6
  assert all(r["action"] == "skipped" for r in rows.values())
  by_name = {k.rstrip("0123456789"): v for k, v in reasons.items()}
  assert "audio file not found" in by_name["missing.wav"]
  assert "unreadable audio" in by_name["garbage.wav"]
  assert "no audio samples" in by_name["nothing.wav"]
  assert "silent" in by_name["silent.wav"]
  assert "truncated" in by_name["truncated.wav"]
  assert "duplicate fname" in by_name["low0.wav"]
  assert all(opts.audio_dir in r or "row" in r for r in reasons.values())


def test_test_split_never_drops_a_clip(train_run, tmp_path):
  _, train_opts, train_manifest = train_run
  clips = good_clips(per_class=1) + bad_clips()[:-1]
  csv_path, audio_dir = __import__("conftest").write_dataset(
      str(tmp_path), clips, csv_name="sample_submission.csv",
      audio="audio_test", header=("fname", "label"))
  opts = options(tmp_path, csv_path, audio_dir, split="test", out="test",
                 pca_from=train_opts.output_dir)
  manifest = sharding.make_tfrecords(opts)
  examples = {e["fname"]: e for e in read_all(opts.output_dir, manifest)}
  assert sorted(examples) == sorted(c[0] for c in clips)
  for name in ("missing.wav", "garbage.wav", "nothing.wav", "silent.wav"):
    assert examples[name]["empty"] == 1
    assert examples[name]["log_mel"].shape == (64, 0)
    assert not examples[name]["pca"].any()
  assert examples["truncated.wav"]["empty"] == 0
  assert examples["low0.wav"]["label"] == -1
  assert examples["low0.wav"]["pca"].shape == (train_manifest.pca.dim,)
  assert manifest.labels == train_manifest.labels
  # Test shards keep the CSV order.
  order = [e["fname"] for e in read_all(opts.output_dir, manifest)]
  assert order == [c[0] for c in clips]


def test_same_inputs_give_the_same_shards(train_run, tmp_path):
  tmp, opts, manifest = train_run
  again = sharding.make_tfrecords(
      options(tmp_path, opts.csv, opts.audio_dir, num_workers=2,
              chunk_size=7))
  # Chunking and worker count do not change a byte.
  assert [s.sha256 for s in again.shards] == [
      s.sha256 for s in manifest.shards]


def test_gzip_shards(train_run, tmp_path):
  _, opts, _ = train_run
  manifest = sharding.make_tfrecords(
      options(tmp_path, opts.csv, opts.audio_dir, compression="gzip"))
  assert len(read_all(str(tmp_path / "train"), manifest)) == 18


def test_invalid_csv_and_unusable_data_are_errors(tmp_path):
  bad = tmp_path / "bad.csv"
  bad.write_text("name,class\na.wav,x\n")
  with pytest.raises(sharding.ShardingError, match="missing column"):
    sharding.make_tfrecords(options(tmp_path, str(bad), str(tmp_path)))
  with pytest.raises(sharding.ShardingError, match="CSV file not found"):
    sharding.make_tfrecords(options(tmp_path, str(tmp_path / "no.csv"),
                                    str(tmp_path)))
  csv_path, audio_dir = __import__("conftest").write_dataset(
      str(tmp_path), bad_clips()[:3])
  with pytest.raises(sharding.ShardingError, match="no clip"):
    sharding.make_tfrecords(options(tmp_path, csv_path, audio_dir,
                                    out="none"))
  with pytest.raises(sharding.ShardingError, match="needs --pca_from"):
    sharding.make_tfrecords(options(tmp_path, csv_path, audio_dir,
                                    split="test"))


def test_labels_file_rejects_unknown_labels(tmp_path):
  csv_path, audio_dir = __import__("conftest").write_dataset(
      str(tmp_path), good_clips(per_class=3))
  labels = tmp_path / "labels.txt"
  labels.write_text("mid\nlow\n")
  manifest = sharding.make_tfrecords(options(
      tmp_path, csv_path, audio_dir, labels_file=str(labels)))
  assert list(manifest.labels) == ["mid", "low"]
  assert manifest.num_records == 6 and manifest.num_skipped == 3


def test_refuses_to_clobber_and_resume_of_a_finished_run_is_a_no_op(
    train_run):
  _, opts, manifest = train_run
  with pytest.raises(sharding.ShardingError, match="--overwrite"):
    sharding.make_tfrecords(opts)
  import dataclasses
  again = sharding.make_tfrecords(dataclasses.replace(opts, resume=True))
  assert again == manifest


def _tool(args, **kw):
  return subprocess.Popen(
      [sys.executable, "-m", "tools.make_tfrecords", *args], cwd=REPO,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_kill_9_then_resume_gives_the_uninterrupted_result(tmp_path):
  csv_path, audio_dir = __import__("conftest").write_dataset(
      str(tmp_path), good_clips(per_class=8))
  common = [f"--csv={csv_path}", f"--audio_dir={audio_dir}", "--num_folds=3",
            "--num_workers=1", "--chunk_size=2", "--min_shards=3",
            "--noprogress"]
  clean = _tool(common + [f"--output_dir={tmp_path}/clean"])
  assert clean.wait(timeout=300) == 0, clean.stderr.read()

  out = tmp_path / "killed"
  proc = _tool(common + [f"--output_dir={out}"])
  staging = out / output_folder.STAGING
  deadline = time.time() + 240
  while time.time() < deadline:
    if staging.exists() and len(list(staging.glob("chunk-*.npz"))) >= 3:
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (out / "manifest.json").exists()
  staged = len(list(staging.glob("chunk-*.npz")))
  assert 3 <= staged < 12
  # Without --resume the tool refuses and says how to go on.
  refused = _tool(common + [f"--output_dir={out}"])
  assert refused.wait(timeout=120) != 0
  assert "--resume" in refused.stderr.read()
  resumed = _tool(common + [f"--output_dir={out}", "--resume"])
  assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
  a = json.loads((tmp_path / "clean" / "manifest.json").read_text())
  b = json.loads((out / "manifest.json").read_text())
  assert [s["sha256"] for s in a["shards"]] == [
      s["sha256"] for s in b["shards"]]


def test_tool_rejects_stray_arguments_and_bad_csv(tmp_path):
  bad = tmp_path / "bad.csv"
  bad.write_text("name\nx\n")
  proc = _tool([f"--csv={bad}", f"--audio_dir={tmp_path}",
                f"--output_dir={tmp_path}/o"])
  assert proc.wait(timeout=120) != 0
  assert "missing column" in proc.stderr.read()
  proc = _tool([f"--csv={bad}", f"--audio_dir={tmp_path}",
                f"--output_dir={tmp_path}/o", "stray"])
  assert proc.wait(timeout=120) != 0


def test_worker_processes_do_not_import_tensorflow():
  from tagger.audio import extract
  results = list(parallel.ordered_parallel_map(
      extract.heavy_modules_loaded, range(4), 2, extract.init_worker,
      (FeatureParams().to_dict(),)))
  assert results == [()] * 4
