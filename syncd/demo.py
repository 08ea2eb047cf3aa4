"""The sample folder `syncd demo` syncs: real (tiny) PNG, MP4, DICOM and NIfTI files.

The files are written byte by byte so the demo needs no imaging libraries: PNG chunks with
CRCs, an MP4 `ftyp` box, DICOM Part 10 files (preamble, `DICM`, file meta, explicit VR little
endian) forming one series, and a gzipped NIfTI-1 volume with its 348-byte header.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

DEMO_CONFIG = """\
# syncd demo: one local folder synced into a SQLite catalog.
catalog: sqlite:///.syncd/catalog.db
integrations:
  - name: disk
    provider: local
drivers:
  - name: samples
    integration: disk
    bucket: data
datasets:
  - name: demo
    drivers: [samples]
manifest:
  image_sequences: ["sequences/*"]
"""

_STUDY_UID = "1.2.826.0.1.3680043.10.1234.1"
_SERIES_UID = "1.2.826.0.1.3680043.10.1234.1.2"
_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body))
            + kind
            + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
        )

    row = b"\x00" + bytes(rgb) * width
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def mp4() -> bytes:
    ftyp = struct.pack(">I", 24) + b"ftypisom" + struct.pack(">I", 512) + b"isomiso2"
    payload = bytes(256)
    return ftyp + struct.pack(">I", 8 + len(payload)) + b"mdat" + payload


def _element(group: int, element: int, vr: str, value: bytes) -> bytes:
    if len(value) % 2:
        value += b"\x00" if vr in ("UI", "OB") else b" "
    head = struct.pack("<HH", group, element) + vr.encode()
    if vr in ("OB", "OW", "OF", "SQ", "UT", "UN"):
        return head + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def dicom(instance: int, description: str = "Demo CT") -> bytes:
    sop_uid = f"{_SERIES_UID}.{instance}"
    meta_body = b"".join(
        [
            _element(0x0002, 0x0001, "OB", b"\x00\x01"),
            _element(0x0002, 0x0002, "UI", _CT_IMAGE_STORAGE.encode()),
            _element(0x0002, 0x0003, "UI", sop_uid.encode()),
            _element(0x0002, 0x0010, "UI", _EXPLICIT_LE.encode()),
        ]
    )
    meta = _element(0x0002, 0x0000, "UL", struct.pack("<I", len(meta_body))) + meta_body
    rows = cols = 8
    body = b"".join(
        [
            _element(0x0008, 0x0016, "UI", _CT_IMAGE_STORAGE.encode()),
            _element(0x0008, 0x0018, "UI", sop_uid.encode()),
            _element(0x0008, 0x0060, "CS", b"CT"),
            _element(0x0008, 0x103E, "LO", description.encode()),
            _element(0x0010, 0x0010, "PN", b"Demo^Patient"),
            _element(0x0020, 0x000D, "UI", _STUDY_UID.encode()),
            _element(0x0020, 0x000E, "UI", _SERIES_UID.encode()),
            _element(0x0020, 0x0013, "IS", str(instance).encode()),
            _element(0x0028, 0x0002, "US", struct.pack("<H", 1)),
            _element(0x0028, 0x0004, "CS", b"MONOCHROME2"),
            _element(0x0028, 0x0010, "US", struct.pack("<H", rows)),
            _element(0x0028, 0x0011, "US", struct.pack("<H", cols)),
            _element(0x0028, 0x0100, "US", struct.pack("<H", 16)),
            _element(0x0028, 0x0101, "US", struct.pack("<H", 16)),
            _element(0x0028, 0x0102, "US", struct.pack("<H", 15)),
            _element(0x0028, 0x0103, "US", struct.pack("<H", 0)),
            _element(0x7FE0, 0x0010, "OW", bytes(range(256))[: rows * cols * 2]),
        ]
    )
    return bytes(128) + b"DICM" + meta + body


def nifti(shape: tuple[int, int, int] = (4, 4, 4)) -> bytes:
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *shape, 1, 1, 1, 1)
    struct.pack_into("<hh", header, 70, 2, 8)  # uint8 voxels
    struct.pack_into("<8f", header, 76, 1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0)
    struct.pack_into("<ff", header, 108, 352.0, 1.0)  # vox_offset, scl_slope
    header[344:348] = b"n+1\x00"
    voxels = bytes(n % 256 for n in range(shape[0] * shape[1] * shape[2]))
    return gzip.compress(bytes(header) + bytes(4) + voxels, mtime=0)


def write_samples(root: Path) -> list[Path]:
    """Write the sample files under `root` and return their paths."""
    files: dict[str, bytes] = {
        "images/cat.png": png(16, 12, (200, 120, 40)),
        "images/dog.png": png(12, 16, (60, 90, 200)),
        "images/shelter scan #2.png": png(8, 8, (10, 200, 10)),
        "sequences/drive-01/frame1.png": png(8, 8, (0, 0, 0)),
        "sequences/drive-01/frame2.png": png(8, 8, (40, 40, 40)),
        "sequences/drive-01/frame10.png": png(8, 8, (80, 80, 80)),
        "video/intersection.mp4": mp4(),
        "dicom/chest-ct/IM0001.dcm": dicom(1),
        "dicom/chest-ct/IM0002.dcm": dicom(2),
        "dicom/chest-ct/IM0003.dcm": dicom(3),
        "nifti/brain.nii.gz": nifti(),
        # A partial upload: skipped by the default rule, never synced.
        "video/upload.mp4.part": mp4()[:40],
    }
    return write_files(root, files)


def write_files(root: Path, files: dict[str, bytes]) -> list[Path]:
    """Write each key's bytes under `root`, folders included; return the paths."""
    written = []
    for key, data in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return written


def prepare(folder: Path) -> Path:
    """Create the demo folder (samples and config) and return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    write_samples(folder / "data")
    config = folder / "syncd.yaml"
    config.write_text(DEMO_CONFIG, encoding="utf-8")
    return config
