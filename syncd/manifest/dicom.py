"""A DICOM file's series identity from its header, read through ranged reads.

Reads grow (4 KiB, 64 KiB, 1 MiB) until pydicom can parse every element before the pixel
data; the pixel data itself is never fetched.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from syncd.manifest.sniff import HEAD_BYTES
from syncd.storage.types import Store

_STEPS = (HEAD_BYTES, 65536, 1 << 20)
_TAGS = ["SeriesInstanceUID", "InstanceNumber", "SeriesDescription", "Modality"]


@dataclass(frozen=True, slots=True)
class DicomHeader:
    series_uid: str | None
    instance_number: int | None
    description: str | None
    bytes_read: int


def read_header(store: Store, key: str, first: bytes | None = None) -> DicomHeader:
    """`first` is the object's first 4 KiB when the caller already holds them.

    `bytes_read` counts only what this call fetched."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    head = b""
    fetched = 0
    for size in _STEPS:
        if first is not None and size == _STEPS[0]:
            head = first[:size]
        else:
            head = store.read_range(key, 0, size)
            fetched += len(head)
        try:
            dataset = pydicom.dcmread(
                io.BytesIO(head), stop_before_pixels=True, specific_tags=_TAGS, force=True
            )
            uid = dataset.get("SeriesInstanceUID")
        except (InvalidDicomError, EOFError, OSError, ValueError, struct_error()):
            uid = None
            dataset = None
        if dataset is not None and (uid is not None or len(head) < size):
            number = dataset.get("InstanceNumber")
            description = dataset.get("SeriesDescription")
            return DicomHeader(
                str(uid) if uid else None,
                int(number) if number not in (None, "") else None,
                str(description) if description else None,
                fetched,
            )
        if len(head) < size:
            break
    return DicomHeader(None, None, None, fetched)


def struct_error() -> type[Exception]:
    import struct

    return struct.error
