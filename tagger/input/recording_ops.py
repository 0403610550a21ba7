"""Augmentations of the recording: ops on the log-mel in dB, before the
normalisation, that change what a microphone, a room or a player would
(level, channel, background, reverberation, tuning). augment.py registers
each under its own random stream; AugmentConfig.recording_ops names them,
op_params sets their arguments. Each is (log_mel_db [b, M, L], seed [2],
aug, **params) -> the same shape. Also here: Freq-MixStyle (an image op,
on the normalised image: the channel's colouring of one example mixed
with another's) and the Beta sampler that it and mixup draw from."""

import tensorflow as tf


def _per_clip(x: tf.Tensor, seed, low: float, high: float) -> tf.Tensor:
  """[b, 1, 1] uniform numbers, one per clip of x [b, M, L]."""
  return tf.random.stateless_uniform([tf.shape(x)[0], 1, 1], seed, low,
                                     high)


def gain(log_mel_db, seed, aug, max_db: float = 12.0):
  """The recording's level: + U(-max_db, max_db) dB per clip."""
  del aug
  return log_mel_db + _per_clip(log_mel_db, seed, -max_db, max_db)


def equalizer(log_mel_db, seed, aug, max_db: float = 8.0, terms: int = 3):
  """A microphone's or channel's response: a smooth random curve over the
  mel bands, sum_k a_k cos(pi k m / M + phi_k), a_k ~ U(-max_db, max_db)/k,
  added per clip."""
  del aug
  b, m = tf.shape(log_mel_db)[0], tf.shape(log_mel_db)[1]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  k = tf.range(1, terms + 1, dtype=tf.float32)                   # [K]
  amp = tf.random.stateless_uniform([b, terms], seeds[0], -max_db,
                                    max_db) / k                  # [b, K]
  phase = tf.random.stateless_uniform([b, terms], seeds[1], 0.0, 6.2832)
  band = tf.cast(tf.range(m), tf.float32) / tf.cast(m, tf.float32)  # [M]
  curve = tf.reduce_sum(amp[:, None, :] * tf.cos(
      3.14159265 * k * band[:, None] + phase[:, None, :]), axis=-1)  # [b, M]
  return log_mel_db + curve[:, :, None]


def _power(db):
  return tf.pow(10.0, db / 10.0)


def _db(power):
  return 10.0 * tf.math.log(tf.maximum(power, 1e-12)) / tf.math.log(10.0)


def background_noise(log_mel_db, seed, aug, snr_db=(0.0, 30.0),
                     max_tilt_db: float = 20.0, probability: float = 0.8):
  """Noise at a random SNR (against the clip's mean power), with a random
  spectral tilt (white to brown-like), added in the power domain; each
  cell's noise power fluctuates as |complex Gaussian|^2 (exponential)."""
  del aug
  b, m, l = (tf.shape(log_mel_db)[i] for i in range(3))
  seeds = tf.random.experimental.stateless_split(seed, 4)
  power = _power(log_mel_db)
  snr = _per_clip(log_mel_db, seeds[0], *snr_db)
  tilt = _per_clip(log_mel_db, seeds[1], -max_tilt_db, 0.0)
  band = tf.cast(tf.range(m), tf.float32)[None, :, None] / tf.cast(
      m, tf.float32)
  shape = _power(tilt * band)                                     # [b, M, 1]
  cells = -tf.math.log(tf.random.stateless_uniform(
      [b, m, l], seeds[2], 1e-6, 1.0))                            # Exp(1)
  level = tf.reduce_mean(power, axis=(1, 2), keepdims=True) / tf.reduce_mean(
      shape, axis=1, keepdims=True) * _power(-snr)
  on = tf.cast(_per_clip(log_mel_db, seeds[3], 0.0, 1.0) < probability,
               tf.float32)
  return _db(power + on * level * shape * cells)


