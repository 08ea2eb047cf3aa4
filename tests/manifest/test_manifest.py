"""Manifests from a synced dataset: golden files per format, schemas, grouping, probes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from syncd.catalog import Catalog, ItemState, ItemWrite, Op, open_catalog
from syncd.config import Config, ManifestSettings, parse_config
from syncd.demo import write_files
from syncd.manifest import cvat
from syncd.manifest.build import build_manifest
from syncd.manifest.entries import NO_SERIES, NOT_MEDIA, TO_VERIFY, EntryBuilder, natural_key
from syncd.manifest.sniff import image_size, sniff_kind
from syncd.media import MediaKind
from syncd.storage.local import LocalStore
from tests.manifest.conftest import CONFIG, dicom_file, sync_config

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SYNCD_UPDATE_GOLDEN") == "1"


def schema(name: str) -> dict[str, Any]:
    text = resources.files("syncd.manifest").joinpath(f"schemas/{name}").read_text()
    return json.loads(text)  # type: ignore[no-any-return]


def make(config: Config, catalog: Catalog, fmt: str, out: Path, **kw: Any) -> dict[str, Any]:
    return build_manifest(catalog, config, "lab", fmt, str(out), **kw)


def check_golden(path: Path, name: str) -> None:
    golden = GOLDEN / name
    if UPDATE:
        golden.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    assert path.read_text(encoding="utf-8") == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("fmt", "golden"),
    [
        ("encord-json", "lab.encord.json"),
        ("encord-csv", "lab.encord.csv"),
        ("labelbox-ndjson", "lab.labelbox.ndjson"),
        ("cvat-manifest", "lab.cvat.jsonl"),
    ],
)
def test_golden_files(lab: tuple[Config, Catalog], tmp_path: Path, fmt: str, golden: str) -> None:
    config, catalog = lab
    out = tmp_path / golden
    summary = make(config, catalog, fmt, out, probe=fmt == "encord-json")
    check_golden(out, golden)
    assert summary["skipped"][NOT_MEDIA] == 1  # misc/blob.bin


def test_encord_json_is_valid_and_grouped(lab: tuple[Config, Catalog], tmp_path: Path) -> None:
    config, catalog = lab
    out = tmp_path / "m.json"
    summary = make(config, catalog, "encord-json", out)
    document = json.loads(out.read_text())
    jsonschema.validate(document, schema("encord-json.schema.json"))
    groups = {g["title"]: g for g in document["image_groups"]}
    sequence = groups["drives/d1"]
    assert sequence["createVideo"] is True
    assert [sequence[f"objectUrl_{n}"].rsplit("/", 1)[1] for n in range(3)] == [
        "frame1.png",
        "frame2.png",
        "frame10.png",
    ]
    assert groups["inspections/car 7"]["createVideo"] is False
    assert "inspections/car%207/front.png" in groups["inspections/car 7"]["objectUrl_0"]
    (series,) = [s for s in document["dicom_series"] if s["title"] == "scans/ct"]
    assert [series[f"objectUrl_{n}"].rsplit("/", 1)[1] for n in range(3)] == [
        "IM1.dcm",
        "IM2.dcm",
        "IM10.dcm",
    ]
    urls = [i["objectUrl"] for i in document["images"]]
    assert "https://labeling.s3.eu-west-1.amazonaws.com/images/cat%20photo.png" in urls
    assert "https://labeling.s3.eu-west-1.amazonaws.com/images/na%C3%AFve%2Bplus.png" in urls
    assert {s: len(document[s]) for s in ("videos", "audio", "pdf", "text", "nifti")} == {
        "videos": 1,
        "audio": 1,
        "pdf": 1,
        "text": 1,
        "nifti": 1,
    }
    assert document["skip_duplicate_urls"] is True
    # The extension-less DICOM file was recognised by its bytes.
    assert any(s["objectUrl_0"].endswith("misc/NOEXT_DICOM") for s in document["dicom_series"])
    assert summary["entries"]["image_groups"] == 2


def test_encord_csv_round_trips(lab: tuple[Config, Catalog], tmp_path: Path) -> None:
    config, catalog = lab
    out = tmp_path / "m.csv"
    make(config, catalog, "encord-csv", out)
    rows = list(csv.reader(io.StringIO(out.read_text())))
    headers = [r for r in rows if r[0] == "ObjectUrl"]
    # Singles stream in key order; groups follow once every member has been seen.
    assert [h[1] for h in headers] == [
        "Video title",
        "Image title",
        "Dicom title",
        "Image group title",
    ]
    assert all(" " not in r[0] for r in rows)
    assert [
        "https://labeling.s3.eu-west-1.amazonaws.com/images/cat%20photo.png",
        "images/cat photo.png",
    ] in rows


def test_labelbox_rows_match_the_schema_and_keys_are_stable(
    lab: tuple[Config, Catalog], tmp_path: Path
) -> None:
    config, catalog = lab
    first, second = tmp_path / "a.ndjson", tmp_path / "b.ndjson"
    make(config, catalog, "labelbox-ndjson", first)
    make(config, catalog, "labelbox-ndjson", second)
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    for row in rows:
        jsonschema.validate(row, schema("labelbox-ndjson.schema.json"))
    # Labelbox's own SDK check of data rows (the client is only used to upload local files).
    from labelbox.schema.internal.descriptor_file_creator import DescriptorFileCreator

    assert len(DescriptorFileCreator(None)._prepare_items_for_upload(rows)) == len(rows)
    assert len({r["global_key"] for r in rows}) == len(rows)
    assert first.read_text() == second.read_text()


def test_jsonl_has_every_catalog_field(lab: tuple[Config, Catalog], tmp_path: Path) -> None:
    config, catalog = lab
    out = tmp_path / "m.jsonl"
    make(config, catalog, "jsonl", out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 16
    assert {
        "key",
        "size",
        "mtime",
        "etag",
        "version",
        "content_type",
        "media_kind",
        "change_id",
        "url",
        "driver",
        "dataset",
    } <= set(rows[0])


def test_an_empty_dataset_gives_empty_sections(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    config = parse_config(CONFIG, "syncd.yaml", base_dir=tmp_path)
    catalog = sync_config(tmp_path, config)
    out = tmp_path / "empty.json"
    make(config, catalog, "encord-json", out)
    check_golden(out, "empty.encord.json")
    csv_out = tmp_path / "empty.csv"
    make(config, catalog, "encord-csv", csv_out)
    assert csv_out.read_text() == ""


def test_files_split_at_the_configured_count(lab: tuple[Config, Catalog], tmp_path: Path) -> None:
    config, catalog = lab
    split = config.model_copy(
        update={"manifest": config.manifest.model_copy(update={"max_items_per_file": 4})}
    )
    summary = make(split, catalog, "encord-json", tmp_path / "part.json")
    assert len(summary["files"]) == 3
    total = 0
    for path in summary["files"]:
        document = json.loads(Path(path).read_text())
        jsonschema.validate(document, schema("encord-json.schema.json"))
        total += sum(len(v) for v in document.values() if isinstance(v, list))
    assert total == sum(summary["entries"].values()) == 11


def test_changed_since_lists_only_later_changes(
    lab: tuple[Config, Catalog], tmp_path: Path
) -> None:
    config, catalog = lab
    mark = catalog.last_change_id()
    write_files(tmp_path / "data", {"images/new one.png": b"\x89PNG\r\n\x1a\n"})
    (tmp_path / "data" / "docs/notes.txt").unlink()
    sync_config(tmp_path, config)
    out = tmp_path / "inc.jsonl"
    make(config, catalog, "jsonl", out, changed_since=mark)
    assert [json.loads(line)["key"] for line in out.read_text().splitlines()] == [
        "images/new one.png"
    ]


class CountingStore(LocalStore):
    """A local store that counts the reads of each key and the bytes they returned."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def read_range(self, key: str, start: int, length: int) -> bytes:
        data = super().read_range(key, start, length)
        self.read[key] = self.read.get(key, 0) + len(data)
        self.calls[key] = self.calls.get(key, 0) + 1
        return data


