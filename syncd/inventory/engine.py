"""The inventory merge in DuckDB: a report's data files, normalized to one relation
(key, size, mtime, etag, version, content type), against the catalog's rows, read in place
through DuckDB's SQLite or PostgreSQL scanner. Sorting, joining and spilling happen in the
engine under a memory cap; Python sees only the rows that differ.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from syncd.catalog.types import Catalog
from syncd.errors import Unsupported
from syncd.inventory import snapshot
from syncd.inventory.reports import InventoryError, Report
from syncd.shards import Shard
from syncd.storage.types import Store

#: Bytes read per request when a data file is copied to the local folder DuckDB reads.
CHUNK = 8 * 2**20
_NAME = re.compile(r"[^a-z0-9]")
#: Which report column gives each field, by normalized name (lower case, letters and digits).
FIELDS: dict[str, tuple[str, ...]] = {
    "key": ("key", "name"),
    "size": ("size", "contentlength"),
    "mtime": ("lastmodifieddate", "lastmodified", "updated"),
    "etag": ("etag",),
    "md5": ("md5hash",),
    "version": ("versionid", "generation"),
    "metageneration": ("metageneration",),
    "content_type": ("contenttype",),
    "latest": ("islatest", "iscurrentversion"),
    "delete_marker": ("isdeletemarker",),
    "deleted": ("deleted",),
    "snapshot": ("snapshot",),
    "time_deleted": ("timedeleted",),
}


def extension(module: str, name: str) -> str:
    """The path of a DuckDB extension shipped as a wheel (loaded from its file: nothing is
    downloaded at run time)."""
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise Unsupported(
            f"listing: inventory needs DuckDB's {name}: pip install 'syncd[inventory]'"
        ) from None
    root = Path(package.__file__ or "").parent
    found = sorted(root.rglob(f"{name}.duckdb_extension"))
    if not found:
        raise Unsupported(f"{module} holds no {name}.duckdb_extension")
    return str(found[-1])


def connect(tmp: Path, memory_limit: str) -> Any:
    try:
        import duckdb
    except ImportError:
        raise Unsupported(
            "listing: inventory needs DuckDB: pip install 'syncd[inventory]'"
        ) from None
    spill = tmp / "spill"
    spill.mkdir(exist_ok=True)
    con = duckdb.connect(
        config={
            "memory_limit": memory_limit,
            "temp_directory": str(spill),
            "preserve_insertion_order": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        }
    )
    # Report times without a zone are UTC, whatever the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    return con


def download(store: Store, report: Report, folder: Path) -> list[Path]:
    """Copy the report's data files next to DuckDB, checking each against the manifest's
    size and MD5; raise `InventoryError` naming the first that does not match."""
    paths = []
    for index, file in enumerate(report.files):
        suffix = ".csv.gz" if file.key.endswith(".gz") else Path(file.key).suffix or ".dat"
        path = folder / f"part-{index:06d}{suffix}"
        digest = hashlib.md5()
        size = 0
        with open(path, "wb") as out:
            while True:
                chunk = store.read_range(file.key, size, CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
                if len(chunk) < CHUNK:
                    break
        if file.size is not None and size != file.size:
            raise InventoryError(
                f"data file {file.key}: {size} bytes, but the manifest says {file.size}"
            )
        if file.md5 is not None and digest.hexdigest() != file.md5:
            raise InventoryError(
                f"data file {file.key}: MD5 {digest.hexdigest()}, but the manifest says "
                f"{file.md5}: the report is damaged"
            )
        paths.append(path)
    return paths


def _quote(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _source(con: Any, report: Report, paths: Sequence[Path], folder: Path) -> str:
    """A DuckDB table expression over the report's files, every column as written."""
    files = "[" + ", ".join(_quote(p) for p in paths) + "]"
    if report.format == "parquet":
        return f"read_parquet({files}, union_by_name = true)"
    if report.format == "orc":
        return f"read_parquet({files_of(_orc_to_parquet(paths, folder))}, union_by_name = true)"
    options = [
        f"header = {'true' if report.header else 'false'}",
        f"delim = {_quote(report.delimiter)}",
        "quote = '\"'",
        "escape = '\"'",
        "all_varchar = true",
        "auto_detect = false" if report.columns and not report.header else "auto_detect = true",
        "null_padding = true",
    ]
    if report.columns and not report.header:
        names = ", ".join(f"{_quote(c)}: 'VARCHAR'" for c in report.columns)
        options.append(f"columns = {{{names}}}")
    return f"read_csv({files}, {', '.join(options)})"