def reverberation(log_mel_db, seed, aug, rt60_s=(0.1, 1.0),
                  frames_per_second: float = 100.0, max_wet: float = 0.7):
  """A room: the power envelope of each band convolved along time with an
  exponential decay of a random RT60 (FFT convolution), mixed in with a
  random wet share."""
  del aug
  l = tf.shape(log_mel_db)[2]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  power = _power(log_mel_db)                                      # [b, M, L]
  rt60 = _per_clip(log_mel_db, seeds[0], *rt60_s)                 # [b, 1, 1]
  t = tf.cast(tf.range(l), tf.float32)[None, None, :] / frames_per_second
  decay = tf.exp(-6.9 * t / rt60)
  decay /= tf.reduce_sum(decay, axis=2, keepdims=True)            # [b, 1, L]
  n = 2 * l
  wet = tf.signal.irfft(tf.signal.rfft(power, [n]) * tf.signal.rfft(
      decay, [n]), [n])[:, :, :l]
  share = _per_clip(log_mel_db, seeds[1], 0.0, max_wet)
  return _db((1 - share) * power + share * tf.maximum(wet, 0.0))


def pitch_shift(log_mel_db, seed, aug, max_bands: float = 2.0):
  """A player or sampler tuned differently: the image moved along the mel
  axis by U(-max_bands, max_bands) bands (linear interpolation; the edge
  band repeats)."""
  del aug
  m = tf.shape(log_mel_db)[1]
  shift = _per_clip(log_mel_db, seed, -max_bands, max_bands)[:, :, 0]  # [b,1]
  source = tf.cast(tf.range(m), tf.float32)[None, :] - shift        # [b, M]
  source = tf.clip_by_value(source, 0.0, tf.cast(m - 1, tf.float32))
  low = tf.cast(tf.floor(source), tf.int32)
  high = tf.minimum(low + 1, m - 1)
  frac = (source - tf.cast(low, tf.float32))[:, :, None]
  below = tf.gather(log_mel_db, low, axis=1, batch_dims=1)
  above = tf.gather(log_mel_db, high, axis=1, batch_dims=1)
  return below + frac * (above - below)


def sample_beta(shape, alpha: float, seed: tf.Tensor) -> tf.Tensor:
  """Beta(alpha, alpha) samples as X / (X + Y) of two Gamma(alpha)."""
  seeds = tf.random.experimental.stateless_split(seed, 2)
  x = tf.random.stateless_gamma(shape, seeds[0], alpha)
  y = tf.random.stateless_gamma(shape, seeds[1], alpha)
  return x / tf.maximum(x + y, 1e-12)


def mix_band_statistics(image: tf.Tensor, partner: tf.Tensor,
                        weight: tf.Tensor, eps: float = 1e-6) -> tf.Tensor:
  """Freq-MixStyle's arithmetic (Schmid et al., DCASE 2022): each
  example's per-band mean and std over time (its 'style': the channel's
  and the room's colouring) replaced by weight * its own + (1 - weight) *
  its partner's, the content kept.

  Args:
    image: [b, M, L].
    partner: int32 [b], the example each one mixes with.
    weight: [b] in [0, 1]; 1 leaves an example as it was.
  Returns:
    [b, M, L].
  """
  mean = tf.reduce_mean(image, axis=2, keepdims=True)
  std = tf.sqrt(tf.math.reduce_variance(image, axis=2, keepdims=True) + eps)
  # mean, std: [b, M, 1]
  w = tf.reshape(tf.cast(weight, image.dtype), [-1, 1, 1])
  mixed_mean = w * mean + (1 - w) * tf.gather(mean, partner)
  mixed_std = w * std + (1 - w) * tf.gather(std, partner)
  return (image - mean) / std * mixed_std + mixed_mean


def freq_mixstyle(image: tf.Tensor, seed: tf.Tensor, *, alpha: float = 0.3,
                  probability: float = 0.5) -> tf.Tensor:
  """Freq-MixStyle on a batch [b, M, L]: with `probability`, an example's
  per-band statistics are mixed with those of another example of the
  batch (a random permutation) at a Beta(alpha, alpha) weight
  (mix_band_statistics); the others are left as they were."""
  b = tf.shape(image)[0]
  seeds = tf.random.experimental.stateless_split(seed, 3)
  partner = tf.argsort(tf.random.stateless_uniform([b], seeds[0]))
  weight = sample_beta([b], alpha, seeds[1])
  chosen = tf.random.stateless_uniform([b], seeds[2]) < probability
  weight = tf.where(chosen, weight, tf.ones_like(weight))
  return mix_band_statistics(image, tf.cast(partner, tf.int32), weight)
