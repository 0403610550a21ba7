"""Waveform serving: in-graph features, the waveform SavedModel, frames."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tagger.audio import decode
from tagger.audio import features
from tagger.audio import graph_features
from tagger.audio.params import FeatureParams
from tagger.infer import export as export_lib
from tagger.infer import score
from tagger.infer import scorer
from tagger.infer import serving
from serving_model import demo, saved  # pylint: disable=g-bad-import-order,unused-import

PARAMS = FeatureParams()


def _waveform(path):
  with open(path, "rb") as f:
    waveform, _, _ = decode.decode_audio(f.read(), path, PARAMS)
  return waveform


def test_graph_features_equal_the_numpy_features(demo):
  """Trim bounds exactly, log-mel within 0.01 dB (measured: 0.001)."""
  worst = 0.0
  for path in demo[3]:
    waveform = _waveform(path)
    expect = decode.trim_silence(waveform, PARAMS)
    trimmed = graph_features.trim_silence(tf.constant(waveform),
                                          PARAMS).numpy()
    np.testing.assert_array_equal(trimmed, expect)
    got = graph_features.log_mel(tf.constant(expect), PARAMS).numpy()
    ref = features.waveform_to_log_mel(expect, PARAMS)
    assert got.shape == ref.shape
    worst = max(worst, float(np.abs(got - ref).max()))
  assert worst < 0.01, worst
  # Silence trims to nothing; the resampler matches soxr on odd lengths.
  assert graph_features.trim_silence(tf.zeros([5000]), PARAMS).shape == [0]
  for n in (1, 2, 3, 441, 4411):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    np.testing.assert_allclose(
        graph_features.resample(tf.constant(x), PARAMS).numpy(),
        decode.resample(x, 44100, 22050), atol=1e-5)


def test_waveform_saved_model_scores_as_tools_score(demo, saved, tmp_path):
  """Plain TensorFlow, a WAV file in, tools.score --tta=even's numbers out."""
  _, _, model_dir, wavs = demo
  path = saved
  names = [os.path.basename(p) for p in wavs]
  code = f"""
import json, sys
import tensorflow as tf
model = tf.saved_model.load({path!r})
tag = model.signatures["serving_default"]
labels = open({path!r} + "/assets/labels.txt").read().splitlines()
out = []
for path in {wavs!r}:
  waveform, rate = tf.audio.decode_wav(tf.io.read_file(path))
  assert int(rate) == 44100
  result = tag(waveform=tf.reduce_mean(waveform, axis=1))
  out.append(result["probabilities"].numpy().tolist())
print(json.dumps({{"probs": out, "labels": labels, "tagger":
  sorted(k for k in sys.modules if k.startswith("tagger"))}}))
"""
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ""}
  result = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True,
                          check=True)
  served = json.loads(result.stdout.strip().splitlines()[-1])
  assert served["tagger"] == []
  csv_path = tmp_path / "files.csv"
  csv_path.write_text("fname\n" + "\n".join(names) + "\n")
  score.score(score.ScoreJob(model_dirs=model_dir, audio_dir=os.path.dirname(wavs[0]),
              audio_csv=str(csv_path), output=str(tmp_path / "s.csv"),
              probs_out=str(tmp_path / "p.csv"), tta="even",
              num_workers=1, progress=False))
  rows = list(csv.reader(open(tmp_path / "p.csv")))
  assert rows[0][1:] == served["labels"]
  offline = np.array([[float(x) for x in r[1:]] for r in rows[1:]])
  online = np.array(served["probs"])
  # float32 in another graph; the log-mels differ by <= 0.001 dB.
  np.testing.assert_allclose(online, offline, atol=2e-4)
  assert (online.argmax(1) == offline.argmax(1)).all()


