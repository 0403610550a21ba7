"""What a recording adds to a rendered performance: a room, a microphone,
background noise (white, pink or brown, some with mains hum) at an SNR, a
second sound underneath, a level and sometimes a lower sample rate."""

from typing import Optional, Tuple

import numpy as np

RATE = 44100   # the rate every performance is rendered at


def _colored_noise(rng, n: int, color: str) -> np.ndarray:
  white = rng.standard_normal(n)
  if color == "white":
    return white
  spectrum = np.fft.rfft(white)
  freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / RATE), 20.0)
  spectrum /= freqs**(0.5 if color == "pink" else 1.0)
  noise = np.fft.irfft(spectrum, n)
  return noise / (np.std(noise) + 1e-12)


def _room(rng, sound: np.ndarray) -> np.ndarray:
  """Exponentially decaying noise reverberation (RT60 0.2-1.2 s)."""
  from scipy import signal  # pylint: disable=g-import-not-at-top
  rt60 = rng.uniform(0.2, 1.2)
  n = int(rt60 * RATE)
  t = np.arange(n) / RATE
  response = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
  response /= np.sqrt(np.sum(response**2))
  wet = signal.fftconvolve(sound, response)  # [len(sound) + n - 1]
  dry = np.pad(sound, (0, n - 1))
  mix = rng.uniform(0.15, 0.6)
  return (1 - mix) * dry + mix * wet


def _microphone(rng, sound: np.ndarray) -> np.ndarray:
  """A band-limited pickup (phone, cheap microphone)."""
  from scipy import signal  # pylint: disable=g-import-not-at-top
  low, high = rng.uniform(80, 400), rng.uniform(3000, 8000)
  sos = signal.butter(4, [low, high], btype="band", fs=RATE, output="sos")
  return signal.sosfilt(sos, sound)


def _rms(x: np.ndarray) -> float:
  return float(np.sqrt(np.mean(x**2) + 1e-12))


def make_clip(sound: np.ndarray, under: Optional[np.ndarray], rng,
              snr_db: Tuple[float, float]) -> Tuple[np.ndarray, int]:
  """A recorded clip from a rendered performance: (waveform, rate)."""
  sound = sound / (np.max(np.abs(sound)) + 1e-9)
  if under is not None:
    under = under / (np.max(np.abs(under)) + 1e-9)
    under = under[:len(sound)] if len(under) > len(sound) else np.pad(
        under, (0, len(sound) - len(under)))
    sound = sound + under * 10**(-rng.uniform(6, 18) / 20)
  if rng.uniform() < 0.5:
    sound = _room(rng, sound)
  if rng.uniform() < 0.2:
    sound = _microphone(rng, sound)
  lead, tail = (int(rng.uniform(0.0, 1.0) * RATE) for _ in range(2))
  clip = np.pad(sound, (lead, tail))
  color = rng.choice(["white", "pink", "brown"])
  noise = _colored_noise(rng, len(clip), color)
  if rng.uniform() < 0.2:
    hum_hz = rng.choice([50.0, 60.0])
    t = np.arange(len(clip)) / RATE
    noise += sum(np.sin(2 * np.pi * hum_hz * h * t) / h for h in (1, 2, 3))
  snr = rng.uniform(*snr_db)
  signal_rms = _rms(sound[np.abs(sound) > 0.01 * np.max(np.abs(sound))])
  clip = clip + noise / _rms(noise) * signal_rms * 10**(-snr / 20)
  clip *= 10**(-rng.uniform(1, 24) / 20) / (np.max(np.abs(clip)) + 1e-9)
  if rng.uniform() < 0.2:
    from scipy import signal  # pylint: disable=g-import-not-at-top
    return signal.resample_poly(clip, 1, 2).astype(np.float32), RATE // 2
  return clip.astype(np.float32), RATE
