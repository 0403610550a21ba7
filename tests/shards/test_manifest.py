"""The typed manifest: written and read back equal, older folders read,
damaged ones refused in one line naming the file."""

import json
import os

import pytest

from tagger.datasets import synthetic
from tagger.shards import data_info
from tagger.shards import manifest as manifest_lib


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("shards"))
  synthetic.write_synthetic_shards(path, synthetic.SyntheticSet(
      24, num_classes=3, num_folds=2, pca_dim=4, median_frames=40))
  return path


def _rewrite(folder, tmp_path, edit) -> str:
  """A copy of folder's manifest, edited, beside links to its shards."""
  doc = json.load(open(os.path.join(folder, manifest_lib.MANIFEST)))
  edit(doc)
  out = str(tmp_path / "copy")
  os.makedirs(out)
  for name in os.listdir(folder):
    if name.endswith(".tfrecord"):
      os.symlink(os.path.join(folder, name), os.path.join(out, name))
  with open(os.path.join(out, manifest_lib.MANIFEST), "w") as f:
    json.dump(doc, f)
  return out


def test_written_and_read_back_equal(folder):
  manifest = manifest_lib.Manifest.read(folder)
  assert manifest_lib.Manifest.from_json(manifest.to_json()) == manifest
  assert manifest.num_classes == 3 and manifest.pca.dim == 4
  assert [s.fold for s in manifest.shards] == [0, 1]
  info = data_info.load_data_info(folder, verify=True)
  assert info.num_records((0, 1)) == 24 and info.folds == (0, 1)


def test_a_folder_of_an_older_tagger_reads(folder, tmp_path):
  """tagger 0.7's manifests have no sources, engine, write options,
  multi_label or per-shard sha256 (checked against a 0.7 folder by hand:
  BUILD.md, "Layout")."""
  def older(doc):
    for key in ("sources", "per_source_counts", "multi_label", "engine",
                "write_options", "created_unix"):
      doc.pop(key, None)
    for shard in doc["shards"]:
      shard.pop("sha256")
      shard.pop("source")
  info = data_info.load_data_info(_rewrite(folder, tmp_path, older),
                                  verify=True)
  assert info.sources == ("train",) and not info.multi_label
  assert all(s.source == "train" and s.sha256 == ""
             for s in info.manifest.shards)


@pytest.mark.parametrize("edit,says", [
    (lambda d: d.pop("labels"), "unreadable here (KeyError: 'labels')"),
    (lambda d: d.update(record_format=1), "record format 1"),
    (lambda d: d["shards"][0].update(records="many"), "ValueError"),
])
def test_a_manifest_without_what_readers_need_is_named(folder, tmp_path,
                                                       edit, says):
  path = _rewrite(folder, tmp_path, edit)
  with pytest.raises(data_info.InputError) as caught:
    data_info.load_data_info(path)
  message = str(caught.value)
  assert says in message and os.path.join(path, "manifest.json") in message
  assert "make_tfrecords --overwrite" in message and "\n" not in message
