"""Stream a dataset's items into an import manifest (what `syncd manifest` runs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from syncd.catalog.types import Catalog, Item
from syncd.config import Config, Driver
from syncd.errors import ConfigError, SyncdError
from syncd.manifest.cvat import CvatManifestWriter
from syncd.manifest.encord_csv import EncordCsvWriter
from syncd.manifest.encord_json import EncordJsonWriter
from syncd.manifest.entries import Entry, EntryBuilder
from syncd.manifest.jsonl import JsonlWriter
from syncd.manifest.labelbox import LabelboxWriter
from syncd.manifest.output import Parts
from syncd.storage import open_store
from syncd.storage.types import MetadataReader, Presigner, Store
from syncd.storage.urls import encode_key, s3_multi_region_url

FORMATS = ("encord-json", "encord-csv", "labelbox-ndjson", "cvat-manifest", "jsonl")


class Writer(Protocol):
    #: Entries, or members of groups, the format has no place for, by reason.
    skipped: dict[str, int]

    def write(self, entry: Entry, metadata: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class ManifestError(SyncdError):
    """A manifest cannot be made as asked (the message says why)."""


def make_writer(fmt: str, parts: Parts, config: Config) -> Writer:
    if fmt == "encord-json":
        return EncordJsonWriter(parts, config.manifest)
    if fmt == "encord-csv":
        return EncordCsvWriter(parts)
    if fmt == "labelbox-ndjson":
        return LabelboxWriter(parts)
    if fmt == "cvat-manifest":
        return CvatManifestWriter(parts)
    return JsonlWriter(parts)


class Sources:
    """Each driver's store, opened once, and the URL an item gets."""

    def __init__(self, config: Config, signed_ttl: int | None) -> None:
        self.config = config
        self.signed_ttl = signed_ttl
        self._stores: dict[str, Store] = {}
        self._url_of: dict[str, Callable[[Item], str]] = {}

    def driver(self, name: str) -> Driver:
        try:
            return self.config.driver(name)
        except ConfigError:
            raise ManifestError(
                f"items of driver {name!r} remain, but it is not configured"
            ) from None

    def store(self, item: Item) -> Store:
        store = self._stores.get(item.driver)
        if store is None:
            driver = self.driver(item.driver)
            integration = self.config.integration(driver.integration)
            store = self._stores[item.driver] = open_store(
                driver, integration, self.config.base_dir
            )
        return store

    def url(self, item: Item) -> str:
        url_of = self._url_of.get(item.driver)
        if url_of is None:
            url_of = self._url_of[item.driver] = self._url_function(item)
        return url_of(item)

    def _url_function(self, first: Item) -> Callable[[Item], str]:
        """How every item of `first`'s driver gets its URL (decided once per driver)."""
        settings = self.config.manifest
        driver = self.driver(first.driver)
        integration = self.config.integration(driver.integration)
        template = settings.url_template
        if template:
            fields = {
                "bucket": driver.bucket,
                "region": driver.region or integration.region or "",
                "driver": driver.name,
            }
            return lambda item: template.format(
                key=encode_key(item.key), raw_key=item.key, **fields
            )
        alias = settings.s3_multi_region_alias
        if alias and integration.provider == "s3":
            return lambda item: s3_multi_region_url(alias, item.key)
        store = self.store(first)
        ttl = self.signed_ttl
        if ttl is not None:
            if not isinstance(store, Presigner):
                raise ManifestError(
                    f"driver {driver.name}: {integration.provider} stores have no signed URLs"
                )
            return lambda item: store.signed_url(item.key, ttl)
        return lambda item: store.url(item.key)


def _changed_items(catalog: Catalog, dataset: str, prefix: str, since: int) -> Iterator[Item]:
    # The latest state of every item changed after `since`; deleted items are not registered.
    changed = {(c.driver, c.key) for c in catalog.changes(dataset, since=since)}
    for item in catalog.items(dataset, prefix=prefix):
        if (item.driver, item.key) in changed:
            yield item


def build_manifest(
    catalog: Catalog,
    config: Config,
    dataset: str,
    fmt: str,
    out: str,
    *,
    prefix: str = "",
    probe: bool = False,
    signed_ttl: int | None = None,
    changed_since: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Write the manifest; return a summary (entries per section, skipped, files).

    Raises `ManifestError` before writing anything when `out` cannot be written, and leaves
    no half-written file behind when a store fails part-way.
    """
    if fmt not in FORMATS:
        raise ManifestError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    if out != "-":
        folder = Path(out).parent
        if not folder.is_dir():
            raise ManifestError(f"cannot write {out}: folder {folder} does not exist")
    sources = Sources(config, signed_ttl)
    settings = config.manifest
    parts = Parts(out, settings.max_items_per_file, settings.max_bytes_per_file)
    writer = make_writer(fmt, parts, config)
    builder = EntryBuilder(
        settings,
        sources.url,
        sources.store,
        probe=probe,
        image_sizes=fmt == "cvat-manifest",
        prefix_of=lambda name: sources.driver(name).prefix,
    )
    if changed_since is None:
        items = catalog.items(dataset, prefix=prefix)
    else:
        items = _changed_items(catalog, dataset, prefix, changed_since)
    try:
        for written, entry in enumerate(builder.entries(items), start=1):
            metadata: dict[str, Any] = {}
            if probe and not entry.is_group:
                store = sources.store(entry.members[0].item)
                if isinstance(store, MetadataReader):
                    metadata = dict(store.metadata(entry.members[0].item.key))
            writer.write(entry, metadata)
            if progress is not None and written % 1000 == 0:
                progress(written)
        writer.close()
    except BaseException:
        parts.abort()
        raise
    skipped = dict(builder.counts.skipped)
    for reason, count in writer.skipped.items():
        skipped[reason] = skipped.get(reason, 0) + count
    return {
        "dataset": dataset,
        "format": fmt,
        "entries": builder.counts.entries,
        "skipped": skipped,
        "probe_bytes": builder.counts.probe_bytes,
        "files": parts.paths,
    }
