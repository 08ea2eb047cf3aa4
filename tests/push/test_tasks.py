"""How an item becomes a task: the data key from the label config (as Label Studio 1.23's
`parsed_label_config` gives it), the URL, and the meta that names the item."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from syncd.catalog.types import Item
from syncd.config import parse_config
from syncd.push.labelstudio import Storage
from syncd.push.tasks import ItemNotShown, TaskShaper, data_inputs, task_identity

CONFIG = """\
integrations:
  - {name: disk, provider: local}
  - {name: aws, provider: s3}
drivers:
  - {name: photos, integration: disk, bucket: ./photos}
  - {name: raw, integration: aws, bucket: scans}
datasets:
  - {name: pets, drivers: [photos, raw]}
targets:
  - {name: ls, kind: labelstudio, url: "http://ls", token: env:T, project: 1, dataset: pets}
"""
#: The shape Label Studio answers for <Image value="$image"/>, <Video value="$clip"/> and a
#: <Choices> control over the image.
PARSED: dict[str, Any] = {
    "choice": {
        "type": "Choices",
        "to_name": ["image"],
        "inputs": [{"type": "Image", "valueType": None, "value": "image"}],
        "labels": ["cat"],
    },
    "track": {
        "type": "VideoRectangle",
        "to_name": ["clip"],
        "inputs": [{"type": "Video", "valueType": None, "value": "clip"}],
    },
}


def item(key: str, kind: str, driver: str = "photos") -> Item:
    return Item("pets", driver, key, 1, 0.0, "e", None, None, kind, None, 0.0, False, 9)


def shaper(tmp_path: Path, parsed: Mapping[str, object], storages: list[Storage]) -> TaskShaper:
    config = parse_config(CONFIG, base_dir=tmp_path)
    inputs = data_inputs({"parsed_label_config": parsed})
    return TaskShaper(config, config.target("ls"), inputs, storages)


def test_each_media_kind_goes_to_its_input(tmp_path: Path) -> None:
    shape = shaper(tmp_path, PARSED, [])
    assert shape.data_key(item("a.jpg", "image")) == "image"
    assert shape.data_key(item("b.mp4", "video")) == "clip"
    with pytest.raises(ItemNotShown, match=r"item photos:c\.wav is audio.*<image> \$image"):
        shape.data_key(item("c.wav", "audio"))


def test_only_kinds_no_tag_shows_fall_back_to_a_single_input(tmp_path: Path) -> None:
    shape = shaper(tmp_path, {"choice": PARSED["choice"]}, [])
    assert shape.data_key(item("scan.dcm", "dicom")) == "image"
    with pytest.raises(ItemNotShown, match="set the target's data_key"):
        shape.data_key(item("b.mp4", "video"))


def test_storage_urls_only_where_the_project_has_that_bucket(tmp_path: Path) -> None:
    shape = shaper(tmp_path, PARSED, [Storage("s3", "scans", "")])
    assert shape.url(item("cats/a b.png", "image", "raw")) == "s3://scans/cats/a b.png"
    other = shaper(tmp_path, PARSED, [Storage("s3", "elsewhere", ""), Storage("gs", "scans", "")])
    assert other.url(item("cats/a.png", "image", "raw")).startswith("https://scans.s3")
    assert shape.url(item("a.jpg", "image")) == (tmp_path / "photos" / "a.jpg").as_uri()


def test_meta_names_the_item_and_only_syncd_tasks_are_recognised(tmp_path: Path) -> None:
    shape = shaper(tmp_path, PARSED, [])
    meta = shape.meta(item("a.jpg", "image"), changed=True)
    assert meta == {
        "syncd": {
            "dataset": "pets",
            "driver": "photos",
            "key": "a.jpg",
            "etag": "e",
            "version": None,
            "change_id": 9,
        },
        "source_changed": True,
    }
    assert task_identity(meta, "pets") == ("photos", "a.jpg")
    assert task_identity(meta, "other-dataset") is None
    assert task_identity({"uploaded_by": "someone"}, "pets") is None
