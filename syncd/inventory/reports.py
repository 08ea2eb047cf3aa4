"""Finding the newest inventory report of a bucket and checking it is whole.

Each provider delivers reports in its own layout (see the module docs of `Inventory` in
syncd/config.py); all come down to a `Report`: when it was taken, its data files, their
format and columns, and, when it must not be trusted to delete, the problem.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from syncd.config import Inventory
from syncd.errors import NotFound, SyncdError
from syncd.storage.types import ObjectInfo, PrefixLister, Store

Format = Literal["csv", "parquet", "orc"]
#: Manifests are small; a larger one is not a manifest.
MANIFEST_LIMIT = 64 * 2**20
_S3_RUN = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z/$")


class InventoryError(SyncdError):
    """No usable report: none delivered yet, or one that cannot be read."""


@dataclass(frozen=True, slots=True)
class ReportFile:
    key: str
    size: int | None = None
    #: Hex MD5 of the file's bytes, when the manifest gives one.
    md5: str | None = None


@dataclass(frozen=True, slots=True)
class Report:
    provider: str
    #: The manifest that describes it, in the inventory bucket.
    manifest: str
    #: When the provider began taking it (epoch seconds): rows are true as of then.
    taken_at: float
    format: Format
    files: tuple[ReportFile, ...]
    #: CSV columns in file order when the files have no header row.
    columns: tuple[str, ...] = ()
    header: bool = False
    delimiter: str = ","
    #: Why the report may not delete anything (incomplete, bad checksum): None when whole.
    problem: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def latest_report(
    store: Store, inventory: Inventory, provider: str, bucket: str, prefix: str = ""
) -> Report:
    """The newest report of `bucket` (and the driver's `prefix`) in the inventory store; a
    report of another bucket, or one that does not cover the prefix, has a `problem`."""
    if provider == "s3":
        return _s3(store, inventory, bucket)
    if provider == "gcs":
        return _gcs(store, inventory, bucket)
    if provider == "azure":
        return _azure(store, inventory, bucket, prefix)
    raise InventoryError(f"{provider} has no inventory reports")


def _read(store: Store, info: ObjectInfo) -> bytes:
    if info.size > MANIFEST_LIMIT:
        raise InventoryError(f"{info.key}: {info.size} bytes is not a manifest")
    return store.read_range(info.key, 0, info.size) if info.size else b""


def _json(store: Store, info: ObjectInfo, where: str) -> dict[str, Any]:
    raw = _read(store, info)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InventoryError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InventoryError(f"{where}: not a JSON object")
    return data


def _subfolders(store: Store, prefix: str) -> list[str]:
    """The folders one level below `prefix`, by a delimiter listing where the store has one
    (a report folder holds thousands of data files that need not be listed)."""
    if isinstance(store, PrefixLister):
        folders, _ = store.list_prefixes(prefix)
        return folders
    seen: list[str] = []
    for listed in store.list(prefix):
        rest = listed.key[len(prefix) :]
        if "/" in rest:
            folder = prefix + rest.split("/", 1)[0] + "/"
            if not seen or seen[-1] != folder:
                seen.append(folder)
    return sorted(set(seen))


def _stat(store: Store, key: str) -> ObjectInfo | None:
    try:
        return store.stat(key)
    except NotFound:
        return None


def _md5_matches(store: Store, manifest: ObjectInfo, checksum_key: str) -> str | None:
    """None when `checksum_key` holds the MD5 of the manifest; else the problem."""
    checksum = _stat(store, checksum_key)
    if checksum is None:
        return f"{checksum_key} is missing: the report is not complete (or still being written)"
    expected = _read(store, checksum).decode("ascii", "replace").strip().lower()
    actual = hashlib.md5(_read(store, manifest)).hexdigest()
    if expected != actual:
        return f"{checksum_key} says {expected[:40]!r}, but the manifest's MD5 is {actual}"
    return None


def _runs(folders: list[str], pattern: re.Pattern[str], prefix: str) -> Iterator[str]:
    """Report folders, newest first (their names sort by time)."""
    for folder in sorted(folders, reverse=True):
        if pattern.match(folder[len(prefix) :]):
            yield folder


def _s3(store: Store, inventory: Inventory, bucket: str) -> Report:
    prefix = inventory.prefix
    for folder in _runs(_subfolders(store, prefix), _S3_RUN, prefix):
        manifest = _stat(store, folder + "manifest.json")
        if manifest is None:
            continue  # a folder the delivery is still writing
        where = f"s3://{inventory.bucket}/{manifest.key}"
        data = _json(store, manifest, where)
        try:
            taken = int(data["creationTimestamp"]) / 1000.0
            fmt = str(data["fileFormat"]).lower()
            files = tuple(
                ReportFile(str(f["key"]), int(f["size"]), str(f["MD5checksum"]).lower())
                for f in data["files"]
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InventoryError(f"{where}: not an S3 Inventory manifest ({exc!r})") from None
        if fmt not in ("csv", "parquet", "orc"):
            raise InventoryError(f"{where}: unknown fileFormat {data['fileFormat']!r}")
        columns: tuple[str, ...] = ()
        if fmt == "csv":
            columns = tuple(c.strip() for c in str(data.get("fileSchema", "")).split(","))
        problem = _md5_matches(store, manifest, folder + "manifest.checksum")
        source = data.get("sourceBucket")
        if problem is None and source is not None and source != bucket:
            problem = f"it is the inventory of bucket {source!r}, not {bucket!r}"
        report_format: Format = "csv" if fmt == "csv" else "orc" if fmt == "orc" else "parquet"
        return Report("s3", manifest.key, taken, report_format, files, columns, False, ",", problem)
    raise InventoryError(
        f"s3://{inventory.bucket}/{prefix}: no inventory report yet (no "
        "YYYY-MM-DDTHH-MMZ/manifest.json under it; the first can take 48 hours)"
    )


def _gcs(store: Store, inventory: Inventory, bucket: str) -> Report:
    prefix = inventory.prefix
    newest: tuple[str, ObjectInfo] | None = None
    for listed in store.list(prefix):
        # Report folders (`dt=...`) nest under the destination path; names sort by time.
        if (
            isinstance(listed, ObjectInfo)
            and listed.key.endswith("_manifest.json")
            and (newest is None or listed.key > newest[0])
        ):
            newest = (listed.key, listed)
    if newest is None:
        raise InventoryError(
            f"gs://{inventory.bucket}/{prefix}: no inventory report yet (no *_manifest.json)"
        )
    manifest = newest[1]
    where = f"gs://{inventory.bucket}/{manifest.key}"
    data = _json(store, manifest, where)
    try:
        taken = _time(str(data["snapshot_time"]))
        shards = [str(name) for name in data["report_shards_file_names"]]
        count = int(data.get("shard_count", len(shards)))
        config = data.get("report_config") or {}
    except (KeyError, TypeError, ValueError) as exc:
        raise InventoryError(f"{where}: not a GCS inventory manifest ({exc!r})") from None
    folder = manifest.key.rsplit("/", 1)[0] + "/" if "/" in manifest.key else ""
    files = tuple(ReportFile(name if "/" in name else folder + name) for name in shards)
    csv_options = config.get("csvOptions") or config.get("csv_options")
    parquet = config.get("parquetOptions") is not None or config.get("parquet_options") is not None
    fmt: Format = "parquet" if parquet or (shards and shards[0].endswith(".parquet")) else "csv"
    options = csv_options if isinstance(csv_options, dict) else {}
    header = bool(options.get("headerRequired", options.get("header_required", True)))
    delimiter = str(options.get("delimiter") or ",")
    fields = (
        config.get("objectMetadataReportOptions", config.get("object_metadata_report_options"))
        or {}
    )
    columns = tuple(fields.get("metadataFields", fields.get("metadata_fields", ())))
    problem = None
    filters = fields.get("storageFilters", fields.get("storage_filters")) or {}
    source = filters.get("bucket") if isinstance(filters, dict) else None
    if source is not None and source != bucket:
        problem = f"it is the inventory of bucket {source!r}, not {bucket!r}"
    elif count != len(files):
        problem = f"{where}: shard_count is {count} but {len(files)} shards are named"
    else:
        for file in files:
            if _stat(store, file.key) is None:
                problem = f"{where}: shard {file.key} is missing"
                break
    return Report("gcs", manifest.key, taken, fmt, files, columns, header, delimiter, problem)


def _azure(store: Store, inventory: Inventory, bucket: str, prefix: str) -> Report:
    rule = inventory.rule or ""
    where = f"container {inventory.bucket}"
    # YYYY/MM/DD/HH-MM-SS/<rule>/: walk down the newest folder at each level.
    candidates = [inventory.prefix]
    for _ in range(4):
        candidates = [
            sub for folder in candidates for sub in sorted(_subfolders(store, folder), reverse=True)
        ][:64]
    for run in candidates:
        manifest = _stat(store, f"{run}{rule}/{rule}-manifest.json")
        if manifest is None:
            continue
        data = _json(store, manifest, f"{where}/{manifest.key}")
        try:
            status = str(data.get("status", ""))
            taken = _time(str(data["inventoryStartTime"]))
            files = tuple(ReportFile(str(f["blob"]), int(f["size"])) for f in data["files"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InventoryError(
                f"{where}/{manifest.key}: not an Azure inventory manifest ({exc!r})"
            ) from None
        fmt = str((data.get("ruleDefinition") or {}).get("format") or "")
        if not fmt and files:
            fmt = "parquet" if files[0].key.endswith(".parquet") else "csv"
        problem = None
        definition = data.get("ruleDefinition") or {}
        covers = _azure_covers(definition, bucket, prefix)
        if status != "Succeeded":
            problem = f"the run's status is {status or 'unknown'!r}, not 'Succeeded'"
        elif covers is not None:
            problem = covers
        else:
            problem = _md5_matches(store, manifest, f"{run}{rule}/{rule}-manifest.checksum")
        report_format: Format = "parquet" if fmt.lower() == "parquet" else "csv"
        return Report("azure", manifest.key, taken, report_format, files, (), True, ",", problem)
    raise InventoryError(f"{where}: no run of inventory rule {rule!r} yet")


def _azure_covers(definition: Any, container: str, prefix: str) -> str | None:
    """Why a rule's run does not list every blob of the driver (None: it does)."""
    if not isinstance(definition, dict):
        return None
    kind = str(definition.get("objectType") or "blob").lower()
    if kind != "blob":
        return f"the rule lists {kind}s, not blobs"
    filters = definition.get("filters") or {}
    matches = filters.get("prefixMatch") or []
    wanted = f"{container}/{prefix}"
    if matches and not any(wanted.startswith(str(m)) for m in matches):
        return f"the rule's prefixMatch {matches} does not cover {wanted!r}"
    excluded = filters.get("excludePrefix") or []
    if any(str(e).startswith(f"{container}/") for e in excluded):
        return f"the rule excludes part of the container ({excluded})"
    # Rules name their blob types; block blobs are what labeling data is stored as (an
    # append or page blob outside the rule is not seen).
    types = [str(t).lower() for t in filters.get("blobTypes") or []]
    if types and "blockblob" not in types:
        return f"the rule lists only {types}, not block blobs"
    return None


def _time(text: str) -> float:
    """RFC 3339 or the providers' shorter forms (`2022-05-20T06:35`), as UTC."""
    value = text.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