def test_frames_slide_a_window_over_a_recording(demo):
  _, _, model_dir, wavs = demo
  tagger = serving.WaveformTagger([scorer.load_model(model_dir)])
  waveform = np.concatenate([_waveform(p) for p in wavs[:3]])
  out = tagger.frames(tf.constant(waveform), tf.constant(0.25))
  probs = out["frame_probabilities"].numpy()
  starts = out["start_seconds"].numpy()
  frames = 1 + (waveform.size + 1) // 2 // PARAMS.mel_hop_length
  hop = round(0.25 * PARAMS.mel_frames_per_second)
  assert probs.shape == ((frames - tagger.window) // hop + 1, 41)
  np.testing.assert_allclose(np.diff(starts),
                             hop / PARAMS.mel_frames_per_second, rtol=1e-5)
  np.testing.assert_allclose(probs.sum(1), 1, atol=1e-4)
  # A recording shorter than a window gets one padded window.
  short = tagger.frames(tf.constant(waveform[:2000]), tf.constant(0.5))
  assert short["frame_probabilities"].shape == (1, 41)
  # Silence: the clip signature ranks by the class frequencies.
  empty = tagger.clip(tf.zeros([3000]))
  assert bool(empty["empty"])
  with pytest.raises(serving.ServingError, match="stage-2"):
    serving.check_models([scorer.LoadedModel(
        "x", scorer.load_model(model_dir).data.__class__(
            **{**scorer.load_model(model_dir).data.to_json(), "stage": 2}),
        None)])


def test_api_streams_frames_as_the_saved_model_scores_them(demo, saved,
                                                           tmp_path):
  """tagger.api reads a long file in small chunks; its frames equal the
  SavedModel's frames on the whole waveform, and its clips the clip
  signature's."""
  import soundfile as sf  # pylint: disable=g-import-not-at-top
  from tagger import api  # pylint: disable=g-import-not-at-top
  _, _, model_dir, wavs = demo
  path = saved
  waveform = np.concatenate([_waveform(p) for p in wavs[:6]])
  long_wav = str(tmp_path / "long.wav")
  sf.write(long_wav, waveform, 44100, subtype="FLOAT")
  saved = api.Tagger.load(path, chunk_seconds=0.7)  # chunks << the file
  streamed = saved.frames(long_wav, hop_seconds=0.3)
  whole = tf.saved_model.load(path).signatures["frames"](
      waveform=tf.constant(waveform), hop_seconds=tf.constant(0.3))
  np.testing.assert_allclose(streamed.start_seconds,
                             whole["start_seconds"].numpy(), rtol=1e-6)
  np.testing.assert_allclose(streamed.probabilities,
                             whole["frame_probabilities"].numpy(), atol=1e-4)
  in_process = api.Tagger.load(model_dir)
  clip = in_process.tag(wavs[0])
  again = saved.tag(_waveform(wavs[0])[::2], sample_rate=22050)
  assert clip.top(1)[0][0] in in_process.labels
  assert clip.probabilities.shape == again.probabilities.shape == (41,)
  png = streamed.timeline_png(str(tmp_path / "t.png"))
  assert open(png, "rb").read(4) == b"\x89PNG"


def test_tflite_window_model_agrees_with_the_saved_model(demo, saved,
                                                         tmp_path):
  _, _, model_dir, wavs = demo
  path = saved
  files = export_lib.export_tflite(model_dir, str(tmp_path / "tflite"))
  log_mel = tf.saved_model.load(path).signatures["log_mel"]
  window = int(scorer.load_model(model_dir).data.eval_lengths[0])
  mels = []
  for wav in wavs:
    mel = features.waveform_to_log_mel(
        decode.trim_silence(_waveform(wav), PARAMS), PARAMS)
    mels.append(np.pad(mel, ((0, 0), (0, max(0, window - mel.shape[1]))),
                       mode="wrap")[:, :window])
  mels = np.stack(mels).astype(np.float32)
  expect = log_mel(log_mel=tf.constant(mels))["probabilities"].numpy()
  for variant, tflite in files.items():
    interpreter = tf.lite.Interpreter(model_path=tflite)
    interpreter.allocate_tensors()
    (inp,), (out,) = (interpreter.get_input_details(),
                      interpreter.get_output_details())
    assert tuple(inp["shape"]) == (1, 64, window)
    got = []
    for mel in mels:
      interpreter.set_tensor(inp["index"], mel[None])
      interpreter.invoke()
      got.append(interpreter.get_tensor(out["index"])[0])
    got = np.array(got)
    assert (got.argmax(1) == expect.argmax(1)).all(), variant
    if variant == "float32":
      np.testing.assert_allclose(got, expect, atol=1e-4)
  assert (os.path.getsize(files["dynamic_range"]) <
          os.path.getsize(files["float32"]) / 2)
