"""The audio-pretrained CNN9 without PyTorch: the checkpoint reader on a
checkpoint made here in PyTorch's zip format, the Keras network against a
numpy version of PyTorch's arithmetic, the aisfx feature set and the
front-end layer against aisfx's own front-end, and the backbone training
in the pipeline. No aisfx wheel or PyTorch is needed."""

import collections
import io
import os
import pickle
import sys
import types
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from tagger.audio import features
from tagger.audio import graph_features
from tagger.audio import params as params_lib
from tagger.datasets import synthetic
from tagger.model import architecture as architecture_lib
from tagger.model import networks as model_lib
from tagger.model import aisfx_checkpoint
from tagger.model import pretrained
from tagger.train import trainer
from conftest import tiny_config  # pylint: disable=g-bad-import-order


# ---------------------------------------------------------------------------
# A checkpoint in torch.save's format, written without PyTorch: pickled
# globals resolve to stand-ins registered under torch's module names while
# the pickle is written.


class _Tensor:
  def __init__(self, key, array):
    self.key, self.array = key, array


def _save_torch_zip(path, state, extra=None, transposed=()):
  """torch.save((state, extra)) as PyTorch >= 1.6 writes it."""
  fake_torch = types.ModuleType("torch")
  fake_utils = types.ModuleType("torch._utils")

  class FloatStorage:
    pass

  def _rebuild_tensor_v2(*args):
    return args

  FloatStorage.__module__, FloatStorage.__qualname__ = "torch", "FloatStorage"
  _rebuild_tensor_v2.__module__ = "torch._utils"
  _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
  fake_torch.FloatStorage = FloatStorage
  fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
  saved = {n: sys.modules.get(n) for n in ("torch", "torch._utils")}
  sys.modules["torch"], sys.modules["torch._utils"] = fake_torch, fake_utils
  storages = {}

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      if isinstance(obj, _Tensor):
        return ("storage", FloatStorage, obj.key, "cpu", obj.array.size)
      return None

    def reducer_override(self, obj):
      if not isinstance(obj, np.ndarray):
        return NotImplemented
      key = str(len(storages))
      if key in transposed:   # stored as the transpose: a strided view
        data = np.ascontiguousarray(obj.T)
        stride = (1, obj.shape[0])
      else:
        data = np.ascontiguousarray(obj)
        stride = tuple(s // obj.itemsize for s in data.strides)
      storages[key] = data.astype("<f4")
      return _rebuild_tensor_v2, (_Tensor(key, storages[key]), 0,
                                  obj.shape, stride, False,
                                  collections.OrderedDict())

  try:
    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump((collections.OrderedDict(state),
                                      extra or {}))
  finally:
    for name, module in saved.items():
      if module is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = module
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", buffer.getvalue())
    z.writestr("archive/version", "3\n")
    for key, data in storages.items():
      z.writestr(f"archive/data/{key}", data.tobytes())


def _cnn9_state(rng):
  """Random arrays of every CNN9 parameter, by PyTorch name."""
  state, channels = {}, 1
  for block, width in enumerate(pretrained.WIDTHS, start=1):
    for conv in (1, 2):
      name = f"embedding_net.conv_block{block}"
      state[f"{name}.conv{conv}.weight"] = rng.normal(
          0, np.sqrt(2 / (9 * channels)), (width, channels, 3, 3)).astype(
              np.float32)
      state[f"{name}.bn{conv}.weight"] = rng.uniform(0.5, 1.5, width)
      state[f"{name}.bn{conv}.bias"] = rng.normal(0, 0.1, width)
      state[f"{name}.bn{conv}.running_mean"] = rng.normal(0, 0.1, width)
      state[f"{name}.bn{conv}.running_var"] = rng.uniform(0.5, 2.0, width)
      channels = width
  state["fc.0.0.weight"] = rng.normal(size=(4, 2)).astype(np.float32)
  return {k: np.asarray(v, np.float32) for k, v in state.items()}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("cnn9") / "checkpoint.pth")
  state = _cnn9_state(np.random.default_rng(0))
  _save_torch_zip(path, state, {"prosfx": (0, 78)})
  return path, state


