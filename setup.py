"""tagger: general-purpose audio tagging with TensorFlow.

install_requires states the compatible ranges; constraints.txt holds the
exact set the tests and the demo's figures come from (README's commands
install with `-c constraints.txt`). BUILD.md says why each is what it is.
"""

import setuptools

import re

with open("tagger/__init__.py", encoding="utf-8") as f:
  VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

TOOLS = ("make_demo_data", "make_tfrecords", "benchmark_make_tfrecords",
         "demo", "benchmark_pipeline", "show_batch", "train",
         "benchmark_train", "score", "export", "benchmark_score",
         "benchmark_serving", "benchmark_finetune",
         "make_recorded_data", "make_everyday_data", "benchmark_quality",
         "benchmark_labels",
         "data_service", "benchmark_data_service", "doctor", "benchmark_gpu")

setuptools.setup(
    name="tagger",
    version=VERSION,
    description="Train and serve general-purpose audio taggers "
                "(MobileNetV2 on log-mels, TFRecords, tf.distribute).",
    # configs/ stays at the top of the checkout and ships inside the
    # package as tagger.configs (BUILD.md, "Install where users are").
    packages=setuptools.find_packages(include=["tagger", "tagger.*"]) +
    ["tagger.configs"],
    package_dir={"tagger.configs": "configs"},
    python_requires=">=3.11,<3.13",
    install_requires=[
        "tensorflow>=2.16.2,<2.17",
        "tensorflow-io>=0.37.1,<0.38",
        "tensorflow-io-gcs-filesystem>=0.37.1,<0.38",
        "keras>=3.15.1,<4",
        "numpy>=1.26.4,<2",
        "scipy>=1.17.1,<2",
        "librosa==0.11.0",
        "soundfile>=0.14.0,<1",
        "soxr>=1.1.0,<2",
        "scikit-learn>=1.9.1,<2",
        "absl-py>=2.5.1,<3",
        "tqdm>=4.70.1,<5",
        "ml-collections>=1.1.0,<2",
        "matplotlib>=3.11.2,<4",
        # Label issues from out-of-fold scores (confident learning); it
        # brings pandas and termcolor.
        "cleanlab>=2.9.0,<3",
    ],
    extras_require={
        "test": ["pytest>=9.2.0,<10", "pytest-xdist>=3.8.0,<4",
                 "moto[server]>=5.2.5,<6"],
        # make_tfrecords --runner=...: ~300 MB with pyarrow, so optional.
        "beam": ["apache-beam>=2.77.0,<2.78"],
        # GPUs: TensorFlow's own CUDA 12.3 / cuDNN 8.9 wheels (its
        # [and-cuda] extra, at the same version); the plain install is
        # CPU-only on most GPU machines. Needs an NVIDIA driver >= 525.
        "gpu": ["tensorflow[and-cuda]>=2.16.2,<2.17"],
    },
    entry_points={"console_scripts": [
        f"tagger-{name.replace('_', '-')}=tagger.cli.{name}:run" for name in TOOLS
    ]},
)
