"""An audio-pretrained network, read without PyTorch: the CNN9 of aisfx.

The reference started MobileNetV2 from ImageNet weights, which cannot be
downloaded offline; an audio-pretrained network from an installable
package is the offline equivalent. aisfx (PyPI, 0.1.2; A. B. Ma and A.
Lerch, "Representation learning for the automatic indexing of sound
effects libraries", ISMIR 2022; weights under CC BY 4.0, the wheel's
license file) ships `aisfx/models/checkpoint.pth`: a CNN9 trained across
several sound-effects libraries. Get it without its dependencies (the
wheel pins an old librosa and numpy):

    pip download aisfx==0.1.2 --no-deps -d weights/

and pass the wheel itself (read in place) or the extracted checkpoint.pth.

The checkpoint is read without PyTorch (aisfx_checkpoint.py).

The network (aisfx.models.cnn2d.EmbeddingNet('max', 3, 1, 64)): four
blocks of [conv 3x3 (no bias) -> BatchNorm -> ReLU] x 2 with 64, 128, 256,
512 channels, max-pool 2x2 after the first three; the mean over frequency,
then the max over time: a 512-d embedding of a block of 100 frames. Its
front-end (aisfx_log_mel): peak-normalised audio at 44.1 kHz, a 2048-point
STFT every 1024 samples, 96 HTK mel bands 0-22.05 kHz of unit area, power,
log10(1 + 10^4 S), divided by 9.4578 (the paper's maximum). A clip's
embedding is the mean and max over blocks of 100 frames (2.3 s) every 50:
1,024 values.
"""

from typing import Dict, Sequence

import keras
import numpy as np

from tagger.model import aisfx_checkpoint

RATE = 44100
N_FFT = 2048
HOP = 1024
MELS = 96
LOG_MAX = 9.457798957824707   # aisfx's 'original' normalisation maximum
BLOCK_FRAMES = 100
BLOCK_HOP = 50
WIDTHS = (64, 128, 256, 512)
EMBEDDING_DIM = 2 * WIDTHS[-1]
# ---------------------------------------------------------------------------
# The network in Keras.


def cnn9(name: str = "cnn9"):
  """[B, T, 96, 1] (time, mel) -> [B, T/8, 12, 512] feature maps; layer
  names follow the checkpoint's."""
  inputs = keras.Input((None, MELS, 1))
  x = inputs
  for block, width in enumerate(WIDTHS, start=1):
    for conv in (1, 2):
      x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False,
                              name=f"cnn9_b{block}_conv{conv}")(x)
      x = keras.layers.BatchNormalization(epsilon=1e-5,
                                          name=f"cnn9_b{block}_bn{conv}")(x)
      x = keras.layers.ReLU()(x)
    if block < len(WIDTHS):
      x = keras.layers.MaxPooling2D(2)(x)
  return keras.Model(inputs, x, name=name)


def load_cnn9_weights(model, state: Dict[str, np.ndarray]) -> int:
  """Copies the checkpoint's arrays into cnn9()'s layers; returns how many
  layers were set. PyTorch conv kernels [out, in, kh, kw] become Keras'
  [kh, kw, in, out]."""
  done = 0
  for block in range(1, len(WIDTHS) + 1):
    for conv in (1, 2):
      torch_name = f"conv_block{block}"
      kernel = state[f"{torch_name}.conv{conv}.weight"]
      model.get_layer(f"cnn9_b{block}_conv{conv}").set_weights(
          [np.transpose(kernel, (2, 3, 1, 0))])
      bn = f"{torch_name}.bn{conv}"
      model.get_layer(f"cnn9_b{block}_bn{conv}").set_weights(
          [state[f"{bn}.weight"], state[f"{bn}.bias"],
           state[f"{bn}.running_mean"], state[f"{bn}.running_var"]])
      done += 2
  return done


def embedding_model(path: str):
  """[B, 100, 96] aisfx log-mel blocks -> [B, 512] embeddings (the mean
  over frequency, the max over time), the checkpoint's weights loaded."""
  features = cnn9()
  load_cnn9_weights(features, aisfx_checkpoint.cnn9_state(path))
  inputs = keras.Input((None, MELS))
  x = keras.layers.Reshape((-1, MELS, 1))(inputs)
  x = features(x)                                  # [B, T', 12, 512]
  x = keras.ops.max(keras.ops.mean(x, axis=2), axis=1)   # [B, 512]
  return keras.Model(inputs, x, name="cnn9_embedding")


