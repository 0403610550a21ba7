"""tagger: train and serve general-purpose audio taggers with TensorFlow.

Importing the package is cheap: modules that need TensorFlow import it
themselves, so feature-extraction worker processes never load it.
"""

import os

# TensorFlow's C++ info and warning lines (CUDA stubs, "Local rendezvous is
# aborting with status: OUT_OF_RANGE" at the end of every distributed
# evaluation, ...) drown the tools' own output; errors still show (the
# tools hide TensorFlow's start-up errors too: tagger.cli). Set
# TF_CPP_MIN_LOG_LEVEL=0 to see them all.
TF_LOG_LEVEL_FROM_USER = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _checkout_configs() -> None:
  """In a checkout, configs/ beside the package is tagger.configs, as a
  wheel holds it (setup.py maps it in), however tagger was put on the path
  (PYTHONPATH, an editable install made before the mapping)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  here = os.path.dirname(os.path.abspath(__file__))
  folder = os.path.join(os.path.dirname(here), "configs")
  init = os.path.join(folder, "__init__.py")
  if os.path.isdir(os.path.join(here, "configs")) or not os.path.isfile(init):
    return
  spec = importlib.util.spec_from_file_location(
      f"{__name__}.configs", init, submodule_search_locations=[folder])
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  globals()["configs"] = module


_checkout_configs()

__version__ = "0.14.0.dev0"
