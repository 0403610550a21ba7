"""tagger: train and serve general-purpose audio taggers with TensorFlow.

Importing the package is cheap: modules that need TensorFlow import it
themselves, so feature-extraction worker processes never load it.
"""

import os

# TensorFlow's C++ info and warning lines (CUDA stubs, "Local rendezvous is
# aborting with status: OUT_OF_RANGE" at the end of every distributed
# evaluation, ...) drown the tools' own output; errors still show. Set
# TF_CPP_MIN_LOG_LEVEL=0 to see them all.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.14.0.dev0"