def test_reader_rebuilds_every_tensor_and_the_extra_dict(tmp_path):
  state = {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
           "b": np.arange(12, dtype=np.float32).reshape(3, 4)}
  path = str(tmp_path / "x.pth")
  _save_torch_zip(path, state, {"set": (1, 5)}, transposed=("1",))
  loaded, extra = aisfx_checkpoint.read_torch_checkpoint(path)
  assert list(loaded) == ["a", "b"] and extra == {"set": (1, 5)}
  for name, array in state.items():
    np.testing.assert_array_equal(loaded[name], array)   # strided 'b' too


def test_reader_reads_the_checkpoint_inside_a_wheel(checkpoint, tmp_path):
  path, state = checkpoint
  wheel = str(tmp_path / "aisfx-0.1.2-py2.py3-none-any.whl")
  with zipfile.ZipFile(wheel, "w") as z:
    z.write(path, aisfx_checkpoint.CHECKPOINT_IN_WHEEL)
    z.writestr("aisfx/__init__.py", "")
  got = aisfx_checkpoint.cnn9_state(wheel)
  assert len(got) == 8 * 5
  np.testing.assert_array_equal(
      got["conv_block2.conv1.weight"],
      state["embedding_net.conv_block2.conv1.weight"])


def test_reader_runs_no_code_from_the_file(tmp_path):
  class Evil:
    def __reduce__(self):
      return (os.system, ("echo pwned",))
  path = str(tmp_path / "evil.pth")
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("archive/data.pkl", pickle.dumps(Evil(), protocol=2))
  with pytest.raises(aisfx_checkpoint.PretrainedError,
                     match=r"evil\.pth: refers "
                     r"to (posix|os)\.system"):
    aisfx_checkpoint.read_torch_checkpoint(path)


@pytest.mark.parametrize("content,reason", [
    (None, "no such file"), (b"not a zip", "not a zip file"),
    (b"zip-without-pickle", "no data.pkl"), ("fifo", "a FIFO"),
    ("folder", "a directory")])
def test_bad_weights_are_one_line_with_how_to_get_them(tmp_path, content,
                                                       reason):
  path = str(tmp_path / "weights.pth")
  if content == "fifo":     # would block a plain read
    os.mkfifo(path)
  elif content == "folder":
    os.mkdir(path)
  elif content == b"zip-without-pickle":
    with zipfile.ZipFile(path, "w") as z:
      z.writestr("other.txt", "x")
  elif content is not None:
    with open(path, "wb") as f:
      f.write(content)
  with pytest.raises(aisfx_checkpoint.PretrainedError) as error:
    aisfx_checkpoint.cnn9_state(path)
  message = str(error.value)
  assert path in message and reason in message and "\n" not in message
  assert "pip download aisfx==0.1.2 --no-deps" in message


# ---------------------------------------------------------------------------
# The network: Keras against PyTorch's arithmetic written in numpy.


def _torch_like_embedding(state, x):
  """EmbeddingNet.forward in numpy (NCHW, OIHW kernels): x [T, 96]."""
  h = x[None]                                          # [C=1, T, F]
  for block in range(1, 5):
    for conv in (1, 2):
      name = f"embedding_net.conv_block{block}"
      w = state[f"{name}.conv{conv}.weight"]           # [O, I, 3, 3]
      padded = np.pad(h, ((0, 0), (1, 1), (1, 1)))
      windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3),
                                                         axis=(1, 2))
      h = np.einsum("ithwk,oiwk->oth", windows.transpose(0, 1, 2, 3, 4), w)
      bn = f"{name}.bn{conv}"
      h = (h - state[f"{bn}.running_mean"][:, None, None]) / np.sqrt(
          state[f"{bn}.running_var"][:, None, None] + 1e-5)
      h = h * state[f"{bn}.weight"][:, None, None] + state[
          f"{bn}.bias"][:, None, None]
      h = np.maximum(h, 0)
    if block < 4:
      c, t, f = h.shape
      h = h[:, :t // 2 * 2, :f // 2 * 2].reshape(c, t // 2, 2, f // 2,
                                                  2).max(axis=(2, 4))
  return h.mean(axis=2).max(axis=1)                    # [512]


