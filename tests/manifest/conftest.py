"""A small labeled-data folder synced into a SQLite catalog, with its config."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from syncd.catalog import Catalog, open_catalog
from syncd.config import Config, parse_config
from syncd.demo import dicom, nifti, png, write_files
from syncd.reconcile import reconcile
from syncd.storage import open_store

CONFIG = """\
catalog: sqlite:///catalog.db
integrations: [{name: disk, provider: local}]
drivers: [{name: lab, integration: disk, bucket: data}]
datasets: [{name: lab, drivers: [lab]}]
manifest:
  image_sequences: ["drives/*"]
  image_groups: ["inspections/*"]
  url_template: "https://labeling.s3.eu-west-1.amazonaws.com/{key}"
"""

FILES: dict[str, bytes] = {
    "images/cat photo.png": png(4, 3, (1, 2, 3)),
    "images/naïve+plus.png": png(2, 2, (9, 9, 9)),
    "drives/d1/frame10.png": png(2, 2, (0, 0, 0)),
    "drives/d1/frame2.png": png(2, 2, (0, 0, 0)),
    "drives/d1/frame1.png": png(2, 2, (0, 0, 0)),
    "inspections/car 7/side.png": png(2, 2, (0, 0, 0)),
    "inspections/car 7/front.png": png(2, 2, (0, 0, 0)),
    "scans/ct/IM2.dcm": dicom(2),
    "scans/ct/IM10.dcm": dicom(10),
    "scans/ct/IM1.dcm": dicom(1),
    "volumes/brain.nii.gz": nifti(),
    "clips/run.mp4": b"\x00\x00\x00\x18ftypisom" + bytes(20),
    "audio/note.wav": b"RIFF\x00\x00\x00\x00WAVEfmt ",
    "docs/report.pdf": b"%PDF-1.4\n",
    "docs/notes.txt": b"hello",
    "misc/blob.bin": b"\x00\x01\x02",
    "misc/NOEXT_DICOM": dicom(5),
}


def sync_config(folder: Path, config: Config) -> Catalog:
    catalog = open_catalog(config.catalog_url())
    for dataset, driver in config.pairs():
        integration = config.integration(driver.integration)
        store = open_store(driver, integration, config.base_dir)
        reconcile(catalog, store, dataset=dataset.name, driver=driver, provider="local")
    return catalog


@pytest.fixture
def lab(tmp_path: Path) -> tuple[Config, Catalog]:
    write_files(tmp_path / "data", FILES)
    (tmp_path / "syncd.yaml").write_text(CONFIG)
    config = parse_config(CONFIG, "syncd.yaml", base_dir=tmp_path)
    return config, sync_config(tmp_path, config)


def dicom_file(series_uid: str, instance: int, description: str, pixels: int = 200_000) -> bytes:
    """A real DICOM file made with pydicom, with `pixels` bytes of pixel data."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = pydicom.uid.UID("1.2.840.10008.5.1.4.1.1.2")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = "1.2.3"
    ds.InstanceNumber = instance
    ds.SeriesDescription = description
    ds.Modality = "CT"
    side = int((pixels // 2) ** 0.5)
    ds.Rows = ds.Columns = side
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.SamplesPerPixel = 1
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(side * side * 2)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _box(kind: bytes, payload: bytes) -> bytes:
    import struct

    return struct.pack(">I", 8 + len(payload)) + kind + payload


def mp4_file(seconds: int, fps: int, width: int, height: int, media_bytes: int = 1 << 20) -> bytes:
    """An ISO BMFF file (ftyp, mdat, then moov as non-fast-start files have it) whose moov
    describes one video track of `seconds` at `fps` frames per second."""
    import struct

    timescale = 1000
    mvhd = bytes(4) + struct.pack(">IIII", 0, 0, timescale, seconds * timescale) + bytes(80)
    tkhd = (
        b"\x00\x00\x00\x03"
        + struct.pack(">IIIII", 0, 0, 1, 0, seconds * timescale)
        + bytes(8)
        + bytes(8)
        + bytes(36)
        + struct.pack(">II", width << 16, height << 16)
    )
    mdhd = bytes(4) + struct.pack(">IIII", 0, 0, fps * 100, seconds * fps * 100) + bytes(4)
    hdlr = bytes(4) + bytes(4) + b"vide" + bytes(12) + b"video\x00"
    stts = bytes(4) + struct.pack(">III", 1, seconds * fps, 100)
    stbl = _box(b"stbl", _box(b"stts", stts))
    mdia = _box(b"mdia", _box(b"mdhd", mdhd) + _box(b"hdlr", hdlr) + _box(b"minf", stbl))
    trak = _box(b"trak", _box(b"tkhd", tkhd) + mdia)
    moov = _box(b"moov", _box(b"mvhd", mvhd) + trak)
    ftyp = _box(b"ftyp", b"isom" + struct.pack(">I", 512) + b"isomiso2")
    return ftyp + _box(b"mdat", bytes(media_bytes)) + moov


def wav_file(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(int(seconds * rate) * 2 * channels))
    return buffer.getvalue()