def test_objects_without_extension_are_fetched_once_to_sniff_and_probe(tmp_path: Path) -> None:
    from syncd.demo import png

    files = {
        "misc/SCAN": dicom_file("1.2.3.400", 3, "Axial"),
        "misc/PHOTO": png(640, 480, (10, 20, 30)),
    }
    write_files(tmp_path / "data", files)
    config = parse_config(CONFIG, "syncd.yaml", base_dir=tmp_path)
    catalog = sync_config(tmp_path, config)
    store = CountingStore(tmp_path / "data")
    builder = EntryBuilder(ManifestSettings(), lambda i: i.key, lambda i: store, probe=True)
    entries = {e.title: e for e in builder.entries(catalog.items("lab"))}
    photo = entries["misc/PHOTO"].members[0]
    assert (photo.width, photo.height) == (640, 480)
    assert "Axial [1.2.3.400]" in entries
    assert store.calls == {"misc/SCAN": 1, "misc/PHOTO": 1}
    assert builder.counts.probe_bytes == store.read["misc/SCAN"] + store.read["misc/PHOTO"]


def test_dicom_series_by_header_with_ranged_reads(tmp_path: Path) -> None:
    files = {
        "mixed/a1.dcm": dicom_file("1.2.3.100", 2, "Axial"),
        "mixed/a2.dcm": dicom_file("1.2.3.100", 1, "Axial"),
        "mixed/b1.dcm": dicom_file("1.2.3.200", 1, "Sagittal"),
        "part1/x.dcm": dicom_file("1.2.3.300", 10, "Coronal"),
        "part2/y.dcm": dicom_file("1.2.3.300", 9, "Coronal"),
    }
    write_files(tmp_path / "data", files)
    config = parse_config(CONFIG, "syncd.yaml", base_dir=tmp_path)
    catalog = sync_config(tmp_path, config)
    store = CountingStore(tmp_path / "data")
    builder = EntryBuilder(ManifestSettings(), lambda i: i.key, lambda i: store, probe=True)
    series = {
        e.title: [m.item.key for m in e.members] for e in builder.entries(catalog.items("lab"))
    }
    assert series == {
        "Axial [1.2.3.100]": ["mixed/a2.dcm", "mixed/a1.dcm"],
        "Sagittal [1.2.3.200]": ["mixed/b1.dcm"],
        "Coronal [1.2.3.300]": ["part2/y.dcm", "part1/x.dcm"],
    }
    for key, data in files.items():
        assert store.read[key] <= 4096 < len(data) / 40


