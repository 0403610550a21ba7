"""Untrusted input and faults: hostile CSV names, special files, quoting,
small datasets, unusable output folders, damaged shards, config typos,
dead parents, concurrent runs. Every case builds its bad input itself."""

import csv
import dataclasses
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import tone, wav_bytes, write_dataset
from tagger.audio import extract
from tagger.datasets import synthetic
from tagger.infer import outputs
from tagger.infer import scorer
from tagger.shards import clip_files
from tagger.shards import csv_rows
from tagger.shards import data_info
from tagger.shards import extraction
from tagger.shards import folds as folds_lib
from tagger.shards import manifest as manifest_lib
from tagger.shards import output_folder
from tagger.shards import records
from tagger.shards import run_options
from tagger.shards import sharding

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env():
  return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO,
          "CUDA_VISIBLE_DEVICES": ""}


def _options(tmp_path, csv_path, audio_dir, **kw):
  kw.setdefault("num_workers", 1)
  kw.setdefault("num_folds", 2)
  kw.setdefault("min_shards", 1)
  kw.setdefault("progress", False)
  return sharding.Options(csv=csv_path, audio_dir=audio_dir,
                          output_dir=str(tmp_path / kw.pop("out", "out")),
                          **kw)


def _clip(i=0, seconds=0.5):
  return wav_bytes(tone(seconds, 300.0 * (1 + i % 5), seed=i))


