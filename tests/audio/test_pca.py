import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from tagger.audio import pca


def test_apply_equals_sklearn_and_survives_save_load(tmp_path):
  x = np.random.default_rng(0).normal(size=(60, 20)) * np.arange(1, 21)
  fit = pca.fit_pca(x, components=8)
  scaled = StandardScaler().fit_transform(x)
  expected = PCA(n_components=8, svd_solver="full").fit(scaled)
  np.testing.assert_allclose(fit.apply(x), expected.transform(scaled),
                             rtol=1e-4, atol=1e-4)
  path = str(tmp_path / "pca.npz")
  fit.save(path)
  np.testing.assert_array_equal(pca.PcaFit.load(path).apply(x), fit.apply(x))


def test_fewer_clips_than_components_keeps_fewer():
  x = np.random.default_rng(1).normal(size=(12, 30))
  assert pca.fit_pca(x, components=350).dim == 12


def test_missing_fit_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="no PCA fit"):
    pca.PcaFit.load(str(tmp_path / "nope.npz"))
