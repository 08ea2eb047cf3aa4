"""Inventory reports written the way each provider delivers them, from a listing of the
source bucket: S3 Inventory (manifest.json + manifest.checksum, CSV without a header and
form-encoded keys, Parquet, ORC), GCS inventory reports (shards + *_manifest.json), Azure
Blob Inventory (a run folder per rule with its manifest and checksum).

The layouts follow the providers' documentation (S3 User Guide "Locating your inventory
list", Cloud Storage "Inventory reports", Azure "Blob inventory")."""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote_plus

import pyarrow as pa
from pyarrow import orc
from pyarrow import parquet as pq

from syncd.storage.types import ObjectInfo, Store


def _iso(ts: float, digits: int = 3) -> str:
    moment = datetime.fromtimestamp(ts, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}"[:digits] + "Z"


def _uuid(taken_at: float) -> str:
    """Data files have a fresh UUID name in every delivery."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"inventory-{taken_at}"))


def _csv(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    if header is not None:
        writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode("utf-8")


def _parquet(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> bytes:
    """Rows as a Parquet file: sizes and generations as integers, Azure's dates as
    timestamps, the rest as text."""
    integers = {"size", "Content-Length", "generation", "metageneration"}
    arrays = {}
    for index, name in enumerate(columns):
        values = [row[index] for row in rows]
        if name in ("Last-Modified", "Creation-Time"):
            # Azure writes its dates as timestamp_millis in Parquet.
            stamps = [datetime.fromisoformat(str(v).replace("Z", "+00:00")) for v in values]
            arrays[name] = pa.array(stamps, pa.timestamp("ms", tz="UTC"))
        elif name in integers:
            arrays[name] = pa.array(
                [int(str(v)) if v not in ("", None) else None for v in values], pa.int64()
            )
        else:
            arrays[name] = pa.array([None if v == "" else str(v) for v in values], pa.string())
    buffer = io.BytesIO()
    pq.write_table(pa.table(arrays), buffer)
    return buffer.getvalue()


def s3_inventory(
    dest: Store,
    prefix: str,
    source_bucket: str,
    objects: Sequence[ObjectInfo],
    *,
    taken_at: float,
    fmt: str = "CSV",
    checksum: str | None = None,
    damage_data: bool = False,
) -> str:
    """Write one S3 Inventory delivery under `prefix`; its manifest's key."""
    folder = f"{prefix}{datetime.fromtimestamp(taken_at, UTC):%Y-%m-%dT%H-%MZ}/"
    columns = ["Bucket", "Key", "Size", "LastModifiedDate", "ETag", "StorageClass"]
    if fmt == "CSV":
        rows = [
            (source_bucket, quote_plus(o.key), o.size, _iso(o.mtime), o.etag or "", "STANDARD")
            for o in objects
        ]
        data = gzip.compress(_csv(rows), mtime=0)
        name = f"data/{_uuid(taken_at)}.csv.gz"
        schema = ", ".join(columns)
    else:
        table = pa.table(
            {
                "bucket": pa.array([source_bucket] * len(objects), pa.string()),
                "key": pa.array([o.key for o in objects], pa.string()),
                "size": pa.array([o.size for o in objects], pa.int64()),
                "last_modified_date": pa.array(
                    [int(o.mtime * 1000) for o in objects], pa.timestamp("ms", tz="UTC")
                ),
                "e_tag": pa.array([o.etag for o in objects], pa.string()),
                "storage_class": pa.array(["STANDARD"] * len(objects), pa.string()),
            }
        )
        buffer = io.BytesIO()
        if fmt == "Parquet":
            pq.write_table(table, buffer, compression="snappy")
            name = f"data/{_uuid(taken_at)}.parquet"
            schema = "message s3.inventory { required binary bucket (UTF8); ... }"
        else:
            orc.write_table(table, buffer, compression="zlib")
            name = f"data/{_uuid(taken_at)}.orc"
            schema = "struct<bucket:string,key:string,size:bigint,...>"
        data = buffer.getvalue()
    data_key = f"{prefix}{name}"
    stored = bytearray(data)
    if damage_data:
        stored[len(stored) // 2] ^= 0xFF  # a flipped byte in transit or at rest
    dest.put(data_key, bytes(stored))  # type: ignore[attr-defined]
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": "arn:aws:s3:::inventory-destination",
        "version": "2016-11-30",
        "creationTimestamp": str(int(taken_at * 1000)),
        "fileFormat": fmt,
        "fileSchema": schema,
        "files": [
            {"key": data_key, "size": len(data), "MD5checksum": hashlib.md5(data).hexdigest()}
        ],
    }
    body = json.dumps(manifest, indent=2).encode()
    dest.put(f"{folder}manifest.json", body, "application/json")  # type: ignore[attr-defined]
    digest = checksum if checksum is not None else hashlib.md5(body).hexdigest()
    dest.put(f"{folder}manifest.checksum", f"{digest}\n".encode())  # type: ignore[attr-defined]
    dest.put(  # type: ignore[attr-defined]
        f"{prefix}hive/dt={datetime.fromtimestamp(taken_at, UTC):%Y-%m-%d-%H-%M}/symlink.txt",
        f"s3://inventory-destination/{data_key}\n".encode(),
    )
    return f"{folder}manifest.json"


