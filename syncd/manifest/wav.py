"""Audio metadata from a RIFF/WAVE header (the first few KB): rate, channels, depth, length."""

from __future__ import annotations

import struct
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class AudioInfo:
    duration: float
    sample_rate: int
    num_channels: int
    bit_depth: int
    codec: str


_CODECS = {1: "pcm_s", 3: "pcm_f", 6: "alaw", 7: "mulaw", 0xFFFE: "pcm_s"}


def parse_wav(head: bytes, size: int) -> AudioInfo | None:
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    at = 12
    fmt: tuple[int, int, int, int, int] | None = None
    while at + 8 <= len(head):
        kind, length = head[at : at + 4], struct.unpack("<I", head[at + 4 : at + 8])[0]
        if kind == b"fmt " and at + 24 <= len(head):
            code, channels, rate, byte_rate, _, bits = struct.unpack(
                "<HHIIHH", head[at + 8 : at + 24]
            )
            fmt = (code, channels, rate, byte_rate, bits)
        elif kind == b"data" and fmt is not None:
            code, channels, rate, byte_rate, bits = fmt
            data = min(length, size - at - 8)
            codec = _CODECS.get(code, f"wav_{code}")
            if codec.startswith("pcm"):
                codec = f"{codec}{bits}le"
            return AudioInfo(data / byte_rate if byte_rate else 0.0, rate, channels, bits, codec)
        at += 8 + length + (length & 1)
    return None