def test_keras_cnn9_computes_what_pytorch_would(checkpoint):
  path, state = checkpoint
  model = pretrained.embedding_model(path)
  x = np.random.default_rng(1).uniform(0, 1, (2, 16, 96)).astype(np.float32)
  got = model.predict_on_batch(x)
  assert got.shape == (2, 512)
  for i in range(2):
    np.testing.assert_allclose(got[i], _torch_like_embedding(state, x[i]),
                               rtol=2e-4, atol=2e-4)


def test_clip_embeddings_are_mean_and_max_over_blocks(checkpoint):
  path, _ = checkpoint
  model = pretrained.embedding_model(path)
  rng = np.random.default_rng(2)
  long_clip = rng.normal(0, 0.1, pretrained.RATE * 5).astype(np.float32)
  out = pretrained.clip_embeddings([long_clip, np.zeros(10, np.float32)],
                                   model)
  assert out.shape == (2, pretrained.EMBEDDING_DIM)
  blocks = pretrained.blocks(pretrained.aisfx_log_mel(long_clip))
  assert blocks.shape[0] >= 3    # 5 s: 216 frames -> blocks at 0, 50, 100
  each = model.predict_on_batch(blocks)
  np.testing.assert_allclose(out[0], np.concatenate([each.mean(0),
                                                     each.max(0)]),
                             rtol=1e-5, atol=1e-5)
  assert np.all(np.isfinite(out[1]))   # a near-empty clip: one padded block


def _front_end_input(waveform):
  """The aisfx feature set's log-mel of a waveform, normalised as batches
  normalise it, through AisfxFrontEnd: [T, 96]."""
  aisfx = params_lib.preset("aisfx")
  db = features.waveform_to_log_mel(waveform, aisfx)          # [96, T]
  image = features.normalize(db, aisfx.norm_min_db, aisfx.norm_max_db)
  layer = pretrained.AisfxFrontEnd(aisfx.norm_min_db, aisfx.norm_max_db)
  return layer(image[None, :, :, None].astype(np.float32))[0, :, :, 0]


def test_the_aisfx_feature_set_is_aisfxs_own_front_end():
  """Shards made with --features=aisfx, through the backbone's first
  layer, are what aisfx's librosa front-end gives CNN9; and a recording
  20 dB quieter is the same input (aisfx peak-normalises its audio)."""
  rng = np.random.default_rng(4)
  t = np.arange(pretrained.RATE * 2) / pretrained.RATE
  wave = (0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-t) +
          rng.normal(0, 0.02, t.size)).astype(np.float32)
  got = _front_end_input(wave).numpy()
  want = pretrained.aisfx_log_mel(wave)                       # [T, 96]
  assert got.shape == want.shape
  # The 120 dB span floors what aisfx's log map already takes to ~0.
  np.testing.assert_allclose(got, want, atol=2e-3)
  np.testing.assert_allclose(_front_end_input(wave * 0.1), got, atol=2e-3)


def test_the_graph_front_end_agrees_on_the_aisfx_feature_set():
  """Scoring raw audio (serving, the API) computes the same features."""
  aisfx = params_lib.preset("aisfx")
  wave = np.random.default_rng(5).normal(0, 0.05, 30000).astype(np.float32)
  np.testing.assert_allclose(
      graph_features.log_mel(tf.constant(wave), aisfx).numpy(),
      features.waveform_to_log_mel(wave, aisfx), atol=0.05)