def _write_csv(path, rows, header=("fname", "label")):
  with open(path, "w", encoding="utf-8", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


def _errors(out_dir):
  with open(os.path.join(out_dir, output_folder.ERRORS), encoding="utf-8") as f:
    return {r["fname"]: r for r in csv.DictReader(f)}


# ---------------------------------------------------------------------------
# Names that lead out of the folder, and files that are not regular files.


def _hostile_folder(tmp_path):
  """An audio folder with good clips, and around it a secret WAV outside,
  a symlink to it, a FIFO, a socket, a directory and a dangling link."""
  root = tmp_path / "data"
  audio = root / "audio"
  audio.mkdir(parents=True)
  secret = tmp_path / "secret.wav"
  secret.write_bytes(_clip(9))
  rows = []
  for i in range(6):
    name = f"ok{i}.wav"
    (audio / name).write_bytes(_clip(i))
    rows.append((name, "a" if i % 2 else "b"))
  (audio / "link_out.wav").symlink_to(secret)
  (audio / "link_in.wav").symlink_to(audio / "ok0.wav")  # inside: fine
  (audio / "dangling.wav").symlink_to(audio / "gone.wav")
  os.mkfifo(audio / "fifo.wav")
  (audio / "subdir.wav").mkdir()
  import socket  # pylint: disable=g-import-not-at-top
  sock = socket.socket(socket.AF_UNIX)
  sock.bind(str(audio / "sock.wav"))
  hostile = [("../secret.wav", "a"), (str(secret), "a"),
             ("../../../../../../../etc/hostname", "b"),
             ("link_out.wav", "a"), ("fifo.wav", "b"), ("sock.wav", "a"),
             ("subdir.wav", "b"), ("dangling.wav", "a"),
             ("/dev/zero", "b"), ("ok1.wav/../../secret.wav", "a"),
             ("link_in.wav", "a")]
  return root, audio, rows, hostile, sock


def test_hostile_names_and_special_files_are_refused_not_read(tmp_path):
  root, audio, rows, hostile, sock = _hostile_folder(tmp_path)
  try:
    csv_path = str(root / "train.csv")
    _write_csv(csv_path, rows + hostile)
    # A subprocess with a timeout: a FIFO opened for reading would block.
    out = str(tmp_path / "out")
    result = subprocess.run(
        [sys.executable, "-m", "tools.make_tfrecords", f"--csv={csv_path}",
         f"--audio_dir={audio}", f"--output_dir={out}", "--num_folds=2",
         "--min_shards=1", "--num_workers=2", "--noprogress"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
  finally:
    sock.close()
  manifest = manifest_lib.Manifest.read(out)
  assert manifest.num_records == 7  # 6 clips + the symlink inside
  errors = _errors(out)
  expected = {
      "../secret.wav": "leads out of the audio folder",
      str(tmp_path / "secret.wav"): "absolute path",
      "../../../../../../../etc/hostname": "leads out of the audio folder",
      "link_out.wav": "outside the audio folder",
      "fifo.wav": "a FIFO", "sock.wav": "a socket",
      "subdir.wav": "a directory", "dangling.wav": "dangling symlink",
      "/dev/zero": "absolute path",
      "ok1.wav/../../secret.wav": "leads out of the audio folder",
  }
  for name, why in expected.items():
    assert name in errors, (name, sorted(errors))
    assert why in errors[name]["reason"], errors[name]
    assert errors[name]["action"] == "skipped"
  assert "link_in.wav" not in errors


def test_scoring_raw_audio_refuses_the_same_names(tmp_path):
  _, audio, _, hostile, sock = _hostile_folder(tmp_path)
  try:
    rows = [clip_files.Row(i, name, "", 1) for i, (name, _) in
            enumerate(hostile)]
    tasks = list(clip_files.clip_tasks(rows, str(audio)))
  finally:
    sock.close()
  for (name, _), task in zip(hostile, tasks):
    if name == "link_in.wav":
      assert task.data is not None
    else:
      assert task.data is None and task.read_error, name


def test_file_size_limit_is_checked_before_reading(tmp_path):
  big = tmp_path / "big.wav"
  big.write_bytes(_clip(0, seconds=2.0))
  rows = [clip_files.Row(0, "big.wav", "", 1)]
  (task,) = clip_files.clip_tasks(rows, str(tmp_path), max_file_mb=0.01)
  assert task.data is None and "above the limit" in task.read_error


# ---------------------------------------------------------------------------
# Quoting: names and labels with commas, quotes, non-ASCII; control chars.


STRANGE = [("a,b.wav", 'dog, "big"'), ('say "hi".wav', "café"),
           ("ünïcödé 音.wav", "dog, \"big\""), ("plain.wav", "café"),
           ("x1.wav", "dog, \"big\""), ("x2.wav", "café")]


def test_commas_quotes_and_non_ascii_round_trip(tmp_path):
  root = tmp_path / "data"
  audio = root / "audio"
  audio.mkdir(parents=True)
  for i, (name, _) in enumerate(STRANGE):
    (audio / name).write_bytes(_clip(i))
  bad_label = [("nl.wav", "two\nlines"), ("tab.wav", "tab\there")]
  for name, _ in bad_label:
    (audio / name).write_bytes(_clip(7))
  csv_path = str(root / "train.csv")
  _write_csv(csv_path, STRANGE + bad_label)
  manifest = sharding.make_tfrecords(_options(tmp_path, csv_path,
                                              str(audio)))
  out = str(tmp_path / "out")
  assert list(manifest.labels) == ["café", 'dog, "big"']
  lines = open(os.path.join(out, output_folder.LABELS),
               encoding="utf-8").read().splitlines()
  assert lines == list(manifest.labels)  # line i is label i
  errors = _errors(out)
  for name, _ in bad_label:
    assert "control characters" in errors[name]["reason"]
  # The submission and probabilities CSVs read back to the same values.
  names = [n for n, _ in STRANGE] + ["new\nline.wav"]
  labels = ['dog, "big"', "café", "a b"]
  log_probs = np.log(np.array([[0.5, 0.3, 0.2]] * len(names)))
  scores = scorer.Scores(names, log_probs, None,
                        np.zeros(len(names), bool), labels)
  back = list(csv.reader(io.StringIO(outputs.submission_csv(scores))))
  assert back[0] == ["fname", "label"] and len(back) == len(names) + 1
  assert [r[0] for r in back[1:]] == names
  assert back[1][1] == 'dog, "big" café a b'
  probs = list(csv.reader(io.StringIO(outputs.probabilities_csv(scores))))
  assert probs[0] == ["fname"] + labels
  assert [r[0] for r in probs[1:]] == names


# ---------------------------------------------------------------------------
# Small datasets: fewer clips per class than folds.


def test_folds_follow_what_the_classes_allow():
  labels = ["a"] * 3 + ["b"] * 3 + ["c"] * 2 + ["solo"]
  folds, plan = folds_lib.assign_folds(labels, 10, seed=1)
  assert plan.num_folds == 3 and plan.train_only == ["solo"]
  assert plan.partial == ["c"]
  assert folds[-1] == -1 and set(folds[:-1]) == {0, 1, 2}
  for label in "ab":  # each fold validates one clip of each 3-clip class
    assert sorted(folds[[i for i, l in enumerate(labels) if l == label]]
                  ) == [0, 1, 2]
  text = " ".join(plan.warnings())
  assert "lowered to 3" in text and "'solo'" in text and "'c'" in text
  # Enough clips: exactly sklearn's StratifiedKFold, no warning.
  many = [l for l in "abcd" for _ in range(10)]
  folds, plan = folds_lib.assign_folds(many, 5, seed=3)
  from sklearn.model_selection import StratifiedKFold  # pylint: disable=g-import-not-at-top
  expect = np.zeros(len(many), int)
  for k, (_, val) in enumerate(StratifiedKFold(5, shuffle=True,
                                               random_state=3).split(
                                                   np.zeros(40), many)):
    expect[val] = k
  np.testing.assert_array_equal(folds, expect)
  assert plan.warnings() == []


def test_three_clips_a_class_make_three_folds_each_training_the_lonely_class(
    tmp_path):
  clips = [(f"{l}{i}.wav", l, _clip(i + 3 * k)) for k, l in
           enumerate(["x", "y", "z"]) for i in range(3)]
  clips.append(("only.wav", "lonely", _clip(11)))
  csv_path, audio = write_dataset(str(tmp_path), clips)
  opts = _options(tmp_path, csv_path, audio, num_folds=10,
                  keep_staging=True)
  manifest = sharding.make_tfrecords(opts)
  assert manifest.folds["num_folds"] == 3
  assert manifest.folds["requested"] == 10
  assert manifest.folds["train_only_labels"] == ["lonely"]
  info = data_info.load_data_info(opts.output_dir)
  assert info.folds == (0, 1, 2)
  for fold in info.folds:  # the one-clip class trains in every fold
    assert -1 in data_info.select_folds(info, fold, "train")
  # Resuming with another fold count reuses the staged features.
  os.remove(os.path.join(opts.output_dir, records.MANIFEST))
  again = sharding.make_tfrecords(
      sharding.Options(**{**opts.__dict__, "num_folds": 2, "resume": True}))
  assert again.folds["num_folds"] == 2
  assert run_options.fingerprint(opts, b"x", "extract") == (
      run_options.fingerprint(
          sharding.Options(**{**opts.__dict__, "num_folds": 2}), b"x",
          "extract"))


# ---------------------------------------------------------------------------
# Output folders, locks, damaged shards, config typos.


def test_output_dir_that_is_a_file_or_cannot_be_made(tmp_path):
  csv_path, audio = write_dataset(str(tmp_path), [("a.wav", "a", _clip())])
  afile = tmp_path / "afile"
  afile.write_text("x")
  with pytest.raises(sharding.ShardingError, match="is a file"):
    sharding.make_tfrecords(sharding.Options(csv_path, audio, str(afile)))
  with pytest.raises(sharding.ShardingError, match="cannot be written"):
    sharding.make_tfrecords(sharding.Options(csv_path, audio,
                                             str(afile / "below")))


def test_a_live_run_holds_its_output_folder(tmp_path):
  out = tmp_path / "out"
  out.mkdir()
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from tagger.shards import "
       f"output_folder; output_folder.lock_output_dir({str(out)!r}); "
       "print('locked', flush=True);"
       " time.sleep(120)"], cwd=REPO, env=_env(), stdout=subprocess.PIPE,
      text=True)
  try:
    assert holder.stdout.readline().strip() == "locked"
    csv_path, audio = write_dataset(str(tmp_path), [("a.wav", "a", _clip())])
    with pytest.raises(sharding.ShardingError,
                       match=f"in use by a running make_tfrecords \\(pid "
                             f"{holder.pid}\\)"):
      sharding.make_tfrecords(sharding.Options(csv_path, audio, str(out)))
  finally:
    holder.kill()
    holder.wait()
  output_folder.lock_output_dir(str(out))  # free again once the holder died
  output_folder.release_output_dir(str(out))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("flip"))
  synthetic.write_synthetic_shards(path, synthetic.SyntheticSet(
      48, num_classes=3, num_folds=2, pca_dim=4, median_frames=40, seed=2))
  return path


