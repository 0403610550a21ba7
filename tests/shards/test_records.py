import numpy as np
import tensorflow as tf

from tagger.shards import records


def _example(frames=7, pca_dim=5):
  log_mel = np.random.default_rng(0).uniform(-90, 30, (64, frames))
  return log_mel, records.serialize_example(
      fname="a.wav", label=3, label_name="Bark", fold=2, manually_verified=1,
      log_mel_db=log_mel, pca=np.arange(pca_dim, dtype=np.float32))


def test_round_trip_through_the_package_parser():
  log_mel, data = _example()
  parsed = records.example_to_numpy(data, pca_dim=5)
  assert parsed["fname"] == "a.wav" and parsed["label_name"] == "Bark"
  assert parsed["label"] == 3 and parsed["fold"] == 2
  assert parsed["empty"] == 0 and parsed["num_frames"] == 7
  assert parsed["log_mel"].shape == (64, 7)
  # float16 storage: within half a unit in the last place at 64 (0.03 dB).
  np.testing.assert_allclose(parsed["log_mel"], log_mel, atol=0.032)
  np.testing.assert_array_equal(parsed["pca"], np.arange(5))


def test_plain_tensorflow_reads_it_as_tfrecords_readme_says(tmp_path):
  """The snippet of tfrecords/README.md, without this package's parser."""
  log_mel, data = _example(frames=11, pca_dim=350)
  path = str(tmp_path / "x.tfrecord")
  with tf.io.TFRecordWriter(path) as w:
    w.write(data)
  spec = {
      "fname": tf.io.FixedLenFeature([], tf.string),
      "label": tf.io.FixedLenFeature([], tf.int64),
      "num_mels": tf.io.FixedLenFeature([], tf.int64),
      "num_frames": tf.io.FixedLenFeature([], tf.int64),
      "log_mel": tf.io.FixedLenFeature([], tf.string),
      "pca": tf.io.FixedLenFeature([350], tf.float32),
  }

  def parse(record):
    ex = tf.io.parse_single_example(record, spec)
    mel = tf.io.decode_raw(ex["log_mel"], tf.float16)
    mel = tf.reshape(mel, [ex["num_frames"], ex["num_mels"]])
    return ex["fname"], tf.transpose(tf.cast(mel, tf.float32)), ex["pca"]

  fname, mel, pca = next(iter(tf.data.TFRecordDataset(path).map(parse)))
  assert fname.numpy() == b"a.wav"
  np.testing.assert_allclose(mel.numpy(), log_mel, atol=0.032)
  assert pca.shape == (350,)


def test_empty_clip_has_zero_frames_and_the_flag():
  data = records.serialize_example(
      fname="e.wav", label=-1, label_name="", fold=-1, manually_verified=1,
      log_mel_db=np.zeros((64, 0)), pca=np.zeros(3))
  parsed = records.example_to_numpy(data, pca_dim=3)
  assert parsed["empty"] == 1 and parsed["log_mel"].shape == (64, 0)


def test_parse_inside_dataset_map():
  _, data = _example()
  ds = tf.data.Dataset.from_tensors(data).map(
      lambda x: records.parse_example(x, 5))
  out = next(iter(ds))
  assert out["log_mel"].dtype == tf.float32 and out["log_mel"].shape[1] == 7


def test_parse_windows_cuts_the_same_frames_as_the_full_parser():
  rng = np.random.default_rng(1)
  mels = [rng.uniform(-90, 30, (64, t)) for t in (5, 40, 17, 1)]
  data = [records.serialize_example(
      fname=f"{i}.wav", label=i, label_name="x", fold=0, manually_verified=1,
      log_mel_db=m, pca=np.full(3, i, np.float32)) for i, m in enumerate(mels)]
  # Slack (T - L) is 0, 28, 5, 0: starts floor(u * (slack + 1)).
  fraction = tf.constant([0.9, 0.999, 0.5, 0.3])
  start = [0, 28, 3, 0]
  out = records.parse_windows(tf.constant(data), 3, 64, fraction,
                              tf.constant(12))
  assert out["log_mel"].shape == (4, 12, 64)
  np.testing.assert_array_equal(out["window_frames"], [5, 12, 12, 1])
  np.testing.assert_array_equal(out["num_frames"], [5, 40, 17, 1])
  np.testing.assert_array_equal(out["label"], [0, 1, 2, 3])
  for i, m in enumerate(mels):
    full = records.example_to_numpy(data[i], 3)["log_mel"]  # [64, T]
    s, v = start[i], int(out["window_frames"][i])
    window = out["log_mel"][i].numpy().astype(np.float32)  # [12, 64]
    np.testing.assert_array_equal(window[:v], full[:, s:s + v].T)
    assert not window[v:].any()
