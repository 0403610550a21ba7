"""make_tfrecords on Apache Beam (DirectRunner) equals the local pool."""

import csv
import json
import os
import subprocess
import sys

import pytest

from conftest import write_dataset  # pylint: disable=g-bad-import-order
from test_sharding import bad_clips, good_clips, options  # pylint: disable=g-bad-import-order

from tagger.shards import beam_sharding
from tagger.shards import output_folder
from tagger.shards import sharding

beam = pytest.importorskip("apache_beam", reason="pip install -e '.[beam]'")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Run facts, not outputs: they differ between any two runs.
RUN_FIELDS = {"created_unix", "run_time_s", "extract_realtime_factor",
              "engine", "source"}


def same_outputs(a: str, b: str) -> None:
  """Every file of two output folders equal, the manifests but their run
  facts (and the output folder named in them)."""
  names = sorted(n for n in os.listdir(a) if not n.startswith("."))
  assert names == sorted(n for n in os.listdir(b) if not n.startswith("."))
  for name in names:
    if name == "manifest.json":
      continue
    with open(os.path.join(a, name), "rb") as x, \
        open(os.path.join(b, name), "rb") as y:
      assert x.read() == y.read(), name
  ma = json.load(open(os.path.join(a, "manifest.json")))
  mb = json.load(open(os.path.join(b, "manifest.json")))
  assert set(ma) == set(mb)
  assert {k: v for k, v in ma.items() if k not in RUN_FIELDS} == {
      k: v for k, v in mb.items() if k not in RUN_FIELDS}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("beam")
  csv_path, audio_dir = write_dataset(str(tmp), good_clips() + bad_clips())
  return tmp, csv_path, audio_dir


def test_beam_train_and_test_splits_equal_the_local_pool(dataset):
  tmp, csv_path, audio_dir = dataset
  runs = {}
  for engine, runner in (("local", ""), ("beam", "DirectRunner")):
    opts = options(tmp, csv_path, audio_dir, out=f"{engine}_train",
                   runner=runner, beam_options="--direct_num_workers=2 "
                   "--direct_running_mode=multi_processing")
    runs[engine] = beam_sharding.make_tfrecords(opts)
  assert runs["beam"].engine == "beam:DirectRunner"
  assert runs["local"].engine == "local pool"
  same_outputs(str(tmp / "local_train"), str(tmp / "beam_train"))
  # Bad clips: reported with their reasons, none lost, as locally.
  with open(tmp / "beam_train" / "errors.csv") as f:
    problems = list(csv.DictReader(f))
  assert len(problems) == 6 and runs["beam"].num_skipped == 6
  assert runs["beam"].num_records == 18

  test_csv, test_dir = write_dataset(
      str(tmp / "test_data"), good_clips(per_class=2) + bad_clips()[:-1],
      csv_name="test.csv", audio="audio_test", header=("fname", "label"))
  for engine, runner in (("local", ""), ("beam", "DirectRunner")):
    beam_sharding.make_tfrecords(options(
        tmp, test_csv, test_dir, split="test", out=f"{engine}_test",
        pca_from=str(tmp / "local_train"), runner=runner,
        beam_options="--direct_running_mode=in_memory"))
  same_outputs(str(tmp / "local_test"), str(tmp / "beam_test"))


def test_beam_rerun_keeps_finished_shards_and_refuses_a_finished_dir(
    dataset, tmp_path):
  _, csv_path, audio_dir = dataset
  opts = options(tmp_path, csv_path, audio_dir, runner="DirectRunner",
                 beam_options="--direct_running_mode=in_memory")
  manifest = beam_sharding.make_tfrecords(opts)
  with pytest.raises(sharding.ShardingError, match="--overwrite"):
    beam_sharding.make_tfrecords(opts)
  # A run killed after some shards: the manifest is missing, shards stay.
  out = opts.output_dir
  os.remove(os.path.join(out, "manifest.json"))
  first = os.path.join(out, manifest.shards[0].file)
  os.remove(os.path.join(out, manifest.shards[1].file))
  os.makedirs(os.path.join(out, output_folder.STAGING))
  before = os.stat(first).st_mtime_ns
  import dataclasses  # pylint: disable=g-import-not-at-top
  again = beam_sharding.make_tfrecords(dataclasses.replace(opts, resume=True))
  assert os.stat(first).st_mtime_ns == before  # kept, not rewritten
  assert [s.sha256 for s in again.shards] == [
      s.sha256 for s in manifest.shards]


def test_tool_runs_on_beam_and_names_a_missing_extra(dataset, tmp_path):
  _, csv_path, audio_dir = dataset
  out = str(tmp_path / "tool")
  done = subprocess.run(
      [sys.executable, "-m", "tools.make_tfrecords", f"--csv={csv_path}",
       f"--audio_dir={audio_dir}", f"--output_dir={out}", "--num_folds=3",
       "--runner=DirectRunner", "--beam_options=--direct_num_workers=2"],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "18 records" in done.stdout
  # Without Beam installed, the tool says what to install (simulated by
  # hiding the module).
  hidden = subprocess.run(
      [sys.executable, "-c",
       "import sys; sys.modules['apache_beam'] = None\n"
       "from tagger.cli import make_tfrecords; make_tfrecords.run()",
       f"--csv={csv_path}", f"--audio_dir={audio_dir}",
       f"--output_dir={tmp_path / 'none'}", "--runner=DirectRunner"],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert hidden.returncode == 1
  assert ".[beam]" in hidden.stderr
  assert not os.path.exists(tmp_path / "none" / "manifest.json")
