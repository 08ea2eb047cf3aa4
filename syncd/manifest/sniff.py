"""What a file is and how big its pictures are, from its first bytes (a ranged read).

DICOM Part 10 has `DICM` at offset 128; NIfTI-1 and NIfTI-2 start with their header size
(348 or 540, either byte order), also inside gzip (`.nii.gz`), of which only the first block
is inflated. Image sizes come from the PNG IHDR, JPEG SOF, GIF, BMP and WebP headers.
"""

from __future__ import annotations

import struct
import zlib

from syncd.media import MediaKind

HEAD_BYTES = 4096


def _nifti(head: bytes) -> bool:
    if len(head) < 4:
        return False
    for order in "<>":
        (size,) = struct.unpack(f"{order}i", head[:4])
        if size == 348 and head[344:347] in (b"n+1", b"ni1"):
            return True
        if size == 540 and head[4:7] in (b"n+2", b"ni2"):
            return True
    return False


def _gunzip_head(head: bytes, limit: int = 1024) -> bytes:
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, limit)
    except zlib.error:
        return b""


def sniff_kind(head: bytes) -> MediaKind | None:
    """The media kind the first bytes show, or None when they show nothing known."""
    if head[128:132] == b"DICM":
        return MediaKind.DICOM
    if head[:2] == b"\x1f\x8b":
        return MediaKind.NIFTI if _nifti(_gunzip_head(head)) else None
    if _nifti(head):
        return MediaKind.NIFTI
    if head[:8] == b"\x89PNG\r\n\x1a\n" or head[:3] == b"\xff\xd8\xff" or head[:4] == b"GIF8":
        return MediaKind.IMAGE
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return MediaKind.IMAGE
    if (head[:4] == b"RIFF" and head[8:12] == b"WAVE") or head[:3] == b"ID3" or head[:4] == b"fLaC":
        return MediaKind.AUDIO
    if head[4:8] == b"ftyp" or head[:4] == b"\x1aE\xdf\xa3":
        return MediaKind.VIDEO
    if head[:5] == b"%PDF-":
        return MediaKind.PDF
    return None


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header bytes, or None."""
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    if head[:4] == b"GIF8":
        width, height = struct.unpack("<HH", head[6:10])
        return int(width), int(height)
    if head[:2] == b"BM" and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return int(width), abs(int(height))
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        chunk = head[12:16]
        if chunk == b"VP8 " and len(head) >= 30:
            width, height = struct.unpack("<HH", head[26:30])
            return int(width) & 0x3FFF, int(height) & 0x3FFF
        if chunk == b"VP8L" and len(head) >= 25:
            bits = int.from_bytes(head[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8X" and len(head) >= 30:
            return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(
                head[27:30], "little"
            ) + 1
    if head[:2] == b"\xff\xd8":
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        (length,) = struct.unpack(">H", head[at + 2 : at + 4])
        if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return int(width), int(height)
        at += 2 + length
    return None