def test_a_flipped_byte_is_named(shards, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  damaged = str(tmp_path / "damaged")
  shutil.copytree(shards, damaged)
  manifest = manifest_lib.Manifest.read(damaged)
  victim = os.path.join(damaged, manifest.shards[-1].file)
  data = bytearray(open(victim, "rb").read())
  data[len(data) // 2] ^= 0x40
  open(victim, "wb").write(bytes(data))
  data_info.load_data_info(damaged)  # same size: the cheap check passes
  with pytest.raises(data_info.InputError, match=f"{victim}: sha256 differs"):
    data_info.load_data_info(damaged, verify=True)
  # The tools check on open: training names the file, in one line.
  result = subprocess.run(
      [sys.executable, "-m", "tools.train", "--config=configs/demo.py:stage1",
       f"--data_dir={damaged}", f"--model_dir={tmp_path / 'run'}"],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith("train: ") and victim in last and "sha256" in last
  assert "Traceback" not in result.stderr
  # A reader's DataLossError (no file name) is explained with the file.
  error = RuntimeError("corrupted record at 12")
  named = data_info.explain_data_loss(damaged, manifest, error)
  assert isinstance(named, data_info.InputError) and victim in str(named)
  assert data_info.explain_data_loss(shards, manifest, error) is error
  # A manifest without checksums (hand-made, or trimmed): the records' own
  # CRCs name the file.
  manifest = manifest.with_shards(
      [dataclasses.replace(s, sha256="") for s in manifest.shards])
  named = data_info.explain_data_loss(damaged, manifest, error)
  assert isinstance(named, data_info.InputError), named
  assert str(named).startswith(f"{victim}: damaged ("), named


@pytest.mark.parametrize("flag,expect", [
    ("--config.schedule.cyclic_epoch=2", 'Did you mean "cyclic_epochs"'),
    ("--config.schedule.cyclic_epochs=abc", "invalid literal"),
])
def test_config_typos_end_in_one_line(shards, tmp_path, flag, expect):
  result = subprocess.run(
      [sys.executable, "-m", "tools.train", "--config=configs/demo.py:stage1",
       f"--data_dir={shards}", f"--model_dir={tmp_path / 'run'}", flag],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert result.returncode == 1
  lines = [l for l in result.stderr.strip().splitlines()
           if not l.startswith("20") and "TensorRT" not in l]
  assert len(lines) == 1 and expect in lines[0], result.stderr[-2000:]


# ---------------------------------------------------------------------------
# Dead parents, long clips.


def _children(pid):
  found = []
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
      except OSError:
        continue
      if int(fields[1]) == pid:
        found.append(int(entry))
  return found


def _alive(pid):
  try:
    state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
  except OSError:
    return False
  return state != "Z"


def test_workers_end_when_make_tfrecords_is_killed(tmp_path):
  clips = [(f"c{i}.wav", "ab"[i % 2], _clip(i, seconds=4.0))
           for i in range(120)]
  csv_path, audio = write_dataset(str(tmp_path), clips)
  proc = subprocess.Popen(
      [sys.executable, "-m", "tools.make_tfrecords", f"--csv={csv_path}",
       f"--audio_dir={audio}", f"--output_dir={tmp_path / 'out'}",
       "--num_workers=2", "--noprogress"], cwd=REPO, env=_env(),
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 120
  workers = []
  while time.time() < deadline and len(workers) < 2:
    # the pool's workers (spawned via a resource tracker and the workers)
    workers = [c for c in _children(proc.pid)
               if "spawn_main" in open(f"/proc/{c}/cmdline").read()]
    time.sleep(0.2)
  assert len(workers) == 2, "the pool did not start"
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  deadline = time.time() + 20
  while time.time() < deadline and any(_alive(w) for w in workers):
    time.sleep(0.2)
  assert not any(_alive(w) for w in workers)


def test_long_clips_are_cut_and_reported(params):
  import dataclasses  # pylint: disable=g-import-not-at-top
  short = dataclasses.replace(params, max_clip_seconds=1.0,
                              summary_max_seconds=0.5)
  task = extract.ClipTask(row=0, name="long.wav", data=_clip(0, seconds=3))
  result = extract.extract_clip(task, short)
  assert result.status == extract.CUT and "only the first 1 s" in \
      result.reason
  assert abs(result.duration_s - 1.0) < 0.01
  assert result.summary.shape == (1133,) and np.all(np.isfinite(
      result.summary))


def test_log_mel_in_blocks_equals_one_block(params, monkeypatch):
  from tagger.audio import features  # pylint: disable=g-import-not-at-top
  waveform = tone(3.0, 500.0)
  whole = features.waveform_to_log_mel(waveform, params)
  monkeypatch.setattr(features, "MEL_BLOCK_FRAMES", 37)
  np.testing.assert_allclose(features.waveform_to_log_mel(waveform, params),
                             whole, atol=1e-3)


def test_multi_label_folds_spread_every_label_evenly():
  """Iterative stratification: each label's clips spread over the folds."""
  rng = np.random.default_rng(0)
  names = [f"c{j}" for j in range(12)]
  label_sets = []
  for _ in range(400):
    k = rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1])
    label_sets.append(list(rng.choice(names, k, replace=False,
                                      p=np.linspace(3, 1, 12) / 24)))
  folds = folds_lib.iterative_stratification(label_sets, 5, seed=1)
  assert set(folds.tolist()) == set(range(5))
  np.testing.assert_array_equal(
      folds, folds_lib.iterative_stratification(label_sets, 5, seed=1))
  assert np.bincount(folds).max() - np.bincount(folds).min() <= 8
  for name in names:
    per_fold = np.bincount([f for f, s in zip(folds, label_sets)
                            if name in s], minlength=5)
    assert per_fold.max() - per_fold.min() <= 3, (name, per_fold)


def test_damaged_json_is_one_line_naming_the_file(tmp_path):
  """A manifest.json, data.json or state.json that is not JSON (cut short,
  overwritten) is one line naming the file, not a JSONDecodeError."""
  from tagger import fileio  # pylint: disable=g-import-not-at-top
  for content in (b'{"labels": ["a", ', b"\xff\xfe\x00garbage"):
    path = tmp_path / "data.json"
    path.write_bytes(content)
    with pytest.raises(fileio.DamagedFileError) as e:
      fileio.read_json(str(path))
    assert str(path) in str(e.value) and "not valid JSON" in str(e.value)
    assert "\n" not in str(e.value)


def test_flag_values_that_cannot_work_are_refused_at_parse_time(tmp_path):
  """--tries=0, --lengths=abc (score) and --chunk_size=0, --shard_mb=0
  (make_tfrecords): one line each, before any work (--tries=-1,
  --batch_size=0 and --min_shards=0 are the same bounds)."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  cases = [("score", "--tries=0", "tries"),
           ("score", "--lengths=abc", "--lengths"),
           ("make_tfrecords", "--chunk_size=0", "chunk_size"),
           ("make_tfrecords", "--shard_mb=0", "--shard_mb")]
  for tool, flag, named in cases:
    out = f"--{'output' if tool == 'score' else 'output_dir'}=" + str(
        tmp_path / "out")
    result = subprocess.run(
        [sys.executable, "-m", f"tools.{tool}", flag, out], cwd=repo,
        capture_output=True,
        text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode != 0, (tool, flag)
    lines = [l for l in result.stderr.strip().splitlines() if l.strip()]
    assert named in lines[-1], (tool, flag, lines[-3:])
    assert "Traceback" not in result.stderr, (tool, flag)
  assert not (tmp_path / "out").exists()


def test_damaged_or_foreign_weights_are_one_line_naming_the_file(tmp_path):
  """A truncated best.weights.h5, and weights of another label set, are a
  ModelDirError naming the file (score, export and init_from load through
  model_dir.load_weights)."""
  from tagger.model import architecture as architecture_lib  # pylint: disable=g-import-not-at-top
  from tagger.model import networks as model_lib  # pylint: disable=g-import-not-at-top
  from tagger.model import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  model = model_lib.build_model(
      architecture_lib.Architecture(3, 0, backbone="small_cnn", alpha=0.25))
  path = str(tmp_path / "best.weights.h5")
  model_dir_lib.save_weights(model, path)
  data = open(path, "rb").read()
  cut = str(tmp_path / "cut.weights.h5")
  open(cut, "wb").write(data[:len(data) // 2])
  with pytest.raises(model_dir_lib.ModelDirError,
                     match="cut.weights.h5 is not a readable weights file"):
    model_dir_lib.load_weights(model, cut)
  other = model_lib.build_model(
      architecture_lib.Architecture(5, 0, backbone="small_cnn", alpha=0.25))
  with pytest.raises(model_dir_lib.ModelDirError,
                     match="best.weights.h5 does not fit the network"):
    model_dir_lib.load_weights(other, path)


def test_resuming_on_other_shards_names_the_model_dir(tmp_path):
  """A killed run re-run with another --data_dir: one line saying the
  model dir holds a run on other data, before any weights are touched."""
  from conftest import tiny_config  # pylint: disable=g-import-not-at-top
  from tagger.datasets import synthetic  # pylint: disable=g-import-not-at-top
  from tagger.train import trainer  # pylint: disable=g-import-not-at-top
  first, second = str(tmp_path / "a"), str(tmp_path / "b")
  synthetic.write_synthetic_shards(first, synthetic.SyntheticSet(
      48, num_classes=3, num_folds=2, pca_dim=4, median_frames=40))
  synthetic.write_synthetic_shards(second, synthetic.SyntheticSet(
      48, num_classes=4, num_folds=2, pca_dim=4, median_frames=40))
  config = tiny_config(**{"model.backbone": "small_cnn", "model.alpha": 0.25,
                          "max_steps_per_epoch": 1})
  model_dir = str(tmp_path / "m")
  strategy = trainer.setup(config)
  trainer.train(config, first, model_dir, strategy)
  state = os.path.join(model_dir, "state.json")   # as if killed
  value = json.load(open(state))
  value["done"] = False
  open(state, "w").write(json.dumps(value))
  with pytest.raises(trainer.TrainError, match="holds a run on other data "
                     r"\(labels differ"):
    trainer.train(config, second, model_dir, strategy)


def _limited(max_bytes: int):
  """preexec_fn: files of the child (and what it starts) stop at
  max_bytes, as on a full disk; writes then fail with EFBIG (SIGXFSZ
  ignored) instead of killing the process."""
  def apply():
    import resource  # pylint: disable=g-import-not-at-top
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  return apply


def test_a_full_disk_is_one_line_and_the_same_command_finishes(tmp_path):
  """make_tfrecords where files cannot grow past 8 KB: one line saying the
  disk is full, no traceback, no temporary file outside the staging
  folder; the same command with --resume and room finishes."""
  clips = [(f"c{i}.wav", "ab"[i % 2], wav_bytes(tone(1.0, 300 + 50 * i,
                                                      seed=i)))
           for i in range(6)]
  csv_path, audio_dir = write_dataset(str(tmp_path), clips)
  out = str(tmp_path / "shards")
  command = [sys.executable, "-m", "tools.make_tfrecords", f"--csv={csv_path}",
             f"--audio_dir={audio_dir}", f"--output_dir={out}",
             "--num_workers=1", "--num_folds=2", "--progress=false"]
  full = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                        preexec_fn=_limited(8192), timeout=300)
  assert full.returncode == 1, full.stderr[-2000:]
  assert "Traceback" not in full.stderr, full.stderr[-3000:]
  last = full.stderr.strip().splitlines()[-1]
  assert last.startswith("make_tfrecords:") and "disk is full" in last, last
  left = [n for n in os.listdir(out) if ".tmp-" in n]
  assert not left, left
  again = subprocess.run(command + ["--resume"], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-2000:]
  assert manifest_lib.Manifest.read(out).num_records == 6


def test_resume_with_other_write_options_on_a_finished_folder(tmp_path):
  """--resume on a finished folder with another --num_folds is one line,
  not the old folds kept without a word."""
  clips = [(f"c{i}.wav", "ab"[i % 2], wav_bytes(tone(0.5, 300 + 50 * i,
                                                      seed=i)))
           for i in range(8)]
  csv_path, audio_dir = write_dataset(str(tmp_path), clips)
  options = sharding.Options(csv=csv_path, audio_dir=audio_dir,
                             output_dir=str(tmp_path / "s"), num_folds=2,
                             num_workers=1, progress=False)
  sharding.make_tfrecords(options)
  same = sharding.make_tfrecords(dataclasses.replace(options, resume=True))
  assert same.write_options["num_folds"] == 2
  with pytest.raises(sharding.ShardingError,
                     match=r"--num_folds=2 \(asked: 4\); pass --overwrite"):
    sharding.make_tfrecords(dataclasses.replace(options, resume=True,
                                                num_folds=4))


def test_missing_files_stage_next_to_nothing(tmp_path):
  """A CSV of 400 files that are not there: each is reported, and the
  staged chunks hold no summary features for them (4.5 KB a row before:
  a 200,000-row CSV left 928 MB of staging behind)."""
  audio = tmp_path / "audio"
  audio.mkdir()
  csv_path = tmp_path / "train.csv"
  csv_path.write_text("fname,label\n" + "".join(
      f"missing{i:04d}.wav,{'ab'[i % 2]}\n" for i in range(400)))
  out = tmp_path / "out"
  with pytest.raises(sharding.ShardingError, match="no clip of"):
    sharding.make_tfrecords(sharding.Options(
        csv=str(csv_path), audio_dir=str(audio), output_dir=str(out),
        num_workers=2, progress=False, num_folds=2))
  staged = [p for p in (out / output_folder.STAGING).iterdir()
            if p.name.startswith("chunk-")]
  assert len(staged) == 7
  assert sum(p.stat().st_size for p in staged) < 400 * 1024
  assert len(_errors(str(out))) == 400
  # As a test split (written flagged), the run holds summary features for
  # the clips with audio only: none here (4.5 KB a row before, 7.7 GB of
  # memory at 200,000 rows).
  rows, _ = csv_rows.read_inputs(run_options.inputs(sharding.Options(
      csv=str(csv_path), audio_dir=str(audio), output_dir=str(out),
      split="test")), "test")
  metas = [extraction.ClipMeta(r.index, extract.FAILED, "missing", 0, None,
                               0.0) for r in rows]
  staged, problems = extraction.decide_clips(metas, rows, "test")
  assert len(staged.rows) == len(problems) == 400
  assert staged.summary.shape == (0, extract.SUMMARY_FEATURE_COUNT)


TINY_CONFIG = """
from tagger import settings
def get_config():
  config = settings.default_config()
  config.input.batch_size = 8
  config.input.length_range = (32, 48)
  config.input.length_quantum = 16
  config.input.eval_lengths = (32,)
  config.model.backbone = "small_cnn"
  config.model.alpha = 0.25
  config.schedule.cyclic_epochs = 1
  config.schedule.fine_tune_max_epochs = 0
  config.max_steps_per_epoch = 2
  config.tensorboard_images = 0
  return config
"""


def test_a_full_disk_while_training_or_scoring_is_one_line(shards, tmp_path):
  """tools.train and tools.score where files cannot grow past a few KB:
  one line saying the disk is full, no traceback of tagger's or Keras',
  no temporary file left (a re-run with room finishes: the make_tfrecords
  test above)."""
  from tagger.model import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  from tagger.model import architecture as architecture_lib  # pylint: disable=g-import-not-at-top
  from tagger.model import networks as model_lib  # pylint: disable=g-import-not-at-top
  config = tmp_path / "tiny.py"
  config.write_text(TINY_CONFIG)
  run, scored = str(tmp_path / "run"), str(tmp_path / "scored")
  info = data_info.load_data_info(shards)
  arch = architecture_lib.Architecture(info.num_classes, 0, info.num_mels,
                                       backbone="small_cnn", alpha=0.25)
  os.makedirs(scored)   # an untrained model dir to score with
  model_dir_lib.save_weights(model_lib.build_model(arch),
                             os.path.join(scored, model_dir_lib.BEST))
  model_dir_lib.write_data(scored, model_dir_lib.data_description(
      info, 1, [32], arch=arch))
  train = [sys.executable, "-m", "tools.train", f"--config={config}",
           f"--data_dir={shards}", f"--model_dir={run}"]
  score = [sys.executable, "-m", "tools.score", f"--model_dirs={scored}",
           f"--data_dir={shards}", f"--output={tmp_path / 'out' / 's.csv'}",
           "--tries=1", "--lengths=32", "--noprogress"]
  for command, limit, tool in ((train, 4096, "train"), (score, 64, "score")):
    done = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=300, preexec_fn=_limited(limit))
    assert done.returncode == 1, done.stderr[-3000:]
    # No traceback of tagger's (or Keras'): h5py prints the failures of
    # freeing its objects after Keras' failed save itself (Cython writes
    # them straight to stderr), before the tool's one line.
    assert not re.search(r'File ".*(tagger|keras)/', done.stderr), \
        done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{tool}:") and "disk is full" in last, last
    for folder in (run, str(tmp_path / "out")):
      left = [n for _, _, names in os.walk(folder) for n in names
              if ".tmp-" in n] if os.path.isdir(folder) else []
      assert not left, left
