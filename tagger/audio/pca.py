"""StandardScaler + PCA of the summary features: fit on train, apply anywhere.

Saved as plain arrays (pca.npz), not pickles, so a fit made by one version of
scikit-learn is applied identically by any other, in numpy or TF.
"""

import dataclasses

from absl import logging
import numpy as np

from tagger import fileio

FIT_FILE = "pca.npz"  # a fit's file name, in shard folders and model dirs


@dataclasses.dataclass(frozen=True)
class PcaFit:
  """x -> ((x - scale_mean) / scale - pca_mean) @ components.T."""
  scale_mean: np.ndarray  # [F]
  scale: np.ndarray  # [F]
  pca_mean: np.ndarray  # [F]
  components: np.ndarray  # [P, F]
  explained_variance_ratio: np.ndarray  # [P]

  @property
  def dim(self) -> int:
    return self.components.shape[0]

  def apply(self, x: np.ndarray, block: int = 8192) -> np.ndarray:
    """[N, F] summary features -> [N, P] float32 PCA vectors, `block` rows
    at a time (float64 arithmetic; memory: the output and one block)."""
    out = np.empty((len(x), self.components.shape[0]), np.float32)
    for start in range(0, len(x), block):
      rows = np.asarray(x[start:start + block], np.float64)
      scaled = (rows - self.scale_mean) / self.scale
      out[start:start + block] = (scaled - self.pca_mean) @ self.components.T
    return out

  def save(self, path: str) -> None:
    fileio.write_npz(path, **dataclasses.asdict(self))

  @classmethod
  def load(cls, path: str) -> "PcaFit":
    if not fileio.exists(path):
      raise FileNotFoundError(f"{path}: no PCA fit here (run make_tfrecords "
                              "--split=train first and point --pca_from at "
                              "its output_dir)")
    arrays = fileio.read_npz(path)
    return cls(**{f.name: arrays[f.name] for f in dataclasses.fields(cls)})


def _one_blas_thread():
  import threadpoolctl  # pylint: disable=g-import-not-at-top
  return threadpoolctl.threadpool_limits(1)


def fit_pca(features: np.ndarray, components: int) -> PcaFit:
  """Fits StandardScaler then PCA on [N, F] train features.

  Keeps `components` components, or fewer (with a warning) when the data has
  fewer clips or features than that.
  """
  from sklearn.decomposition import PCA  # pylint: disable=g-import-not-at-top
  from sklearn.preprocessing import StandardScaler  # pylint: disable=g-import-not-at-top
  num_clips, num_features = features.shape
  kept = min(components, num_clips, num_features)
  if kept < components:
    logging.warning(
        "PCA: %d components asked, but the train split has %d clips and %d "
        "features; keeping %d components. The model's PCA input will be %d "
        "wide.", components, num_clips, num_features, kept, kept)
  # One BLAS thread: the fit is then the same whatever process runs it
  # (a local run's main process, a Beam worker) and however many cores.
  with _one_blas_thread():
    scaler = StandardScaler().fit(features.astype(np.float64))
    scaled = scaler.transform(features.astype(np.float64))
    pca = PCA(n_components=kept, svd_solver="full").fit(scaled)
  return PcaFit(scale_mean=scaler.mean_, scale=scaler.scale_,
                pca_mean=pca.mean_, components=pca.components_,
                explained_variance_ratio=pca.explained_variance_ratio_)