GCS_FIELDS = ["project", "bucket", "name", "size", "updated", "etag", "md5Hash", "generation",
              "metageneration", "contentType", "storageClass"]  # fmt: skip


def gcs_inventory(
    dest: Store,
    prefix: str,
    source_bucket: str,
    objects: Sequence[ObjectInfo],
    *,
    taken_at: float,
    shards: int = 2,
    header: bool = True,
    drop_shard: bool = False,
    parquet: bool = False,
) -> str:
    """Write one GCS inventory report (CSV or Parquet shards, and its manifest)."""
    config_id = "1a34-f2e456-12b456-1c3d"
    snapshot = datetime.fromtimestamp(taken_at, UTC).strftime("%Y-%m-%dT%H:%M")
    folder = f"{prefix}dt={snapshot}/"
    names = []
    for shard in range(shards):
        rows = []
        for o in objects[shard::shards]:
            _, meta = (o.order_token or "0.1").split(".")
            md5 = base64.b64encode(bytes.fromhex(o.etag)).decode() if o.etag else ""
            rows.append(
                (
                    "test",
                    source_bucket,
                    o.key,
                    o.size,
                    _iso(o.mtime, 6),
                    "CKih16GjycICEAE=",
                    md5,
                    o.version,
                    int(meta),
                    o.content_type or "",
                    "STANDARD",
                )
            )
        name = f"{config_id}_{snapshot}_{shard}.{'parquet' if parquet else 'csv'}"
        names.append(name)
        if drop_shard and shard == shards - 1:
            continue
        data = _parquet(GCS_FIELDS, rows) if parquet else _csv(rows, GCS_FIELDS if header else None)
        dest.put(folder + name, data)  # type: ignore[attr-defined]
    options: dict[str, object] = (
        {"parquetOptions": {}}
        if parquet
        else {"csvOptions": {"recordSeparator": "\n", "delimiter": ",", "headerRequired": header}}
    )
    manifest = {
        "report_config": {
            "name": f"projects/test/locations/us/reportConfigs/{config_id}",
            **options,
            "objectMetadataReportOptions": {
                "metadataFields": GCS_FIELDS,
                "storageFilters": {"bucket": source_bucket},
            },
        },
        "records_processed": len(objects),
        "snapshot_time": datetime.fromtimestamp(taken_at, UTC).isoformat().replace("+00:00", "Z"),
        "shard_count": shards,
        "report_shards_file_names": names,
    }
    key = f"{folder}{config_id}_{snapshot}_manifest.json"
    dest.put(key, json.dumps(manifest).encode(), "application/json")  # type: ignore[attr-defined]
    return key


AZURE_FIELDS = ["Name", "Creation-Time", "Last-Modified", "Etag", "Content-Length",
                "Content-Type", "BlobType", "AccessTier"]  # fmt: skip


def azure_inventory(
    dest: Store,
    source_container: str,
    rule: str,
    objects: Sequence[ObjectInfo],
    *,
    taken_at: float,
    status: str = "Succeeded",
    checksum: bool = True,
    parquet: bool = False,
    foreign: Sequence[str] = (),
) -> str:
    """Write one Azure Blob Inventory run of `rule` (CSV or Parquet, with its manifest)."""
    started = datetime.fromtimestamp(taken_at, UTC)
    folder = f"{started:%Y/%m/%d/%H-%M-%S}/{rule}/"
    rows = [
        (
            f"{source_container}/{o.key}",
            _iso(o.mtime),
            _iso(o.mtime),
            f'"{o.etag}"' if o.etag else "",
            o.size,
            o.content_type or "",
            "BlockBlob",
            "Hot",
        )
        for o in objects
    ]
    # An account-wide rule lists other containers' blobs too.
    rows += [
        (
            f"other-container/{key}",
            _iso(taken_at),
            _iso(taken_at),
            '"0x1"',
            1,
            "",
            "BlockBlob",
            "Hot",
        )
        for key in foreign
    ]
    extension = "parquet" if parquet else "csv"
    data = _parquet(AZURE_FIELDS, rows) if parquet else _csv(rows, AZURE_FIELDS)
    dest.put(f"{folder}{rule}.{extension}", data)  # type: ignore[attr-defined]
    manifest = {
        "destinationContainer": "inventory",
        "endpoint": "https://testaccount.blob.core.windows.net",
        "files": [{"blob": f"{folder}{rule}.{extension}", "size": len(data)}],
        "inventoryCompletionTime": _iso(taken_at + 600, 0).replace(".Z", "Z"),
        "inventoryStartTime": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ruleDefinition": {
            "filters": {"blobTypes": ["blockBlob"]},
            "format": "Parquet" if parquet else "Csv",
            "objectType": "Blob",
            "schedule": "Daily",
            "schemaFields": AZURE_FIELDS,
        },
        "ruleName": rule,
        "status": status,
        "summary": {"objectCount": len(objects), "totalObjectSize": sum(o.size for o in objects)},
        "version": "1.0",
    }
    body = json.dumps(manifest).encode()
    dest.put(f"{folder}{rule}-manifest.json", body, "application/json")  # type: ignore[attr-defined]
    if checksum:
        dest.put(f"{folder}{rule}-manifest.checksum", hashlib.md5(body).hexdigest().encode())  # type: ignore[attr-defined]
    return f"{folder}{rule}-manifest.json"
