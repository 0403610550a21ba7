"""tagger: train and serve general-purpose audio taggers with TensorFlow.

Importing the package is cheap: modules that need TensorFlow import it
themselves, so feature-extraction worker processes never load it.
"""

__version__ = "0.2.0"
