"""Video metadata (duration, frame rate, size) from an MP4/MOV file's `moov` box.

Top-level box headers are read one ranged read each until `moov` is found (at the start of
"fast start" files, at the end of others); only `moov` itself is then read, never the media.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from syncd.storage.types import Store

_MAX_MOOV = 64 << 20


@dataclass(frozen=True, slots=True)
class VideoInfo:
    duration: float
    fps: float | None
    width: int | None
    height: int | None
    bytes_read: int


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes in data[start:end]."""
    end = len(data) if end is None else end
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        header = 8
        if size == 1:
            size = struct.unpack(">Q", data[at + 8 : at + 16])[0]
            header = 16
        elif size == 0:
            size = end - at
        if size < header:
            return
        yield kind, at + header, min(at + size, end)
        at += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    for found, payload, stop in _boxes(data, start, end):
        if found == kind:
            return payload, stop
    return None


def _timescale_duration(data: bytes, at: int) -> tuple[int, int]:
    """(timescale, duration) of an mvhd or mdhd payload."""
    if data[at] == 1:
        return struct.unpack(">IQ", data[at + 20 : at + 32])
    return struct.unpack(">II", data[at + 12 : at + 20])


def parse_moov(moov: bytes, bytes_read: int = 0) -> VideoInfo | None:
    header = _child(moov, 0, len(moov), b"mvhd")
    if header is None:
        return None
    timescale, duration = _timescale_duration(moov, header[0])
    info = VideoInfo(duration / timescale if timescale else 0.0, None, None, None, bytes_read)
    for kind, start, stop in _boxes(moov):
        if kind != b"trak":
            continue
        mdia = _child(moov, start, stop, b"mdia")
        hdlr = mdia and _child(moov, *mdia, b"hdlr")
        if not mdia or not hdlr or moov[hdlr[0] + 8 : hdlr[0] + 12] != b"vide":
            continue
        width = height = None
        tkhd = _child(moov, start, stop, b"tkhd")
        if tkhd is not None:
            at = tkhd[0] + (88 if moov[tkhd[0]] == 1 else 76)
            width, height = (v >> 16 for v in struct.unpack(">II", moov[at : at + 8]))
        fps = None
        mdhd = _child(moov, *mdia, b"mdhd")
        stbl = (minf := _child(moov, *mdia, b"minf")) and _child(moov, *minf, b"stbl")
        stts = stbl and _child(moov, *stbl, b"stts")
        if mdhd is not None and stts:
            scale, length = _timescale_duration(moov, mdhd[0])
            (entries,) = struct.unpack(">I", moov[stts[0] + 4 : stts[0] + 8])
            frames = sum(
                struct.unpack(">I", moov[stts[0] + 8 + 8 * n : stts[0] + 12 + 8 * n])[0]
                for n in range(entries)
            )
            if length and scale:
                fps = round(frames / (length / scale), 3)
        return VideoInfo(info.duration, fps, width, height, bytes_read)
    return info


def read_video(store: Store, key: str, size: int) -> VideoInfo | None:
    at = read = 0
    while at + 8 <= size:
        head = store.read_range(key, at, 16)
        read += len(head)
        if len(head) < 8:
            return None
        box_size, kind = struct.unpack(">I4s", head[:8])
        header = 8
        if box_size == 1:
            box_size, header = struct.unpack(">Q", head[8:16])[0], 16
        elif box_size == 0:
            box_size = size - at
        if box_size < header:
            return None
        if kind == b"moov":
            if box_size > _MAX_MOOV:
                return None
            moov = store.read_range(key, at + header, box_size - header)
            return parse_moov(moov, read + len(moov))
        at += box_size
    return None
