"""Performances as standard MIDI files: notes, and one file playing
several performances one after another (what the synthesizers render)."""

import dataclasses
import struct
from typing import List, Sequence, Tuple

TICKS_PER_SECOND = 960      # 480 ticks per quarter at 120 bpm
GAP_S = 2.5                 # silence between performances in one render
DRUMS = 9                   # the General MIDI percussion channel


@dataclasses.dataclass
class Note:
  start: float      # seconds from the performance's start
  duration: float
  key: int
  velocity: int


def _varlen(value: int) -> bytes:
  out = [value & 0x7F]
  value >>= 7
  while value:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  return bytes(reversed(out))


def midi_file(events: Sequence[Tuple[int, bytes]]) -> bytes:
  """A format-0 standard MIDI file of (tick, message) events, 120 bpm."""
  track = b"\x00\xff\x51\x03" + (500000).to_bytes(3, "big")
  last = 0
  for tick, message in sorted(events, key=lambda e: e[0]):
    track += _varlen(tick - last) + message
    last = tick
  track += b"\x00\xff\x2f\x00"
  return (b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_SECOND // 2) +
          b"MTrk" + struct.pack(">I", len(track)) + track)


def midi_score(performances) -> Tuple[bytes, List[Tuple[float, float]]]:
  """One MIDI file playing (program, channel, notes) one after another;
  returns it and each performance's (start, end) in seconds."""
  events, spans, t = [], [], 0.5
  for program, channel, notes in performances:
    if channel != DRUMS:
      events.append((int(t * TICKS_PER_SECOND), bytes([0xC0 | channel,
                                                       program])))
    end = t
    for note in notes:
      on = int((t + note.start) * TICKS_PER_SECOND) + 1
      off = on + max(1, int(note.duration * TICKS_PER_SECOND))
      events.append((on, bytes([0x90 | channel, note.key, note.velocity])))
      events.append((off, bytes([0x80 | channel, note.key, 0])))
      end = max(end, off / TICKS_PER_SECOND)
    # The release rings on; everything is silenced before the next one.
    stop = end + 1.2
    events.append((int(stop * TICKS_PER_SECOND),
                   bytes([0xB0 | channel, 120, 0])))
    spans.append((t, stop))
    t = stop + GAP_S
  return midi_file(events), spans