def test_the_adapter_follows_the_clip_not_its_level():
  """cnn9_aisfx on the reference's shards: a recording 20 dB louder is the
  same input to CNN9 (aisfx peak-normalises its audio); the bands above
  11 kHz are the floor."""
  layer = pretrained.AisfxAdapter(129.71, 64)
  image = tf.random.uniform([2, 64, 40, 1], 0.2, 0.6)
  louder = image + 20.0 / 129.71
  a, b = layer(image), layer(louder)
  assert a.shape == (2, 20, 96, 1)
  np.testing.assert_allclose(a, b, atol=1e-5)
  top = pretrained.band_map().sum(axis=0) == 0
  assert 10 < top.sum() < 30          # aisfx's bands above 11.025 kHz
  floor = max(0.0, pretrained.ADAPTER_OFFSET - 8 * pretrained.ADAPTER_SCALE)
  assert float(tf.reduce_max(a[:, :, -1])) <= floor / pretrained.LOG_MAX


BACKBONES = (("cnn9_aisfx", "reference", 64),
             ("cnn9_aisfx_native", "aisfx", 96))


@pytest.mark.parametrize("backbone,features,mels", BACKBONES)
def test_the_pretrained_backbone_trains_in_the_pipeline(backbone, features,
                                                        mels, checkpoint,
                                                        tmp_path):
  """cnn9_aisfx with the checkpoint's weights: the backbone starts from
  them, trains (past model.freeze_backbone_until: its first two blocks
  stay the checkpoint's), and the model dir rebuilds and scores without
  the file."""
  path, state = checkpoint
  keras.mixed_precision.set_global_policy("float32")
  data = str(tmp_path / "shards")
  synthetic.write_synthetic_shards(data, synthetic.SyntheticSet(
      48, num_classes=3, num_folds=2, pca_dim=4, median_frames=40, seed=3,
      params=params_lib.preset(features)))
  built = model_lib.build_model(
      architecture_lib.Architecture(3, 0, num_mels=mels, backbone=backbone),
      architecture_lib.TrainOptions(backbone_weights=path))
  kernel = built.get_layer(model_lib.BACKBONE).get_layer(
      "cnn9").get_layer("cnn9_b3_conv2").get_weights()[0]
  np.testing.assert_array_equal(kernel, np.transpose(
      state["embedding_net.conv_block3.conv2.weight"], (2, 3, 1, 0)))
  config = tiny_config(**{"model.backbone": backbone, "model.alpha": 1.0,
                          "model.backbone_weights": path,
                          "model.freeze_backbone_until": "cnn9_b2_bn2"})
  model_dir = str(tmp_path / "model")
  trainer.train(config, data, model_dir, trainer.setup(config))
  from tagger.model import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  _, loaded = model_dir_lib.load(model_dir)
  trained = loaded.get_layer(model_lib.BACKBONE).get_layer(
      "cnn9").get_layer("cnn9_b3_conv2").get_weights()[0]
  assert 0 < np.max(np.abs(trained - kernel)) < 0.5 * np.max(np.abs(kernel))
  for layer in ("cnn9_b1_conv1", "cnn9_b2_conv2"):
    np.testing.assert_array_equal(
        loaded.get_layer(model_lib.BACKBONE).get_layer("cnn9").get_layer(
            layer).get_weights()[0],
        built.get_layer(model_lib.BACKBONE).get_layer("cnn9").get_layer(
            layer).get_weights()[0])


