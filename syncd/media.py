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


_BY_EXTENSION: dict[str, str] = {}
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
        _BY_EXTENSION[_ext] = _kind.value

_BY_MIME_PREFIX = (
    ("image/", MediaKind.IMAGE.value),
    ("video/", MediaKind.VIDEO.value),
    ("audio/", MediaKind.AUDIO.value),
    ("application/pdf", MediaKind.PDF.value),
    ("application/dicom", MediaKind.DICOM.value),
    ("text/", MediaKind.TEXT.value),
)

#: Extensions seen so far, as written (`JPG` and `jpg` both land here): every listed object
#: is classified, and a bucket holds few distinct extensions.
_SEEN: dict[str, str | None] = {}


def media_kind(key: str, content_type: str | None = None) -> str:
    """The `MediaKind` value of an object, as the catalog stores it.

    By extension first (content types in buckets are often generic), then by content type.
    """
    dot = key.rfind(".")
    if dot > key.rfind("/"):
        extension = key[dot + 1 :]
        kind = _SEEN.get(extension)
        if kind is None and extension not in _SEEN:
            lowered = extension.lower()
            kind = _BY_EXTENSION.get(lowered)
            if kind is None and lowered == "gz" and key[-7:].lower() == ".nii.gz":
                kind = MediaKind.NIFTI.value
            elif lowered != "gz" and len(_SEEN) < 10_000:
                _SEEN[extension] = kind
        if kind is not None:
            return kind
    if content_type:
        lowered = content_type.lower()
        for prefix, value in _BY_MIME_PREFIX:
            if lowered.startswith(prefix):
                return value
    return MediaKind.OTHER.value