def test_sniffing_by_magic_bytes() -> None:
    from syncd.demo import dicom, mp4, nifti, png

    assert sniff_kind(dicom(1)[:4096]) is MediaKind.DICOM
    assert sniff_kind(nifti()[:4096]) is MediaKind.NIFTI
    assert sniff_kind(png(3, 2, (0, 0, 0))) is MediaKind.IMAGE
    assert sniff_kind(mp4()) is MediaKind.VIDEO
    assert sniff_kind(b"plain words") is None
    assert image_size(png(640, 480, (0, 0, 0))) == (640, 480)
    assert natural_key("frame2") < natural_key("frame10")


def test_s3_urls_public_signed_and_multi_region(tmp_path: Path, moto: Any) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    bucket = f"m{os.getpid()}x{len(str(tmp_path))}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="img/a b.png", Body=b"\x89PNG\r\n\x1a\n")
    text = f"""\
catalog: sqlite:///c.db
integrations:
  - {{name: aws, provider: s3, endpoint_url: "{moto.url}", region: us-east-1,
     access_key_id: env:AWS_ACCESS_KEY_ID, secret_access_key: env:AWS_SECRET_ACCESS_KEY}}
drivers: [{{name: lab, integration: aws, bucket: {bucket}}}]
datasets: [{{name: lab, drivers: [lab]}}]
"""
    config = parse_config(text, "s.yaml", base_dir=tmp_path)
    catalog = open_catalog(config.catalog_url())
    from syncd.reconcile import reconcile
    from syncd.storage import open_store

    driver = config.drivers[0]
    reconcile(
        catalog,
        open_store(driver, config.integrations[0], tmp_path),
        dataset="lab",
        driver=driver,
        provider="s3",
    )
    out = tmp_path / "o.json"
    make(config, catalog, "encord-json", out)
    assert (
        json.loads(out.read_text())["images"][0]["objectUrl"]
        == f"{moto.url}/{bucket}/img/a%20b.png"
    )
    make(config, catalog, "encord-json", out, signed_ttl=600)
    signed = json.loads(out.read_text())["images"][0]["objectUrl"]
    assert "X-Amz-Signature=" in signed
    import urllib.request

    with urllib.request.urlopen(signed, timeout=10) as response:
        assert response.read() == b"\x89PNG\r\n\x1a\n"
    mrap = config.model_copy(
        update={"manifest": ManifestSettings(s3_multi_region_alias="mfzwi23gnjvgw.mrap")}
    )
    make(mrap, catalog, "encord-json", out)
    assert json.loads(out.read_text())["images"][0]["objectUrl"] == (
        "https://mfzwi23gnjvgw.mrap.accesspoint.s3-global.amazonaws.com/img/a%20b.png"
    )


