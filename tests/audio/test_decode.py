import numpy as np
import pytest

from conftest import SR, tone, wav_bytes
from tagger.audio import decode


@pytest.mark.parametrize("subtype,tol", [("PCM_U8", 1e-2), ("PCM_16", 1e-4),
                                         ("PCM_24", 1e-6), ("PCM_32", 1e-8),
                                         ("FLOAT", 0.0)])
def test_wav_bit_depths_decode_to_the_same_waveform(params, subtype, tol):
  y = tone(0.2)
  decoded, truncated, _ = decode.decode_audio(wav_bytes(y, subtype=subtype),
                                          "a.wav", params)
  assert not truncated
  assert decoded.dtype == np.float32 and decoded.shape == y.shape
  assert np.abs(decoded - y).max() <= tol + 1e-9


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"),
                                         ("OGG", "VORBIS")])
def test_flac_and_ogg(params, fmt, subtype):
  y = tone(0.5)
  decoded, _, _ = decode.decode_audio(wav_bytes(y, subtype=subtype, fmt=fmt),
                                  "a." + fmt.lower(), params)
  assert decoded.shape == y.shape
  # Vorbis is lossy: compare energy, not samples.
  assert abs(np.std(decoded) - np.std(y)) < 0.02


def test_stereo_is_mixed_to_mono(params):
  left, right = tone(0.1, 440), tone(0.1, 660, seed=1)
  decoded, _, _ = decode.decode_audio(
      wav_bytes(np.stack([left, right], axis=1), subtype="FLOAT"), "s.wav",
      params)
  np.testing.assert_allclose(decoded, (left + right) / 2, atol=1e-6)


def test_other_rates_are_resampled_to_44100(params):
  y48 = tone(1.0, 1000, sr=48000)
  decoded, _, _ = decode.decode_audio(wav_bytes(y48, sr=48000), "r.wav", params)
  assert abs(decoded.size - SR) <= 2
  # The tone survives: its frequency is still 1 kHz.
  spectrum = np.abs(np.fft.rfft(decoded))
  assert abs(np.argmax(spectrum) * SR / decoded.size - 1000) < 3


def test_errors_name_the_file(params):
  with pytest.raises(decode.AudioError, match="x.wav: file is empty"):
    decode.decode_audio(b"", "x.wav", params)
  with pytest.raises(decode.AudioError, match="junk.wav: unreadable audio"):
    decode.decode_audio(b"not audio at all" * 10, "junk.wav", params)


def test_truncated_wav_is_flagged(params):
  data = wav_bytes(tone(1.0))
  decoded, truncated, _ = decode.decode_audio(data[:len(data) // 2], "t.wav",
                                          params)
  assert truncated and 0 < decoded.size < SR


def test_trim_matches_librosa_and_silence_trims_to_nothing(params):
  import librosa
  y = np.concatenate([np.zeros(SR // 2), tone(1.0), np.zeros(SR // 3)])
  y = y.astype(np.float32)
  expected, _ = librosa.effects.trim(y, top_db=60)
  np.testing.assert_array_equal(decode.trim_silence(y, params), expected)
  assert decode.trim_silence(np.zeros(SR, np.float32), params).size == 0