# ---------------------------------------------------------------------------
# Two backbones, two ways to give CNN9 its front-end.
#
# cnn9_aisfx (cnn9_adapted): the reference's shards (64 Slaney bands to
# 11.025 kHz, an 80 ms window every 10 ms, dB), adapted inside the
# network (AisfxAdapter): dB relative to the clip's loudest bin (aisfx
# peak-normalises its audio), the 64 bands interpolated at the centres of
# aisfx's 96 HTK bands (78 lie under 11.025 kHz; the 18 above get the
# floor), log10(1 + 10^4 S) as an affine map of dB (fitted by least
# squares against aisfx's front-end on real recordings, correlation 0.93;
# trainable), relu, /9.4578, and 2x average pooling in time (50 frames/s;
# aisfx 43). One shard set serves every backbone, so tools/score ensembles
# it with MobileNetV2; fine-tuned it measured best (BUILD.md).
#
# cnn9_aisfx_native (cnn9_native): shards made with aisfx's own front-end
# (make_tfrecords --features=aisfx: params.PRESETS['aisfx'], dB relative
# to the waveform's peak, which is aisfx's peak normalisation); the first
# layer (AisfxFrontEnd) only undoes the fixed [0, 1] normalisation and
# applies aisfx's log map exactly:
#     log10(1 + 10^4 S) = softplus(ln 10 (dB / 10 + 4)) / ln 10.
# CNN9 then hears what it was trained on: its frozen embedding is 0.04
# better across sources than the adapted one's (BUILD.md), the choice for
# a probe (model.freeze_backbone). The backbone refuses other shards
# (model.Backbone.features).

FEATURES = "aisfx"   # the params.PRESETS entry cnn9_native needs

ADAPTER_SCALE = 0.9125      # log10 units per 10 dB
ADAPTER_OFFSET = 7.638      # log10(1 + 10^4 S) at the clip's peak
ADAPTER_TIME_POOL = 2
FLOOR_DB = -80.0            # the shards' top_db below the peak


def band_map(params=None) -> np.ndarray:
  """[mel_bands, 96]: linear interpolation of the shards' Slaney mel bands
  at the centre frequencies of aisfx's HTK bands (zero columns above the
  shards' top band)."""
  import librosa  # pylint: disable=g-import-not-at-top
  from tagger.audio.params import FeatureParams  # pylint: disable=g-import-not-at-top
  params = params or FeatureParams()
  source = librosa.mel_frequencies(params.mel_bands + 2,
                                   fmin=params.mel_min_hz,
                                   fmax=params.mel_max_hz)[1:-1]
  target = librosa.mel_frequencies(MELS + 2, fmin=0.0, fmax=RATE / 2,
                                   htk=True)[1:-1]
  out = np.zeros((params.mel_bands, MELS), np.float32)
  for j, f in enumerate(target):
    if f > source[-1]:
      continue
    i = int(np.searchsorted(source, f))
    if i == 0:
      out[0, j] = 1.0
      continue
    t = (f - source[i - 1]) / (source[i] - source[i - 1])
    out[i - 1, j], out[i, j] = 1.0 - t, t
  return out


@keras.saving.register_keras_serializable(package="tagger")
class AisfxAdapter(keras.layers.Layer):
  """Normalised log-mel image [B, M, T, 1] -> CNN9's input [B, T/2, 96, 1]
  (see above). db_range: the shards' normalisation span in dB."""

  def __init__(self, db_range: float, num_mels: int = 64, **kwargs):
    super().__init__(**kwargs)
    self.db_range = float(db_range)
    self.num_mels = int(num_mels)

  def build(self, input_shape):
    del input_shape
    self.bands = self.add_weight(
        name="bands", shape=(self.num_mels, MELS), trainable=False,
        initializer=keras.initializers.Constant(band_map()))
    self.scale = self.add_weight(
        name="scale", shape=(),
        initializer=keras.initializers.Constant(ADAPTER_SCALE))
    self.offset = self.add_weight(
        name="offset", shape=(),
        initializer=keras.initializers.Constant(ADAPTER_OFFSET))

  def call(self, x):
    x = keras.ops.cast(x[..., 0], "float32")                   # [B, M, T]
    rel = (x - keras.ops.max(x, axis=(1, 2), keepdims=True)) * self.db_range
    # Bands with no source (above the shards' top band) sit at the floor.
    unmapped = 1.0 - keras.ops.sum(self.bands, axis=0)       # [96]
    mel = keras.ops.einsum("bmt,mk->btk", rel, self.bands) + (
        unmapped * FLOOR_DB)                                  # [B, T, 96]
    mel = keras.ops.relu(self.scale * mel / 10.0 + self.offset) / LOG_MAX
    mel = keras.ops.average_pool(mel, ADAPTER_TIME_POOL, ADAPTER_TIME_POOL,
                                 padding="same")               # [B, T', 96]
    return keras.ops.cast(mel[..., None], self.compute_dtype)

  def get_config(self):
    return {**super().get_config(), "db_range": self.db_range,
            "num_mels": self.num_mels}


