"""The media kind of an object from its name and content type (no I/O)."""

from __future__ import annotations

from enum import StrEnum


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    PDF = "pdf"
    TEXT = "text"
    DICOM = "dicom"
    NIFTI = "nifti"
    OTHER = "other"


_BY_EXTENSION: dict[str, MediaKind] = {}
for _kind, _extensions in (
    (MediaKind.IMAGE, "jpg jpeg png gif bmp tif tiff webp heic heif avif jp2 svg"),
    (MediaKind.VIDEO, "mp4 m4v mov avi mkv webm mpg mpeg wmv flv 3gp ts mts"),
    (MediaKind.AUDIO, "mp3 wav flac aac m4a ogg oga opus wma aiff aif"),
    (MediaKind.PDF, "pdf"),
    (MediaKind.TEXT, "txt md csv tsv json jsonl html htm xml"),
    (MediaKind.DICOM, "dcm dicom"),
    (MediaKind.NIFTI, "nii"),
):
    for _ext in _extensions.split():
        _BY_EXTENSION[_ext] = _kind

_BY_MIME_PREFIX = (
    ("image/", MediaKind.IMAGE),
    ("video/", MediaKind.VIDEO),
    ("audio/", MediaKind.AUDIO),
    ("application/pdf", MediaKind.PDF),
    ("application/dicom", MediaKind.DICOM),
    ("text/", MediaKind.TEXT),
)


def media_kind(key: str, content_type: str | None = None) -> MediaKind:
    """Classify by extension first (content types in buckets are often generic), then type."""
    dot = key.rfind(".")
    if dot > key.rfind("/"):
        extension = key[dot + 1 :].lower()
        if extension == "gz" and key[-7:].lower() == ".nii.gz":
            return MediaKind.NIFTI
        kind = _BY_EXTENSION.get(extension)
        if kind is not None:
            return kind
    if content_type:
        lowered = content_type.lower()
        for prefix, kind in _BY_MIME_PREFIX:
            if lowered.startswith(prefix):
                return kind
    return MediaKind.OTHER