def files_of(paths: Sequence[Path]) -> str:
    return "[" + ", ".join(_quote(p) for p in paths) + "]"


def _orc_to_parquet(paths: Sequence[Path], folder: Path) -> list[Path]:
    """DuckDB reads no ORC: each file becomes Parquet through pyarrow, a stripe at a time."""
    from pyarrow import orc
    from pyarrow import parquet as pq

    out = []
    for path in paths:
        target = folder / f"{path.stem}.parquet"
        reader = orc.ORCFile(str(path))
        writer: Any = None
        for index in range(reader.nstripes):
            stripe = reader.read_stripe(index)
            if writer is None:
                writer = pq.ParquetWriter(str(target), stripe.schema)
            writer.write_batch(stripe)
        if writer is None:
            pq.write_table(reader.read(), str(target))
        else:
            writer.close()
        out.append(target)
    return out


def report_relation(
    con: Any,
    report: Report,
    paths: Sequence[Path],
    folder: Path,
    *,
    prefix: str,
    bucket: str,
    versioned: bool,
    keep: Callable[[str], bool] | None = None,
    shard: Shard | None = None,
) -> None:
    """Create view `report(key, size, mtime, etag, version, content_type, metageneration)`:
    the live objects under `prefix`, one row per key, as a listing of the bucket shows them."""
    if not paths:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW report AS SELECT NULL::VARCHAR AS key, "
            "NULL::BIGINT AS size, NULL::DOUBLE AS mtime, NULL::VARCHAR AS etag, "
            "NULL::VARCHAR AS version, NULL::VARCHAR AS content_type, "
            "NULL::VARCHAR AS metageneration WHERE false"
        )
        return
    source = _source(con, report, paths, folder)
    con.execute(f"CREATE OR REPLACE TEMP VIEW raw_report AS SELECT * FROM {source}")
    described = con.execute("DESCRIBE raw_report").fetchall()
    columns = {_NAME.sub("", str(row[0]).lower()): (str(row[0]), str(row[1])) for row in described}

    def column(field: str) -> tuple[str, str] | None:
        for candidate in FIELDS[field]:
            if candidate in columns:
                name, kind = columns[candidate]
                return '"' + name.replace('"', '""') + '"', kind
        return None

    def text(field: str) -> str:
        found = column(field)
        return "NULL::VARCHAR" if found is None else f"CAST({found[0]} AS VARCHAR)"

    def flag(field: str, default: bool) -> str:
        found = column(field)
        if found is None:
            return "true" if default else "false"
        return (
            f"coalesce(lower(CAST({found[0]} AS VARCHAR)) IN ('true', '1'), {str(default).lower()})"
        )

    key = column("key")
    if key is None:
        raise InventoryError(f"report {report.manifest}: no Key or Name column")
    key_sql = f"CAST({key[0]} AS VARCHAR)"
    if report.provider == "s3" and report.format == "csv":
        # S3 writes CSV keys form-encoded: a space is `+`, a plus `%2B`.
        key_sql = f"url_decode(replace({key_sql}, '+', ' '))"
    scope = "true"
    if report.provider == "azure":
        # A blob inventory covers the account: names start with their container, and only
        # this container's blobs are the driver's.
        scope = f"starts_with({key_sql}, {_quote(bucket + '/')})"
        key_sql = f"substr({key_sql}, {len(bucket) + 2})"
    mtime = column("mtime")
    if mtime is None:
        mtime_sql = "0.0"
    elif mtime[1].startswith("TIMESTAMP"):
        mtime_sql = f"epoch({mtime[0]})"
    elif mtime[1] in ("BIGINT", "INTEGER"):
        mtime_sql = f"{mtime[0]} / 1000.0"
    else:
        mtime_sql = f"epoch(TRY_CAST({mtime[0]} AS TIMESTAMPTZ))"
    etag_sql = f"nullif(trim({text('etag')}, '\"'), '')"
    if column("md5") is not None:
        # GCS listings give the MD5 (hex) as the content tag; composite objects have none.
        etag_sql = f"coalesce(lower(hex(from_base64(nullif({text('md5')}, '')))), {etag_sql})"
    version_sql = f"nullif({text('version')}, '')"
    if report.provider == "s3":
        if not versioned:
            version_sql = "NULL::VARCHAR"
        elif column("version") is None:
            raise InventoryError(
                f"report {report.manifest} has no VersionId column, but the driver is "
                "versioned: configure the inventory with all object versions"
            )
        else:
            # ListObjectVersions names the version of an object stored before versioning
            # `null`; the report leaves it empty.
            version_sql = f"coalesce(nullif({text('version')}, ''), 'null')"
    live = [
        flag("latest", True),
        f"NOT {flag('delete_marker', False)}",
        f"NOT {flag('deleted', False)}",
        f"coalesce({text('snapshot')}, '') = ''",
        f"coalesce({text('time_deleted')}, '') = ''",
    ]
    size = column("size")
    size_sql = "0::BIGINT" if size is None else f"TRY_CAST({size[0]} AS BIGINT)"
    con.execute(
        "CREATE OR REPLACE TEMP VIEW report AS SELECT * FROM ("
        f"SELECT {key_sql} AS key, coalesce({size_sql}, 0) AS size, "
        f"CAST({mtime_sql} AS DOUBLE) AS mtime, {etag_sql} AS etag, {version_sql} AS version, "
        f"nullif({text('content_type')}, '') AS content_type, "
        f"{text('metageneration')} AS metageneration "
        f"FROM raw_report WHERE {scope} AND {' AND '.join(live)}) "
        f"WHERE key IS NOT NULL AND starts_with(key, {_quote(prefix)}){_within(shard)}"
        f"{_kept(con, keep)}"
    )


