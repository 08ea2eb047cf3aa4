"""What a dataset item looks like as a Label Studio task: its data key, its URL, its meta."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from syncd.catalog.types import Item
from syncd.config import Config, LabelStudioTarget
from syncd.errors import ConfigError, SyncdError
from syncd.manifest.build import ManifestError, Sources
from syncd.push.labelstudio import Storage

#: Label config object tags that show each media kind, best first.
TAGS_BY_KIND: dict[str, tuple[str, ...]] = {
    "image": ("image",),
    "video": ("video",),
    "audio": ("audio", "audioplus"),
    "text": ("text", "hypertext", "paragraphs"),
    "pdf": ("hypertext",),
}
#: The scheme Label Studio resolves for a source storage of each provider.
SCHEMES = {"s3": "s3", "gcs": "gs", "azure": "azure-blob"}


class ItemNotShown(SyncdError):
    """The project's label config has no input for this item's media kind."""


def data_inputs(project: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(tag, data key) of every input the project's label config reads, e.g. ("image", "image")
    for `<Image value="$image"/>`."""
    out: list[tuple[str, str]] = []
    parsed = project.get("parsed_label_config")
    for control in (parsed or {}).values() if isinstance(parsed, dict) else ():
        for entry in control.get("inputs", ()) if isinstance(control, dict) else ():
            tag, value = entry.get("type"), entry.get("value")
            if isinstance(tag, str) and isinstance(value, str) and value:
                pair = (tag.lower(), value.lstrip("$"))
                if pair not in out:
                    out.append(pair)
    return out


class TaskShaper:
    """Builds the `data` and `meta` of the task for an item."""

    def __init__(
        self,
        config: Config,
        target: LabelStudioTarget,
        inputs: Sequence[tuple[str, str]],
        storages: Sequence[Storage],
    ) -> None:
        self.config = config
        self.target = target
        self.inputs = list(inputs)
        self.storages = list(storages)
        self.sources = Sources(config, None)
        self._storage_scheme: dict[str, str | None] = {}

    def data_key(self, item: Item) -> str:
        if self.target.data_key:
            return self.target.data_key
        kind = item.media_kind or "other"
        tags = TAGS_BY_KIND.get(kind)
        for tag in tags or ():
            for input_tag, key in self.inputs:
                if input_tag == tag:
                    return key
        keys = list(dict.fromkeys(key for _, key in self.inputs))
        # A kind no tag shows (DICOM, NIfTI) goes to the only input there is; a video is
        # never put where the config shows an image.
        if tags is None and len(keys) == 1:
            return keys[0]
        shown = ", ".join(f"<{t}> ${k}" for t, k in self.inputs) or "no inputs"
        raise ItemNotShown(
            f"item {item.driver}:{item.key} is {kind}, and project {self.target.project}'s "
            f"label config has no input for it ({shown}); set the target's data_key"
        )

    def url(self, item: Item) -> str:
        scheme = self._scheme(item.driver)
        if scheme is not None:
            return f"{scheme}://{self.config.driver(item.driver).bucket}/{item.key}"
        return self.sources.url(item)

    def _scheme(self, driver_name: str) -> str | None:
        """The storage URL scheme when the project has a source storage on this driver's
        bucket (Label Studio then signs or proxies the URL itself)."""
        if driver_name not in self._storage_scheme:
            driver = self.config.driver(driver_name)
            provider = self.config.integration(driver.integration).provider
            scheme = SCHEMES.get(provider)
            matched = any(s.scheme == scheme and s.bucket == driver.bucket for s in self.storages)
            self._storage_scheme[driver_name] = scheme if matched else None
        return self._storage_scheme[driver_name]

    def data(self, item: Item) -> dict[str, Any]:
        try:
            return {self.data_key(item): self.url(item)}
        except (ConfigError, ManifestError) as exc:
            # Items of a driver since removed from the config have no store to point at.
            raise ItemNotShown(f"item {item.driver}:{item.key}: {exc}") from None

    def meta(self, item: Item, *, changed: bool = False, deleted: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"syncd": identity(item)}
        if changed:
            meta["source_changed"] = True
        if deleted:
            meta["source_deleted"] = True
        return meta


def identity(item: Item) -> dict[str, Any]:
    """What a task's `meta.syncd` says about the item it shows."""
    return {
        "dataset": item.dataset,
        "driver": item.driver,
        "key": item.key,
        "etag": item.etag,
        "version": item.version,
        "change_id": item.change_id,
    }


def task_identity(meta: Mapping[str, Any], dataset: str) -> tuple[str, str] | None:
    """(driver, key) of a task syncd created for `dataset`; None for any other task."""
    mark = meta.get("syncd")
    if not isinstance(mark, dict) or mark.get("dataset") != dataset:
        return None
    driver, key = mark.get("driver"), mark.get("key")
    if not isinstance(driver, str) or not isinstance(key, str):
        return None
    return driver, key