def test_a_probe_trains_the_head_on_the_frozen_backbone(checkpoint,
                                                        tmp_path):
  """model.freeze_backbone: CNN9's weights and BatchNorm statistics stay
  the checkpoint's; the head learns."""
  path, state = checkpoint
  keras.mixed_precision.set_global_policy("float32")
  data = str(tmp_path / "shards")
  synthetic.write_synthetic_shards(data, synthetic.SyntheticSet(
      48, num_classes=3, num_folds=2, pca_dim=4, median_frames=40, seed=3,
      params=params_lib.preset("aisfx")))
  config = tiny_config(**{"model.backbone": "cnn9_aisfx_native",
                          "model.alpha": 1.0, "model.backbone_weights": path,
                          "model.freeze_backbone": True})
  run = trainer.FoldRun(config, data, str(tmp_path / "probe"),
                        trainer.setup(config), 0)
  head = [w.copy() for w in run.model.get_layer("fc1536").get_weights()]
  run.train()
  cnn9 = run.model.get_layer(model_lib.BACKBONE).get_layer("cnn9")
  np.testing.assert_array_equal(
      cnn9.get_layer("cnn9_b3_conv2").get_weights()[0], np.transpose(
          state["embedding_net.conv_block3.conv2.weight"], (2, 3, 1, 0)))
  np.testing.assert_array_equal(
      cnn9.get_layer("cnn9_b1_bn1").get_weights()[2],
      state["embedding_net.conv_block1.bn1.running_mean"])
  assert run.model.get_layer("fc1536").trainable
  assert any(not np.array_equal(a, b) for a, b in zip(
      head, run.model.get_layer("fc1536").get_weights()))   # it learned


def test_freeze_until_names_a_layer_of_the_backbone():
  built = model_lib.build_model(
      architecture_lib.Architecture(3, 0, num_mels=64, backbone="cnn9_aisfx"),
      architecture_lib.TrainOptions(freeze_backbone_until="cnn9_b2_bn2"))
  frozen = [l.name for l in model_lib._all_layers(built.get_layer(  # pylint: disable=protected-access
      model_lib.BACKBONE)) if not l.trainable]
  assert "aisfx_adapter" in frozen and "cnn9_b2_bn2" in frozen
  assert "cnn9_b3_conv1" not in frozen
  with pytest.raises(model_lib.ModelError, match="no such layer"):
    model_lib.build_model(
        architecture_lib.Architecture(3, 0, num_mels=64, backbone="cnn9_aisfx"),
        architecture_lib.TrainOptions(freeze_backbone_until="block_9"))


def test_the_pretrained_backbone_refuses_other_features(tmp_path):
  """CNN9 hears aisfx's front-end only: shards of the reference's are one
  line naming the flag, before any training."""
  data = str(tmp_path / "shards")
  synthetic.write_synthetic_shards(data, synthetic.SyntheticSet(
      24, num_classes=3, num_folds=2, pca_dim=4, median_frames=40))
  config = tiny_config(**{"model.backbone": "cnn9_aisfx_native",
                          "model.alpha": 1.0})
  with pytest.raises(trainer.TrainError,
                     match="make_tfrecords --features=aisfx"):
    trainer.train(config, data, str(tmp_path / "model"),
                  trainer.setup(config))


def test_the_pretrained_backbone_without_weights_is_one_line(tmp_path):
  with pytest.raises(aisfx_checkpoint.PretrainedError,
                     match="pip download aisfx==0.1.2 --no-deps"):
    model_lib.build_model(
        architecture_lib.Architecture(3, 0, num_mels=64, backbone="cnn9_aisfx"),
        architecture_lib.TrainOptions(backbone_weights=str(tmp_path / "missing.whl")))


@pytest.mark.parametrize("backbone,features,mels", BACKBONES)
def test_the_pretrained_backbone_builds_and_runs_under_mixed_float16(
    backbone, features, mels):
  """The GPU default precision: the front-end stays float32, CNN9 runs in
  float16, the probabilities come out float32 and finite."""
  keras.mixed_precision.set_global_policy("mixed_float16")
  try:
    del features
    model = model_lib.build_model(
        architecture_lib.Architecture(3, 0, num_mels=mels, backbone=backbone))
    out = model({"log_mel": tf.random.uniform([2, mels, 48, 1])})
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert out.dtype == tf.float32 and bool(tf.reduce_all(tf.math.is_finite(
      out)))
