"""Feature parameters: one frozen object shared by sharding, training, scoring.

Field names carry their units. The defaults are the reference recipe
(BUILD.md, "Audio and shards"); the object is written into every manifest so the
same numbers are used wherever features are computed or read.
"""

import dataclasses
from typing import Any, Dict


@dataclasses.dataclass(frozen=True)
class FeatureParams:
  """Every constant of feature extraction."""

  # Decoding and trimming (librosa.effects.trim defaults).
  load_sample_rate_hz: int = 44100
  trim_top_db: float = 60.0
  trim_frame_length: int = 2048
  trim_hop_length: int = 512

  # Log-mel spectrogram, computed at a lower rate.
  mel_sample_rate_hz: int = 22050
  mel_fft_length: int = 1764
  mel_hop_length: int = 220
  mel_bands: int = 64
  mel_min_hz: float = 0.0
  mel_max_hz: float = 11025.0  # mel_sample_rate_hz / 2
  mel_power: float = 2.0
  # The filterbank: Slaney's mel scale and area normalisation (librosa's
  # defaults, the reference), or HTK's scale and/or unit-sum filters
  # (librosa norm=1: each band the mean power of its bins; aisfx's).
  mel_htk: bool = False
  mel_norm: str = "slaney"     # slaney | l1
  # librosa >= 0.10 pads centred frames with zeros; 'reflect' was its 2018
  # default. Zeros are safer for clips shorter than half a window.
  stft_pad_mode: str = "constant"
  db_ref: float = 1.0
  db_amin: float = 1e-10
  db_top_db: float = 80.0
  # dB relative to the power of the clip's waveform peak (as if the clip
  # were peak-normalised first: aisfx's front-end): recording level drops
  # out. False: relative to db_ref (the reference).
  db_ref_peak: bool = False

  # Fixed bounds mapping dB to [0, 1]: (x - min_db) / (max_db - min_db).
  norm_min_db: float = -90.5
  norm_max_db: float = 39.21

  # Summary features (all at load_sample_rate_hz on the trimmed waveform).
  summary_fft_length: int = 2048
  summary_hop_length: int = 512
  summary_mel_bands: int = 128
  summary_mfcc: int = 40
  hpss_kernel: int = 31
  envelope_window: int = 2000
  spectrum_window: int = 2000
  spectrum_offset: int = 100
  spectrum_bins: int = 1000

  # Bounds on long recordings (FSDKaggle2018's clips are <= 30 s, so the
  # reference is not affected): audio after max_clip_seconds is not decoded
  # (the clip is reported as cut), and the summary features describe the
  # first summary_max_seconds of the trimmed clip (the log-mel covers all).
  max_clip_seconds: float = 600.0
  summary_max_seconds: float = 60.0

  def __post_init__(self):
    if self.mel_norm not in ("slaney", "l1"):
      raise ValueError(f"mel_norm {self.mel_norm!r}: use 'slaney' or 'l1'")

  @property
  def mel_frames_per_second(self) -> float:
    return self.mel_sample_rate_hz / self.mel_hop_length

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: Dict[str, Any]) -> "FeatureParams":
    """Builds params from a manifest; unknown keys are an error, not ignored."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
      raise ValueError(f"unknown feature parameters {unknown}; this manifest "
                       "was written by a newer tagger")
    return cls(**values)


# Named feature sets (make_tfrecords --features): the reference recipe's,
# and aisfx's front-end (44.1 kHz, 2048/1024 STFT, 96 HTK bands to 22.05
# kHz, unit-sum filters, peak-normalised), which its pretrained CNN9 needs
# (tagger/pretrained.py). Its dB span is wider (120 dB below the peak, not
# 80): aisfx's log10(1 + 10^4 S) reaches 0 only ~40 dB below full scale.
PRESETS = {
    "reference": FeatureParams(),
    "aisfx": FeatureParams(
        mel_sample_rate_hz=44100, mel_fft_length=2048, mel_hop_length=1024,
        mel_bands=96, mel_max_hz=22050.0, mel_htk=True, mel_norm="l1",
        db_ref_peak=True, db_top_db=120.0, norm_min_db=-70.0,
        norm_max_db=60.0),
}


def preset(name: str) -> FeatureParams:
  if name not in PRESETS:
    raise ValueError(f"unknown feature set {name!r}; known: "
                     f"{sorted(PRESETS)}")
  return PRESETS[name]


def preset_name(params: FeatureParams) -> str:
  """The PRESETS name of params ('' when they are none of them)."""
  return next((k for k, v in PRESETS.items() if v == params), "")


SUMMARY_FEATURE_COUNT = 1133  # 985 + 12 + 64 + 72
