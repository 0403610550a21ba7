import numpy as np
import pytest
import scipy.ndimage

from conftest import tone
from tagger.audio import summary_features as sf


def test_median_filter_rows_equals_scipy_2d():
  x = np.random.default_rng(0).random((50, 80)).astype(np.float32)
  for size in (3, 31):
    expected = scipy.ndimage.median_filter(x, size=(1, size), mode="reflect")
    np.testing.assert_array_equal(sf.median_filter_rows(x, size), expected)


@pytest.mark.parametrize("seconds", [0.05, 1.5])
def test_fast_features_equal_the_librosa_reference(params, seconds):
  rng = np.random.default_rng(1)
  y = tone(seconds, 330.0) + tone(seconds, 1210.0, amp=0.1, seed=2)
  y *= np.exp(-np.linspace(0, 3, y.size)).astype(np.float32)
  y += 0.02 * rng.standard_normal(y.size).astype(np.float32)
  fast = sf.summary_features(y, params)
  reference = sf.summary_features_reference(y, params)
  assert fast.shape == reference.shape == (1133,)
  # Stated tolerance: |fast - ref| <= 1e-4 + 1e-3 |ref| for every value.
  np.testing.assert_allclose(fast, reference, rtol=1e-3, atol=1e-4)


def test_layout_and_names():
  assert len(sf.feature_names()) == 1133
  assert len(set(sf.feature_names())) == 1133
  assert sf.FRAME_STATS_COUNT == 985


def test_tiny_and_constant_clips_give_finite_values(params):
  for y in (np.full(10, 0.5, np.float32), tone(0.001)):
    v = sf.summary_features(y, params)
    assert v.shape == (1133,) and np.all(np.isfinite(v))


def test_row_statistics_match_scipy():
  import scipy.stats
  rows = np.random.default_rng(3).random((4, 20))
  stats = sf.row_statistics(rows).reshape(5, 4)
  np.testing.assert_allclose(stats[2], scipy.stats.skew(rows, axis=1))
  np.testing.assert_allclose(stats[1], rows.std(axis=1))


def test_run_lengths():
  mask = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1, 1], bool)
  np.testing.assert_array_equal(sf.run_lengths(mask), [2, 1, 3])
  assert sf.run_lengths(np.zeros(5, bool)).size == 0


def test_envelope_of_a_burst(params):
  y = np.zeros(20000, np.float32)
  y[5000:9000] = 1.0  # one loud stretch of 4000 samples
  v = sf.envelope_features(y, params)
  # Above 5% of the peak: one stretch of 4000 + 2000 - 1 (window) - 2*5%.
  assert np.expm1(v[3]) == pytest.approx(1)  # one stretch at 5%
  assert 5000 < np.expm1(v[0]) < 6000
  assert np.expm1(v[8]) == pytest.approx(5000 - 2000 + 0.99 * 2000, abs=2)


def test_waveform_features_by_hand():
  y = np.array([0, 2, -2, 4], np.float32)
  v = sf.waveform_features(y)
  assert v.shape == (72,)
  np.testing.assert_allclose(v[:4], [1.0, np.std(y), -2, 4])
  np.testing.assert_allclose(v[4:8], [2.0, np.std(np.abs(y)), 0, 4])
  np.testing.assert_allclose(v[8:12], [4 / 3, np.std([2, -4, 6]), -4, 6])


def test_spectrum_peak_position(params):
  v = sf.spectrum_features(tone(1.0, freq=2205.0, amp=0.5), params)
  # 2000-sample windows at 44.1 kHz: bin k is k * 22.05 Hz, so 2205 Hz -> 100.
  assert v[25] == 100
  assert v.shape == (64,)