def _within(shard: Shard | None) -> str:
    """The condition that keeps a shard's keys (VARCHAR compares bytes: UTF-8 order)."""
    if shard is None:
        return ""
    end = f" AND key < {_quote(shard.end)}" if shard.end is not None else ""
    return f" AND key >= {_quote(shard.start)}{end}"


def _kept(con: Any, keep: Callable[[str], bool] | None) -> str:
    """The condition that leaves out keys the driver's rules reject (none when `keep` is
    None: every row of the catalog already passed them). It runs the driver's own rules, in
    Python, over whole column batches."""
    if keep is None:
        return ""
    import pyarrow as pa
    from duckdb import sqltypes

    def accepts(keys: Any) -> Any:
        return pa.array([keep(k) for k in keys.to_pylist()], pa.bool_())

    con.create_function("syncd_keep", accepts, [sqltypes.VARCHAR], sqltypes.BOOLEAN, type="arrow")
    return " AND syncd_keep(key)"


def catalog_relation(
    con: Any,
    catalog: Catalog,
    dataset_id: int | None,
    driver_id: int | None,
    shard: Shard | None = None,
) -> None:
    """Create view `items`: the catalog's rows of this dataset and driver, read in place
    (SQLite and PostgreSQL scanners), or from a snapshot for any other catalog."""
    from syncd.catalog.postgres import PostgresCatalog
    from syncd.catalog.sqlite import SqliteCatalog

    where = f"dataset_id = {int(dataset_id or 0)} AND driver_id = {int(driver_id or 0)}"
    where += _within(shard)
    if isinstance(catalog, SqliteCatalog) and catalog.path != ":memory:":
        con.execute(
            f"LOAD {_quote(extension('duckdb_extension_sqlite_scanner', 'sqlite_scanner'))}"
        )
        con.execute(f"ATTACH {_quote(catalog.path)} AS cat (TYPE sqlite, READ_ONLY)")
        table = "cat.items"
        deleted = "deleted <> 0"
        verify = "verify <> 0"
    elif isinstance(catalog, PostgresCatalog):
        con.execute(
            f"LOAD {_quote(extension('duckdb_extension_postgres_scanner', 'postgres_scanner'))}"
        )
        con.execute(
            f"ATTACH {_quote(catalog.conninfo_for_scanner())} AS cat (TYPE postgres, READ_ONLY)"
        )
        schema = catalog.schema or catalog.current_schema()
        table = 'cat."' + schema.replace('"', '""') + '".items'
        deleted = "deleted"
        verify = "verify"
    else:
        raise Unsupported(f"catalog {catalog.url}: an inventory merge reads SQLite or PostgreSQL")
    con.execute(
        "CREATE OR REPLACE TEMP VIEW items AS SELECT key, size, mtime, etag, version, "
        f"({deleted}) AS deleted, change_id, order_token, observed_at, content_type, "
        f"media_kind, ({verify}) AS verify, history FROM {table} WHERE {where}"
    )


