"""aisfx's checkpoint, read without PyTorch: checkpoint.pth (or the wheel
that holds it, read in place) is PyTorch's zip format, data.pkl (a pickle
whose tensors are persistent references) beside data/<key> (each storage's
raw little-endian bytes). read_torch_checkpoint rebuilds the tensors as
numpy arrays with an unpickler that resolves only the handful of globals
such a file names (no code from the file runs); a missing, damaged or
foreign file is one PretrainedError line naming it and how to get it."""

import io
import pickle
import zipfile
from typing import Dict

import numpy as np
import tensorflow as tf

from tagger import errors

CHECKPOINT_IN_WHEEL = "aisfx/models/checkpoint.pth"
HOW_TO_GET = ("pip download aisfx==0.1.2 --no-deps -d weights/ (PyPI; "
              "weights CC BY 4.0) and pass the .whl or its "
              f"{CHECKPOINT_IN_WHEEL}")


MAX_CHECKPOINT_MB = 1024   # aisfx's wheel is 23 MB


class PretrainedError(errors.UserError):
  """Weights that cannot be read; the message names the file and how to
  get good ones."""


_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
    "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class _StorageType:
  def __init__(self, dtype: str):
    self.dtype = np.dtype(dtype)


def _rebuild_tensor(storage, offset, size, stride, *_):
  """torch._utils._rebuild_tensor_v2 as numpy: a strided view, copied."""
  itemsize = storage.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(
      storage[offset:], shape=tuple(size),
      strides=tuple(s * itemsize for s in stride))
  return np.array(view)


def _allowed_global(module: str, name: str):
  if module == "torch._utils" and name == "_rebuild_tensor_v2":
    return _rebuild_tensor
  if module == "torch" and name in _STORAGE_DTYPES:
    return _StorageType(_STORAGE_DTYPES[name])
  if module == "collections" and name == "OrderedDict":
    import collections  # pylint: disable=g-import-not-at-top
    return collections.OrderedDict
  if module in ("numpy.core.multiarray", "numpy._core.multiarray") and (
      name == "scalar"):
    return np.core.multiarray.scalar
  if module == "numpy" and name == "dtype":
    return np.dtype
  if module == "_codecs" and name == "encode":
    import codecs  # pylint: disable=g-import-not-at-top
    return codecs.encode
  return None


def _checkpoint_zip(path: str, data: bytes) -> zipfile.ZipFile:
  """The checkpoint's zip: the file itself, or the one inside a wheel."""
  try:
    outer = zipfile.ZipFile(io.BytesIO(data))
  except zipfile.BadZipFile as e:
    raise PretrainedError(f"{path}: not a PyTorch checkpoint or wheel (not "
                          f"a zip file); get one: {HOW_TO_GET}") from e
  if CHECKPOINT_IN_WHEEL in outer.namelist():
    return zipfile.ZipFile(io.BytesIO(outer.read(CHECKPOINT_IN_WHEEL)))
  return outer


def read_torch_checkpoint(path: str):
  """The object a torch.save zip file holds, its tensors as numpy arrays.
  path: the .pth file, or a wheel that holds aisfx's."""
  from tagger import fileio  # pylint: disable=g-import-not-at-top
  from tagger.shards import clip_files  # pylint: disable=g-import-not-at-top
  if not fileio.exists(path):
    raise PretrainedError(f"{path}: no such file; get the weights: "
                          f"{HOW_TO_GET}")
  try:   # a regular file only (a FIFO would block, a folder fail in TF)
    data = clip_files.read_clip(path, max_file_mb=MAX_CHECKPOINT_MB)
  except (OSError, tf.errors.OpError) as e:
    raise PretrainedError(f"{path}: cannot read it ({e}); get the weights: "
                          f"{HOW_TO_GET}") from e
  archive = _checkpoint_zip(path, data)
  pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
  if len(pickles) != 1:
    raise PretrainedError(f"{path}: no data.pkl inside, not a PyTorch zip "
                          f"checkpoint; get one: {HOW_TO_GET}")
  prefix = pickles[0][:-len("data.pkl")]

  class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
      found = _allowed_global(module, name)
      if found is None:
        raise PretrainedError(f"{path}: refers to {module}.{name}, which a "
                              "weights file does not need; not read")
      return found

    def persistent_load(self, pid):
      kind, storage_type, key, _, numel = pid[:5]
      if kind != "storage" or not isinstance(storage_type, _StorageType):
        raise PretrainedError(f"{path}: unknown storage {pid[:2]}")
      raw = archive.read(f"{prefix}data/{key}")
      return np.frombuffer(raw, storage_type.dtype, count=int(numel))

  try:
    return Unpickler(io.BytesIO(archive.read(pickles[0]))).load()
  except PretrainedError:
    raise
  except (KeyError, ValueError, EOFError, pickle.UnpicklingError,
          zipfile.BadZipFile) as e:
    raise PretrainedError(f"{path}: damaged checkpoint ({e}); get it "
                          f"again: {HOW_TO_GET}") from e


def cnn9_state(path: str) -> Dict[str, np.ndarray]:
  """The embedding network's arrays of aisfx's checkpoint, by PyTorch name
  without the 'embedding_net.' prefix."""
  loaded = read_torch_checkpoint(path)
  state = loaded[0] if isinstance(loaded, tuple) else loaded
  prefix = "embedding_net."
  out = {k[len(prefix):]: v for k, v in dict(state).items()
         if k.startswith(prefix)}
  if not out:
    raise PretrainedError(f"{path}: holds no embedding_net weights (not "
                          f"aisfx's checkpoint); get it: {HOW_TO_GET}")
  return out
