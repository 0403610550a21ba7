import librosa
import numpy as np
import pytest

from conftest import tone
from tagger.audio import features


def librosa_log_mel(y):
  y22 = librosa.resample(y, orig_sr=44100, target_sr=22050)
  mel = librosa.feature.melspectrogram(y=y22, sr=22050, n_fft=1764,
                                       hop_length=220, n_mels=64)
  return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=80)


@pytest.mark.parametrize("num_samples", [1, 300, 4410, 44100 * 3 + 17])
def test_log_mel_equals_librosa(params, num_samples):
  rng = np.random.default_rng(num_samples)
  y = (0.2 * rng.standard_normal(num_samples)).astype(np.float32)
  ours = features.waveform_to_log_mel(y, params)
  expected = librosa_log_mel(y)
  assert ours.shape == expected.shape == (64, ours.shape[1])
  # float32 FFTs in both; 1e-3 dB is far below what float16 storage keeps.
  np.testing.assert_allclose(ours, expected, atol=1e-3)


def test_frame_rate_and_shape(params):
  ours = features.waveform_to_log_mel(tone(2.0), params)
  assert ours.shape == (64, 1 + 22050 * 2 // 220)
  assert params.mel_frames_per_second == pytest.approx(100.23, abs=0.01)


def test_a_tone_peaks_in_its_mel_band(params):
  ours = features.waveform_to_log_mel(tone(1.0, freq=1000.0), params)
  centres = librosa.mel_frequencies(n_mels=66, fmax=11025)[1:-1]
  assert abs(centres[np.argmax(ours.mean(axis=1))] - 1000) < 100


def test_normalize_uses_the_fixed_bounds(params):
  x = np.array([params.norm_min_db, params.norm_max_db, 0.0])
  np.testing.assert_allclose(features.normalize(
      x, params.norm_min_db, params.norm_max_db),
                             [0.0, 1.0, 90.5 / (39.21 + 90.5)])


def test_empty_waveform_is_an_error(params):
  with pytest.raises(ValueError):
    features.waveform_to_log_mel(np.zeros(0, np.float32), params)
