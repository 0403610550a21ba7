"""s3:// paths end to end, against a local S3-compatible server (moto's
server mode, started on loopback by the test): shards written to S3, a
model trained from them into S3, test shards scored from S3 into S3."""

import csv
import io
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import tone, wav_bytes, write_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUCKET = "tagger-test"

TINY = """
from tagger import settings
def get_config():
  config = settings.default_config()
  config.input.batch_size = 8
  config.input.length_range = (32, 48)
  config.input.length_quantum = 16
  config.input.eval_lengths = (32,)
  config.input.pairing_block = 16
  config.input.shuffle_buffer = 16
  config.model.bn_momentum = 0.5
  config.schedule.cyclic_epochs = 1
  config.schedule.fine_tune_max_epochs = 1
  config.tensorboard_images = 1
  config.eval_batch_size = 16
  config.model.backbone = "small_cnn"
  config.model.alpha = 0.25
  return config
"""


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env():
  pytest.importorskip("moto")  # in the [test] extra; CI installs it
  import boto3  # pylint: disable=g-import-not-at-top
  port = _free_port()
  server = subprocess.Popen(
      [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
       str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  endpoint = f"http://127.0.0.1:{port}"
  env = {**os.environ, "AWS_ACCESS_KEY_ID": "test",
         "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
         "S3_ENDPOINT": endpoint, "S3_USE_HTTPS": "0", "S3_VERIFY_SSL": "0",
         "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO,
         "CUDA_VISIBLE_DEVICES": ""}
  client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test",
                        aws_secret_access_key="test")
  deadline = time.time() + 60
  while True:
    try:
      client.create_bucket(Bucket=BUCKET)
      break
    except Exception:  # pylint: disable=broad-except
      if time.time() > deadline or server.poll() is not None:
        raise
      time.sleep(0.3)
  yield env, client
  server.kill()
  server.wait()


def _run(env, *args):
  result = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


def test_shard_train_and_score_on_s3(s3_env, tmp_path):
  env, client = s3_env
  labels = {"low": 220.0, "mid": 880.0, "high": 3520.0, "top": 7000.0}
  clips = [(f"{name}{i}.wav", name,
            wav_bytes(tone(0.5 + 0.05 * i, f * (1 + 0.01 * i), seed=i)))
           for name, f in labels.items() for i in range(8)]
  csv_path, audio = write_dataset(str(tmp_path), clips)
  s3 = f"s3://{BUCKET}"
  _run(env, "tools.make_tfrecords", f"--csv={csv_path}",
       f"--audio_dir={audio}", f"--output_dir={s3}/train", "--num_folds=2",
       "--min_shards=2", "--num_workers=1", "--noprogress")
  _run(env, "tools.make_tfrecords", f"--csv={csv_path}",
       f"--audio_dir={audio}", f"--output_dir={s3}/test", "--split=test",
       f"--pca_from={s3}/train", "--num_workers=1", "--noprogress")
  keys = {o["Key"] for o in client.list_objects_v2(
      Bucket=BUCKET)["Contents"]}
  assert {"train/manifest.json", "test/manifest.json",
          "train/pca.npz"} <= keys
  config = tmp_path / "tiny.py"
  config.write_text(TINY)
  _run(env, "tools.train", f"--config={config}", f"--data_dir={s3}/train",
       f"--model_dir={s3}/run")
  keys = {o["Key"] for o in client.list_objects_v2(
      Bucket=BUCKET, Prefix="run/")["Contents"]}
  assert {"run/best.weights.h5", "run/summary.json", "run/data.json"} <= keys
  _run(env, "tools.score", f"--data_dir={s3}/test", f"--model_dirs={s3}/run",
       f"--output={s3}/submission.csv", "--tries=1", "--noprogress")
  body = client.get_object(Bucket=BUCKET,
                           Key="submission.csv")["Body"].read().decode()
  rows = list(csv.reader(io.StringIO(body)))
  assert rows[0] == ["fname", "label"] and len(rows) == 1 + len(clips)


def test_beam_writes_shards_to_s3_equal_to_the_local_pool(s3_env, tmp_path):
  """make_tfrecords --runner=DirectRunner with the output in S3: the Beam
  workers (processes of their own) write through tensorflow-io's S3 file
  system, and the shards equal a local-pool run's."""
  pytest.importorskip("apache_beam")
  env, client = s3_env
  clips = [(f"{name}{i}.wav", name, wav_bytes(tone(0.5, f, seed=i)))
           for name, f in (("low", 220.0), ("high", 3520.0))
           for i in range(4)]
  csv_path, audio = write_dataset(str(tmp_path), clips)
  common = ("tools.make_tfrecords", f"--csv={csv_path}",
            f"--audio_dir={audio}", "--num_folds=2", "--noprogress")
  _run(env, *common, f"--output_dir={tmp_path}/local")
  s3 = f"s3://{BUCKET}/beam"
  _run(env, *common, f"--output_dir={s3}", "--runner=DirectRunner",
       "--beam_options=--direct_num_workers=2")
  import json  # pylint: disable=g-import-not-at-top
  local = json.load(open(tmp_path / "local" / "manifest.json"))
  beam = json.loads(client.get_object(
      Bucket=BUCKET, Key="beam/manifest.json")["Body"].read())
  assert beam["engine"] == "beam:DirectRunner"
  assert [(s["file"], s["sha256"]) for s in beam["shards"]] == [
      (s["file"], s["sha256"]) for s in local["shards"]]
  for shard in beam["shards"]:  # the bytes in S3 are the ones hashed
    body = client.get_object(Bucket=BUCKET,
                             Key=f"beam/{shard['file']}")["Body"].read()
    assert len(body) == shard["bytes"]
