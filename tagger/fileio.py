"""File access through tf.io.gfile, so s3://, gs://, hdfs:// paths work.

Every path to shards, manifests and model dirs goes through here. gs:// is
built into TensorFlow; s3://, hdfs://, az:// and http(s):// come from
tensorflow-io, whose file systems register only once it is imported: the
first path with such a scheme imports it here. Writes are
atomic: data goes to a temporary name beside the target, then is renamed, so
a killed process never leaves a partial file under the final name.
"""

import io
import json
import os
import uuid
from typing import Any

import numpy as np
import tensorflow as tf

TMP_MARK = ".tmp-"
TFIO_SCHEMES = ("s3", "hdfs", "viewfs", "har", "az", "http", "https")
_tfio_used = []


def register_filesystem(path: str) -> str:
  """Imports tensorflow_io when a path needs one of its file systems;
  returns the path."""
  scheme = path.split("://", 1)[0] if "://" in path else ""
  if scheme in TFIO_SCHEMES and not _tfio_used:
    import tensorflow_io  # pylint: disable=g-import-not-at-top,unused-import
    _tfio_used.append(scheme)
  return path


def tfio_filesystem_used() -> bool:
  """True once a tensorflow-io file system served a path. Its S3 client
  aborts the process at interpreter exit (tensorflow/io#2039: 'pure
  virtual method called', exit 134), so tools end such runs with
  os._exit after everything is written (tools.run_tool)."""
  return bool(_tfio_used)


def join(*parts: str) -> str:
  register_filesystem(parts[0])
  return os.path.join(*parts)  # tf.io.gfile paths use '/' on every scheme


def exists(path: str) -> bool:
  return tf.io.gfile.exists(register_filesystem(path))


def makedirs(path: str) -> None:
  tf.io.gfile.makedirs(register_filesystem(path))


def listdir(path: str) -> list:
  return sorted(tf.io.gfile.listdir(path)) if exists(path) else []


def read_bytes(path: str) -> bytes:
  with tf.io.gfile.GFile(register_filesystem(path), "rb") as f:
    return f.read()


def read_text(path: str) -> str:
  return read_bytes(path).decode("utf-8")


def temp_name(path: str) -> str:
  return f"{path}{TMP_MARK}{uuid.uuid4().hex[:8]}"


def atomic_write_bytes(path: str, data: bytes) -> None:
  tmp = temp_name(register_filesystem(path))
  with tf.io.gfile.GFile(tmp, "wb") as f:
    f.write(data)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def atomic_write_text(path: str, text: str) -> None:
  atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str, value: Any) -> None:
  atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def read_json(path: str) -> Any:
  return json.loads(read_text(path))


def write_npz(path: str, **arrays: np.ndarray) -> None:
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  atomic_write_bytes(path, buffer.getvalue())


def read_npz(path: str) -> dict:
  with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def sha256(path: str) -> str:
  """The hex sha256 of a file, read in 4 MB blocks."""
  import hashlib  # pylint: disable=g-import-not-at-top
  digest = hashlib.sha256()
  with tf.io.gfile.GFile(path, "rb") as f:
    while True:
      block = f.read(1 << 22)
      if not block:
        break
      digest.update(block)
  return digest.hexdigest()


def remove_temp_files(directory: str) -> int:
  """Deletes leftovers of interrupted atomic writes; returns how many."""
  count = 0
  for name in listdir(directory):
    if TMP_MARK in name:
      tf.io.gfile.remove(join(directory, name))
      count += 1
  return count


def remove_tree(path: str) -> None:
  if exists(path):
    tf.io.gfile.rmtree(path)
