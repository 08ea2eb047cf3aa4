"""The catalog: datasets, items (with tombstones), sync runs, the change feed, dead letters."""

from __future__ import annotations

from syncd.catalog.types import (
    Catalog,
    CatalogRow,
    Change,
    Item,
    ItemState,
    ItemWrite,
    Op,
    RunConflict,
    RunCounts,
    RunStatus,
    SyncRun,
    WriteTx,
)
from syncd.errors import ConfigError

__all__ = [
    "Catalog",
    "CatalogRow",
    "Change",
    "Item",
    "ItemState",
    "ItemWrite",
    "Op",
    "RunConflict",
    "RunCounts",
    "RunStatus",
    "SyncRun",
    "WriteTx",
    "open_catalog",
]


def open_catalog(url: str) -> Catalog:
    """Open (and migrate) the catalog at `url`: `sqlite:///PATH` or `postgresql://...`.

    PostgreSQL URLs may carry `?schema=NAME` to keep syncd's tables in their own schema.
    """
    if url.startswith("sqlite:///"):
        from syncd.catalog.sqlite import SqliteCatalog

        return SqliteCatalog(url[len("sqlite:///") :])
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from syncd.catalog.postgres import PostgresCatalog
        except ImportError as exc:
            raise ConfigError(
                f"catalog {url.split('@')[-1]}: PostgreSQL needs psycopg: pip install 'syncd[postgres]'"
            ) from exc
        return PostgresCatalog(url)
    from syncd.logs import scrub

    raise ConfigError(
        f"catalog: unsupported URL {scrub(url)!r} (use sqlite:///PATH or postgresql://...)"
    )