def test_cli_manifest_to_stdout_and_unknown_dataset(
    lab: tuple[Config, Catalog], tmp_path: Path
) -> None:
    env = {**os.environ, "SYNCD_CONFIG": "", "SYNCD_CATALOG_URL": ""}
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "manifest", "lab", "--format", "encord-json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(done.stdout)["images"]) == 2
    bad = subprocess.run(
        [sys.executable, "-m", "syncd", "manifest", "nope", "--format", "jsonl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "unknown dataset 'nope'" in bad.stderr


def test_group_pattern_and_client_metadata(tmp_path: Path) -> None:
    write_files(
        tmp_path / "data",
        {
            "cases/case-7-left.png": b"\x89PNG\r\n\x1a\n",
            "cases/case-7-right.png": b"\x89PNG\r\n\x1a\n",
            "cases/case-12-left.png": b"\x89PNG\r\n\x1a\n",
        },
    )
    text = CONFIG.replace(
        '  image_groups: ["inspections/*"]',
        '  image_groups: ["cases"]\n  group_pattern: "(?P<group>case-\\\\d+)"\n'
        "  client_metadata: {source: syncd, batch: 3}",
    )
    config = parse_config(text, "syncd.yaml", base_dir=tmp_path)
    catalog = sync_config(tmp_path, config)
    out = tmp_path / "g.json"
    make(config, catalog, "encord-json", out)
    groups = {g["title"]: g for g in json.loads(out.read_text())["image_groups"]}
    assert sorted(groups) == ["case-12", "case-7"]
    assert groups["case-7"]["objectUrl_1"].endswith("case-7-right.png")
    assert groups["case-7"]["clientMetadata"] == {"source": "syncd", "batch": 3}


def test_probe_measures_video_and_audio_with_ranged_reads(tmp_path: Path) -> None:
    from tests.manifest.conftest import mp4_file, wav_file

    video = mp4_file(seconds=4, fps=25, width=640, height=360)
    write_files(tmp_path / "data", {"clips/road.mp4": video, "audio/call.wav": wav_file(2.5)})
    config = parse_config(CONFIG, "syncd.yaml", base_dir=tmp_path)
    catalog = sync_config(tmp_path, config)
    out = tmp_path / "p.json"
    summary = make(config, catalog, "encord-json", out, probe=True)
    document = json.loads(out.read_text())
    jsonschema.validate(document, schema("encord-json.schema.json"))
    assert document["videos"][0]["videoMetadata"] == {
        "fps": 25.0,
        "duration": 4.0,
        "width": 640,
        "height": 360,
        "file_size": len(video),
        "mime_type": "video/mp4",
    }
    assert document["audio"][0]["audioMetadata"] == {
        "duration": 2.5,
        "file_size": 80044,
        "mime_type": "audio/x-wav",
        "sample_rate": 16000,
        "bit_depth": 16,
        "codec": "pcm_s16le",
        "num_channels": 1,
    }
    assert summary["probe_bytes"] < len(video) / 100


def test_dicom_decoys_belong_to_no_series(tmp_path: Path) -> None:
    """Files in a DICOM folder that have no SeriesInstanceUID are left out and counted."""
    real = {f"study/s1/IM{n}.dcm": dicom_file("1.2.3.900", n, "Axial") for n in (1, 2, 3)}
    decoys = {
        "study/s1/empty.dcm": b"",
        "study/s1/notes.dcm": b"these are not DICOM bytes at all",
        "study/s1/preamble.dcm": bytes(128) + b"DICM",
    }
    write_files(tmp_path / "data", {**real, **decoys})
    config = parse_config(CONFIG, "syncd.yaml", base_dir=tmp_path)
    catalog = sync_config(tmp_path, config)
    out = tmp_path / "m.json"
    summary = make(config, catalog, "encord-json", out, probe=True)
    document = json.loads(out.read_text())
    jsonschema.validate(document, schema("encord-json.schema.json"))
    (series,) = document["dicom_series"]
    assert series["title"] == "Axial [1.2.3.900]"
    members = sorted(v.rsplit("/", 1)[1] for k, v in series.items() if k.startswith("objectUrl_"))
    assert members == ["IM1.dcm", "IM2.dcm", "IM3.dcm"]
    assert summary["skipped"][NO_SERIES] == 3


def test_cvat_never_writes_images_without_a_real_size(tmp_path: Path) -> None:
    from syncd.demo import png

    files = {
        "img/good.png": png(5, 4, (1, 1, 1)),
        "img/zero.png": png(0, 0, (1, 1, 1)),
        "img/broken.png": b"\x89PNG\r\n\x1a\n" + bytes(4),
    }
    write_files(tmp_path / "data", files)
    config = parse_config(CONFIG, "syncd.yaml", base_dir=tmp_path)
    catalog = sync_config(tmp_path, config)
    out = tmp_path / "manifest.jsonl"
    summary = make(config, catalog, "cvat-manifest", out)
    lines = [json.loads(line) for line in out.read_text().splitlines()[2:]]
    assert [(line["name"], line["width"], line["height"]) for line in lines] == [("img/good", 5, 4)]
    assert summary["skipped"][cvat.ZERO_SIZE] == 1
    assert summary["skipped"][cvat.NO_SIZE] == 1


def test_items_to_verify_get_no_entry(lab: tuple[Config, Catalog], tmp_path: Path) -> None:
    config, catalog = lab
    (item,) = [i for i in catalog.items("lab") if i.key == "images/cat photo.png"]
    ids = catalog.find_id("dataset", "lab"), catalog.find_id("driver", "lab")
    assert ids[0] is not None and ids[1] is not None
    with catalog.transaction() as tx:
        (row,) = tx.rows(ids[0], ids[1], [item.key]).values()
        unknown = ItemState(
            *row[:5],
            row.content_type,
            row.media_kind,
            row.order_token,
            row.observed_at,
            verify=True,
        )
        tx.write(ids[0], ids[1], [ItemWrite(Op.UPDATED, unknown)])
    out = tmp_path / "m.json"
    summary = make(config, catalog, "encord-json", out)
    urls = [i["objectUrl"] for i in json.loads(out.read_text())["images"]]
    assert not any("cat%20photo" in url for url in urls)
    assert summary["skipped"][TO_VERIFY] == 1
