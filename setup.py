"""tagger: general-purpose audio tagging with TensorFlow.

Pins are exact; BUILD.md says why each is what it is.
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
         "data_service", "benchmark_data_service", "doctor", "benchmark_gpu")

setuptools.setup(
    name="tagger",
    version=VERSION,
    description="Train and serve general-purpose audio taggers "
                "(MobileNetV2 on log-mels, TFRecords, tf.distribute).",
    packages=setuptools.find_packages(include=["tagger", "tagger.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        "tensorflow==2.16.2",
        "tensorflow-io==0.37.1",
        "tensorflow-io-gcs-filesystem==0.37.1",
        "keras==3.15.1",
        "numpy==1.26.4",
        "scipy==1.17.1",
        "librosa==0.11.0",
        "soundfile==0.14.0",
        "soxr==1.1.0",
        "numba==0.68.1",
        "scikit-learn==1.9.1",
        "absl-py==2.5.1",
        "tqdm==4.70.1",
        "ml-collections==1.1.0",
        "matplotlib==3.11.2",
    ],
    extras_require={
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "moto[server]==5.2.5"],
        # make_tfrecords --runner=...: ~300 MB with pyarrow, so optional.
        "beam": ["apache-beam==2.77.0"],
        # GPUs: TensorFlow's own CUDA 12.3 / cuDNN 8.9 wheels (its
        # [and-cuda] extra, at the same pin); the plain install is CPU-only
        # on most GPU machines. Needs an NVIDIA driver >= 525 (README).
        "gpu": ["tensorflow[and-cuda]==2.16.2"],
    },
    entry_points={"console_scripts": [
        f"tagger-{name.replace('_', '-')}=tagger.cli.{name}:run" for name in TOOLS
    ]},
)
