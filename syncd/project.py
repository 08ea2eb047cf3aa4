"""The Python API for notebooks and pipelines: a configuration and its catalog, with the
operations the `syncd` command offers. The command is a thin layer over this.

    import syncd

    with syncd.open("syncd.yaml") as project:
        report = project.sync(dataset="ct")            # or dry_run=True
        for result in report.results:
            print(result.driver, result.status, result.counts.added)
        for item in project.items("ct", prefix="scans/"):
            print(item.key, item.size)
        for change in project.changes("ct", since=1200):
            print(change.id, change.op, change.key)
        project.manifest("ct", "encord-json", "manifest.json", probe=True)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from syncd.catalog import Catalog, open_catalog
from syncd.catalog.types import Change, DatasetSummary, DeadLetter, Item, SyncRun
from syncd.config import Config, MaxDelete, load_config
from syncd.errors import ConfigError
from syncd.reconcile import PLAN_LIMIT
from syncd.sync import ProgressFor, SyncReport, _no_progress, sync_pairs


class Project:
    """One configuration and its catalog. The catalog opens on first use."""

    def __init__(self, config: Config, catalog_url: str | None = None) -> None:
        self.config = config
        self.catalog_url = catalog_url or config.catalog_url()
        self._catalog: Catalog | None = None

    @classmethod
    def open(cls, config: str | Path | None = None, *, catalog: str | None = None) -> Project:
        """The config at `config`, else `$SYNCD_CONFIG`, else `./syncd.yaml`; `catalog`
        overrides its catalog URL."""
        return cls(load_config(str(config) if config is not None else None), catalog)

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            self._catalog = open_catalog(self.catalog_url)
        return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> Project:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- syncing -------------------------------------------------------------------------

    def sync(
        self,
        dataset: str | None = None,
        driver: str | None = None,
        *,
        dry_run: bool = False,
        max_delete: MaxDelete | str | int | None = None,
        progress_for: ProgressFor = _no_progress,
        plan_limit: int | None = PLAN_LIMIT,
        shard: int | None = None,
    ) -> SyncReport:
        """Reconcile every selected (dataset, driver) pair. A dry run writes nothing, and
        creates no catalog where there was none; its plan lists up to `plan_limit` changes
        per pair (None: all)."""
        pairs = list(self.config.pairs(dataset, driver))
        if not pairs:
            raise ConfigError("nothing to sync: no dataset has a driver matching the filters")
        limit = (
            max_delete
            if isinstance(max_delete, MaxDelete) or max_delete is None
            else MaxDelete.model_validate(max_delete)
        )
        catalog = self._dry_catalog() if dry_run else None
        try:
            return sync_pairs(
                catalog or self.catalog,
                self.config,
                pairs,
                dry_run=dry_run,
                max_delete=limit,
                progress_for=progress_for,
                plan_limit=plan_limit,
                shard=shard,
            )
        finally:
            if catalog is not None:
                catalog.close()

    def _dry_catalog(self) -> Catalog | None:
        """An empty in-memory catalog when the configured SQLite file does not exist yet."""
        prefix = "sqlite:///"
        if self._catalog is None and self.catalog_url.startswith(prefix):
            path = self.catalog_url[len(prefix) :]
            if path != ":memory:" and not Path(path).exists():
                return open_catalog(prefix + ":memory:")
        return None

    # -- reading -------------------------------------------------------------------------

    def datasets(self) -> list[DatasetSummary]:
        return self.catalog.datasets()

    def items(
        self,
        dataset: str,
        *,
        prefix: str = "",
        limit: int | None = None,
        include_deleted: bool = False,
        after: tuple[str, str] | None = None,
    ) -> Iterator[Item]:
        """Items in (driver, key) order, streamed; `after` is the (driver, key) to resume at."""
        return self.catalog.items(
            dataset, prefix=prefix, limit=limit, include_deleted=include_deleted, after=after
        )

    def changes(self, dataset: str, since: int = 0, limit: int | None = None) -> Iterator[Change]:
        """The change feed: every add, update and delete after change id `since`."""
        return self.catalog.changes(dataset, since=since, limit=limit)

    def runs(self, dataset: str | None = None, limit: int = 20) -> list[SyncRun]:
        return self.catalog.runs(dataset, limit=limit)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        return self.catalog.dead_letters(limit)

    def has_dataset(self, name: str) -> bool:
        return self.catalog.find_id("dataset", name) is not None

    # -- manifests -----------------------------------------------------------------------

    def manifest(
        self, dataset: str, format: str, out: str | Path, **options: Any
    ) -> dict[str, Any]:
        """Write `dataset`'s manifest in `format` to `out` ("-" for stdout); return the
        summary (entries per section, skipped by reason, files). Options as
        `syncd.manifest.build.build_manifest` takes them (prefix, probe, signed_ttl,
        changed_since)."""
        from syncd.manifest.build import build_manifest

        return build_manifest(self.catalog, self.config, dataset, format, str(out), **options)