def catalog_items(
    con: Any,
    catalog: Catalog,
    dataset_id: int,
    driver_id: int,
    shard: Shard | None,
    folder: Path,
) -> None:
    """Create view `items` (the columns the merge compares) from the copy of these rows kept
    in `folder`, patched with the rows changed since; the copy is built (or rewritten) from
    the catalog when it is missing, foreign, or far behind."""
    watermark = catalog.last_change_id()
    ids = (dataset_id, driver_id)
    copy = snapshot.load(catalog, folder, dataset_id, driver_id, shard)
    patch = None
    if copy is not None:
        share = int(copy.rows * snapshot.PATCH_SHARE)
        limit = max(snapshot.PATCH_LEAST, min(snapshot.PATCH_MOST, share))
        patch = catalog.rows_changed_since(dataset_id, driver_id, copy.watermark, limit)
    if copy is None or patch is None:
        catalog_relation(con, catalog, dataset_id, driver_id, shard)
        copy = snapshot.save(con, catalog, folder, ids, shard, "items", watermark)
        patch = catalog.rows_changed_since(dataset_id, driver_id, watermark, snapshot.PATCH_MOST)
        if patch is None:
            # The catalog is being written faster than it can be copied: read it in place.
            snapshot.discard(folder, dataset_id, driver_id, shard)
            return
        rewrite = False
    else:
        rewrite = len(patch) > max(1_000, copy.rows * snapshot.REWRITE_SHARE)
    _patched_view(con, copy.data, [r for r in patch if shard is None or shard.covers(r[0])])
    if rewrite:
        copy = snapshot.save(con, catalog, folder, ids, shard, "items", watermark)
        _patched_view(con, copy.data, [])


def _patched_view(con: Any, data: Path, patch: Sequence[tuple[Any, ...]]) -> None:
    copy = f"SELECT {snapshot.COLUMNS} FROM read_parquet({_quote(data)})"
    if not patch:
        con.execute(f"CREATE OR REPLACE TEMP VIEW items AS {copy}")
        return
    import pyarrow as pa

    # ROW_COLUMNS order: key, size, mtime, etag, version, deleted, change_id, ..., verify.
    table = pa.table(
        {
            "key": pa.array([r[0] for r in patch], pa.string()),
            "size": pa.array([r[1] for r in patch], pa.int64()),
            "mtime": pa.array([r[2] for r in patch], pa.float64()),
            "etag": pa.array([r[3] for r in patch], pa.string()),
            "version": pa.array([r[4] for r in patch], pa.string()),
            "deleted": pa.array([bool(r[5]) for r in patch], pa.bool_()),
            "change_id": pa.array([r[6] for r in patch], pa.int64()),
            "verify": pa.array([bool(r[11]) for r in patch], pa.bool_()),
        }
    )
    con.register("catalog_patch", table)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW items AS {copy} c "
        "WHERE NOT EXISTS (SELECT 1 FROM catalog_patch p WHERE p.key = c.key) "
        f"UNION ALL SELECT {snapshot.COLUMNS} FROM catalog_patch"
    )


#: One pass over the report and the catalog's rows: what differs (the same rule as
#: `syncd.diff.differs`), and the live rows the report lacks that nothing touched since the
#: report's as-of change. Only these rows are kept; a no-op keeps none.
DIFF = """
CREATE OR REPLACE TEMP TABLE diff AS
SELECT coalesce(r.key, i.key) AS key, r.size, r.mtime, r.etag, r.version, r.content_type,
       r.metageneration,
       CASE WHEN r.key IS NULL THEN 'delete'
            WHEN i.key IS NULL OR i.deleted THEN 'add' ELSE 'update' END AS op
FROM report r
FULL OUTER JOIN (SELECT key, size, mtime, etag, version, deleted, change_id, verify FROM items) i
  ON i.key = r.key
WHERE (r.key IS NULL AND NOT i.deleted AND i.change_id <= $asof)
   OR (r.key IS NOT NULL AND (
        i.key IS NULL OR i.deleted OR i.verify
        OR r.size IS DISTINCT FROM i.size OR r.version IS DISTINCT FROM i.version
        OR CASE WHEN r.etag IS NOT NULL AND i.etag IS NOT NULL THEN r.etag <> i.etag
                ELSE r.mtime IS DISTINCT FROM i.mtime OR r.etag IS DISTINCT FROM i.etag END))
"""
UPSERTS = """
SELECT key, size, mtime, etag, version, content_type, metageneration, op = 'update'
FROM diff WHERE op <> 'delete' ORDER BY key
"""
DELETES = "SELECT key FROM diff WHERE op = 'delete' ORDER BY key"


def batches(
    con: Any, sql: str, params: dict[str, Any] | None, size: int
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of `sql`, in lists of up to `size`."""
    cursor = con.execute(sql, params or {})
    while rows := cursor.fetchmany(size):
        yield rows
