"""A columnar copy of one driver's catalog rows, kept between inventory merges.

DuckDB's SQLite scanner reads a WITHOUT ROWID table on one thread and pushes no key filter
down, so reading the catalog in place is most of a no-op merge. The merge reads this copy
(Parquet, all cores) instead, patched with the rows changed since it was taken: every item
write takes a new change id and a change-feed row, so the keys changed after the copy's
watermark are exactly the keys the feed names after it, and their current rows replace the
copy's. The copy is a cache: a missing, damaged or foreign one is rebuilt from the catalog,
and the merge's writes stay guarded by change id whatever it says.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from syncd.catalog.types import Catalog
from syncd.shards import Shard

log = structlog.get_logger(__name__)

#: The catalog columns the merge compares.
COLUMNS = "key, size, mtime, etag, version, deleted, change_id, verify"
#: Patched with more changed rows than this share of the copy, the copy is rewritten.
REWRITE_SHARE = 0.01
#: More changed keys than this (or this share of the copy) rebuild it from the catalog:
#: they would be read one by one.
PATCH_MOST = 200_000
PATCH_SHARE = 0.05
#: ...but up to this many are always read one by one.
PATCH_LEAST = 10_000


@dataclass(frozen=True, slots=True)
class Snapshot:
    data: Path
    #: The catalog's last change id when the copy was begun: rows written after it are
    #: in the change feed after it.
    watermark: int
    #: That change's key and time, so a copy of another catalog's history never passes.
    mark: tuple[str, float] | None
    rows: int


def folder_of(catalog: Catalog) -> Path:
    """Where a catalog's copies live: beside a SQLite file; in the user's cache for a
    server (in a folder named by a hash of the catalog's URL)."""
    path = getattr(catalog, "path", None)
    if isinstance(path, str) and path != ":memory:":
        return Path(path + ".inventory")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    name = hashlib.sha256(catalog.url.encode()).hexdigest()[:16]
    return cache / "syncd" / "inventory" / name


def _paths(folder: Path, dataset_id: int, driver_id: int, shard: Shard | None) -> tuple[Path, Path]:
    scope = hashlib.sha256((shard.state_key if shard else "").encode()).hexdigest()[:16]
    stem = f"{dataset_id}-{driver_id}-{scope}"
    return folder / f"{stem}.parquet", folder / f"{stem}.json"


def load(
    catalog: Catalog, folder: Path, dataset_id: int, driver_id: int, shard: Shard | None
) -> Snapshot | None:
    """The copy of these rows, if there is one and it is of this catalog's history."""
    data, meta = _paths(folder, dataset_id, driver_id, shard)
    try:
        fields = json.loads(meta.read_text())
        watermark = int(fields["watermark"])
        mark = tuple(fields["mark"]) if fields["mark"] is not None else None
        rows = int(fields["rows"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not data.exists() or watermark > catalog.last_change_id():
        return None
    found = catalog.change_mark(watermark) if watermark else None
    if found != mark:
        log.info("inventory catalog copy is of another history; rebuilding", copy=str(data))
        return None
    return Snapshot(data, watermark, found, rows)


def save(
    con: Any,
    catalog: Catalog,
    folder: Path,
    ids: tuple[int, int],
    shard: Shard | None,
    source: str,
    watermark: int,
) -> Snapshot:
    """Write the rows of `source` (a DuckDB relation, current as of `watermark` or later)
    as the copy. The data lands before its description: a crash between leaves newer data
    under an older watermark, which only makes the next patch longer."""
    folder.mkdir(parents=True, exist_ok=True)
    data, meta = _paths(folder, *ids, shard)
    partial = data.with_suffix(".parquet.partial")
    quoted = "'" + str(partial).replace("'", "''") + "'"
    con.execute(f"COPY (SELECT {COLUMNS} FROM {source}) TO {quoted} (FORMAT parquet)")
    rows = int(con.execute(f"SELECT count(*) FROM read_parquet({quoted})").fetchone()[0])
    os.replace(partial, data)
    mark = catalog.change_mark(watermark) if watermark else None
    body = json.dumps({"watermark": watermark, "mark": mark, "rows": rows})
    meta_partial = meta.with_suffix(".json.partial")
    meta_partial.write_text(body)
    os.replace(meta_partial, meta)
    return Snapshot(data, watermark, mark, rows)


def discard(folder: Path, dataset_id: int, driver_id: int, shard: Shard | None) -> None:
    for path in _paths(folder, dataset_id, driver_id, shard):
        with contextlib.suppress(OSError):
            path.unlink()