@keras.saving.register_keras_serializable(package="tagger")
class AisfxFrontEnd(keras.layers.Layer):
  """Normalised log-mel image [B, 96, T, 1] (dB relative to the peak, the
  'aisfx' feature set) -> CNN9's input [B, T, 96, 1]: aisfx's
  log10(1 + 10^4 S) / 9.4578."""

  def __init__(self, min_db: float, max_db: float, **kwargs):
    super().__init__(**kwargs)
    self.min_db, self.max_db = float(min_db), float(max_db)

  def call(self, x):
    x = keras.ops.cast(x[..., 0], "float32")                   # [B, M, T]
    db = x * (self.max_db - self.min_db) + self.min_db
    ln10 = float(np.log(10.0))
    mel = keras.ops.softplus(ln10 * (db / 10.0 + 4.0)) / (ln10 * LOG_MAX)
    mel = keras.ops.transpose(mel, (0, 2, 1))                  # [B, T, M]
    return keras.ops.cast(mel[..., None], self.compute_dtype)

  def get_config(self):
    return {**super().get_config(), "min_db": self.min_db,
            "max_db": self.max_db}


def _with_cnn9(inputs, x, weights: str):
  features = cnn9()
  if weights:
    load_cnn9_weights(features, aisfx_checkpoint.cnn9_state(weights))
  return keras.Model(inputs, features(x))


def cnn9_adapted(weights: str = "", num_mels: int = 64,
                 db_range: float = 129.71):
  """[B, M, T, 1] normalised log-mel of the reference's features ->
  [B, T/16, 12, 512] CNN9 feature maps; weights: aisfx's wheel or
  checkpoint ('' : random)."""
  inputs = keras.Input((num_mels, None, 1))
  # float32 under mixed precision too: dB arithmetic and a log-domain map.
  x = AisfxAdapter(db_range, num_mels, name="aisfx_adapter",
                   dtype="float32")(inputs)
  return _with_cnn9(inputs, x, weights)


def cnn9_native(weights: str = ""):
  """[B, 96, T, 1] normalised log-mel of the 'aisfx' feature set ->
  [B, T/8, 12, 512] CNN9 feature maps."""
  from tagger.audio import params as params_lib  # pylint: disable=g-import-not-at-top
  params = params_lib.preset(FEATURES)
  inputs = keras.Input((params.mel_bands, None, 1))
  x = AisfxFrontEnd(params.norm_min_db, params.norm_max_db,
                    name="aisfx_front_end", dtype="float32")(inputs)
  return _with_cnn9(inputs, x, weights)


# ---------------------------------------------------------------------------
# The front-end and clip embeddings.


def aisfx_log_mel(waveform: np.ndarray) -> np.ndarray:
  """Mono float32 at 44.1 kHz [N] -> [T, 96] as aisfx's librosa
  front-end computes it (peak-normalised, then normalised to about
  [0, 1])."""
  import librosa  # pylint: disable=g-import-not-at-top
  peak = float(np.max(np.abs(waveform))) if waveform.size else 0.0
  y = waveform / (peak if peak > 0 else 1.0)
  if y.size < N_FFT:
    y = np.pad(y, (0, N_FFT - y.size))
  spec = librosa.feature.melspectrogram(
      y=y.astype(np.float32), sr=RATE, n_fft=N_FFT, hop_length=HOP,
      win_length=N_FFT, n_mels=MELS, fmin=0.0, fmax=RATE / 2, htk=True,
      norm=1.0, power=2.0)                           # [96, T]
  return (np.log10(spec * 10000.0 + 1.0) / LOG_MAX).T.astype(np.float32)


def blocks(log_mel: np.ndarray) -> np.ndarray:
  """[T, 96] -> [n, 100, 96]: blocks of 100 frames every 50, the partial
  last one dropped (aisfx's blocking), at least one (zero-padded)."""
  frames = log_mel.shape[0]
  count = max(1, (frames - BLOCK_FRAMES) // BLOCK_HOP + 1)
  padded = np.pad(log_mel, ((0, max(0, BLOCK_FRAMES - frames)), (0, 0)))
  return np.stack([padded[i * BLOCK_HOP:i * BLOCK_HOP + BLOCK_FRAMES]
                   for i in range(count)])


def clip_embeddings(waveforms: Sequence[np.ndarray], model,
                    batch: int = 32) -> np.ndarray:
  """[N, 1024]: each clip's mean and max over its blocks' embeddings."""
  per_clip = [blocks(aisfx_log_mel(w)) for w in waveforms]
  flat = np.concatenate(per_clip) if per_clip else np.zeros(
      (0, BLOCK_FRAMES, MELS), np.float32)
  out = np.concatenate([model.predict_on_batch(flat[i:i + batch])
                        for i in range(0, len(flat), batch)] or
                       [np.zeros((0, WIDTHS[-1]), np.float32)])
  clips, start = [], 0
  for b in per_clip:
    e = out[start:start + len(b)]
    clips.append(np.concatenate([e.mean(axis=0), e.max(axis=0)]))
    start += len(b)
  return np.stack(clips) if clips else np.zeros((0, EMBEDDING_DIM))
