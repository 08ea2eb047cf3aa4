"""Reconcile a driver from its newest inventory report: zero LIST calls on the bucket.

As-of semantics: a report is true as of the time it was taken. Its rows are written through
the same guarded writes as a listing's, with the guard at the last change made before that
time minus `inventory.margin`: an item an event touched since then keeps what the event
said (no resurrection of a file deleted after the report, no rollback of a newer version),
and only items untouched since then may be deleted, within `max_delete`. A report that is
incomplete, fails its checksum, or is older than the last one applied writes nothing and
says why; the events since close the gap.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from syncd.catalog.types import (
    Catalog,
    Fence,
    InventoryApplied,
    ItemWrite,
    Op,
    RunCounts,
    RunStatus,
)
from syncd.config import Config, Driver, MaxDelete
from syncd.errors import Stopped
from syncd.inventory import engine, snapshot
from syncd.inventory.reports import InventoryError, Report, latest_report
from syncd.reconcile import (
    BATCH_SIZE,
    PLAN_LIMIT,
    PlannedChange,
    Progress,
    RunWriter,
    SyncResult,
    ended_by,
    finish_result,
    item_state,
    start_run,
    tombstone,
)
from syncd.shards import Shard, log_fields
from syncd.storage import key_filter, open_store
from syncd.storage.types import ObjectInfo, Store

log = structlog.get_logger(__name__)


def inventory_store(config: Config, driver: Driver) -> Store:
    """The store the driver's reports are delivered to (through the driver's integration)."""
    assert driver.inventory is not None
    where = driver.model_copy(
        update={
            "name": f"{driver.name}.inventory",
            "bucket": driver.inventory.bucket,
            "prefix": driver.inventory.prefix,
            "versioned": False,
            "fan_out": 1,
        }
    )
    return open_store(where, config.integration(driver.integration), config.base_dir)


def reconcile_inventory(
    catalog: Catalog,
    config: Config,
    *,
    dataset: str,
    driver: Driver,
    provider: str,
    dry_run: bool = False,
    max_delete: MaxDelete | None = None,
    progress: Progress | None = None,
    plan_limit: int | None = PLAN_LIMIT,
    fence: Fence | None = None,
    stop: threading.Event | None = None,
    on_start: Callable[[int], None] | None = None,
    reports: Store | None = None,
    shard: Shard | None = None,
) -> SyncResult:
    """Like `syncd.reconcile.reconcile`, from the newest report instead of a listing (of the
    keys `shard` covers, when given)."""
    assert driver.inventory is not None
    started = time.monotonic()
    counts = RunCounts()
    result = SyncResult(
        dataset, driver.name, RunStatus.RUNNING, counts, dry_run=dry_run, shard=shard
    )
    limit = max_delete or driver.max_delete
    writer: RunWriter | None = None
    dataset_id, driver_id, _ = start_run(catalog, result, driver, provider, fence, on_start)
    bound = log.bind(
        dataset=dataset,
        driver=driver.name,
        run_id=result.run_id,
        dry_run=dry_run,
        **log_fields(shard),
    )
    bound.info("sync started", provider=provider, listing="inventory", bucket=driver.bucket)
    try:
        store = reports or inventory_store(config, driver)
        report = latest_report(store, driver.inventory, provider, driver.bucket, driver.prefix)
        problem = report.problem
        applied = catalog.inventory_applied(driver_id, shard) if driver_id is not None else None
        if problem is None and applied is not None and report.taken_at < applied.taken_at:
            problem = (
                f"it is older than the report applied last ({applied.manifest}); the newer one "
                "stands"
            )
        rules = key_rules(driver)
        if problem is not None:
            return finish_result(
                catalog,
                result,
                RunStatus.ABORTED,
                f"inventory report {report.manifest} not used: {problem}; nothing written",
                started,
                bound,
            )
        asof = catalog.change_id_at(report.taken_at - driver.inventory.margin)
        if not dry_run:
            assert driver_id is not None and dataset_id is not None and result.run_id
            writer = RunWriter(catalog, dataset_id, driver_id, result.run_id, asof, fence)
        with tempfile.TemporaryDirectory(prefix="syncd-inventory-") as tmp:
            status, reason = _merge(
                catalog,
                store,
                report,
                driver,
                provider,
                Path(tmp),
                (dataset_id, driver_id),
                # Rows the catalog holds passed the driver's rules as they were; when those
                # changed, every key of the report is checked again.
                applied is None or applied.key_filter != rules,
                asof,
                writer,
                result,
                limit,
                progress,
                plan_limit,
                stop,
            )
        if status is RunStatus.SUCCEEDED and writer is not None and driver_id is not None:
            catalog.save_inventory_applied(
                driver_id, InventoryApplied(report.taken_at, report.manifest, rules), shard
            )
    except BaseException as exc:
        return ended_by(exc, catalog, result, started, bound, "inventory report failed")
    return finish_result(catalog, result, status, reason, started, bound)


def _merge(
    catalog: Catalog,
    store: Store,
    report: Report,
    driver: Driver,
    provider: str,
    tmp: Path,
    ids: tuple[int | None, int | None],
    every_key: bool,
    asof: int,
    writer: RunWriter | None,
    result: SyncResult,
    limit: MaxDelete,
    progress: Progress | None,
    plan_limit: int | None,
    stop: threading.Event | None,
) -> tuple[RunStatus, str | None]:
    assert driver.inventory is not None
    paths = engine.download(store, report, tmp)
    con = engine.connect(tmp, driver.inventory.memory_limit)
    try:
        counts = result.counts
        keys = key_filter(driver)
        engine.report_relation(
            con,
            report,
            paths,
            tmp,
            prefix=driver.prefix,
            bucket=driver.bucket,
            versioned=driver.versioned,
            keep=keys.accepts if every_key and ids[1] is not None else None,
            shard=result.shard,
        )
        dataset_id, driver_id = ids
        if driver.inventory.catalog_copy and dataset_id is not None and driver_id is not None:
            engine.catalog_items(
                con, catalog, dataset_id, driver_id, result.shard, snapshot.folder_of(catalog)
            )
        else:
            engine.catalog_relation(con, catalog, *ids, shard=result.shard)
        con.execute(engine.DIFF, {"asof": asof})
        listed = _count(con, "SELECT count(*) FROM report")
        held = _count(con, "SELECT count(*) FROM diff WHERE op = 'delete'")
        # Counted before this run's writes, as a listing counts what was live.
        live = _count(con, "SELECT count(*) FROM items WHERE NOT deleted") if held else 0
        gcs_token = _gcs_token() if provider == "gcs" else None
        candidates = 0
        for rows in engine.batches(con, engine.UPSERTS, None, BATCH_SIZE):
            writes = []
            candidates += len(rows)
            for key, size, mtime, etag, version, content_type, metageneration, known in rows:
                if not keys.accepts(key):
                    counts.skipped += 1
                    continue
                token = gcs_token(version, metageneration) if gcs_token else None
                info = ObjectInfo(
                    key, int(size), float(mtime or 0.0), etag, version, content_type, token
                )
                writes.append(ItemWrite(Op.UPDATED if known else Op.ADDED, item_state(info)))
            _apply(writer, writes, result, plan_limit, progress, stop)
        counts.listed = listed
        counts.unchanged = max(0, listed - candidates)
        if held == 0:
            return RunStatus.SUCCEEDED, None
        if not driver.allow_external_delete:
            counts.skipped += held
            return RunStatus.SUCCEEDED, None
        if listed == 0:
            return RunStatus.ABORTED, (
                f"inventory report {report.manifest} lists nothing under "
                f"{driver.bucket}/{driver.prefix} but {held} items are live; deleting nothing"
            )
        exceeded = limit.exceeded(held, live)
        if exceeded:
            return RunStatus.ABORTED, f"{exceeded}; deleting nothing (raise max_delete to allow)"
        at = time.time()
        for rows in engine.batches(con, engine.DELETES, None, BATCH_SIZE):
            current = catalog.rows_of(result.dataset, driver.name, [r[0] for r in rows])
            writes = [
                ItemWrite(Op.DELETED, tombstone(current[key], at))
                for (key,) in rows
                if key in current and not current[key].deleted
            ]
            _apply(writer, writes, result, plan_limit, progress, stop)
        return RunStatus.SUCCEEDED, None
    except Exception as exc:
        if type(exc).__module__.startswith(("duckdb", "_duckdb")):
            # A report DuckDB cannot read (a shard cut short, a column count that changes),
            # or a full spill disk: the run aborts naming it; nothing more is written.
            raise InventoryError(f"report {report.manifest}: {exc}") from None
        raise
    finally:
        con.close()


def key_rules(driver: Driver) -> str:
    """A fingerprint of the rules that decide which keys are the driver's."""
    rules = [driver.prefix, list(driver.include), list(driver.exclude), list(driver.skip)]
    return hashlib.sha256(json.dumps(rules).encode()).hexdigest()


def _count(con: Any, sql: str) -> int:
    return int(con.execute(sql).fetchone()[0])


def _apply(
    writer: RunWriter | None,
    writes: list[ItemWrite],
    result: SyncResult,
    plan_limit: int | None,
    progress: Progress | None,
    stop: threading.Event | None,
) -> None:
    if stop is not None and stop.is_set():
        raise Stopped("stopped between batches")
    if not writes:
        return
    if writer is None:
        for write in writes:
            if write.op is Op.ADDED:
                result.counts.added += 1
            elif write.op is Op.UPDATED:
                result.counts.updated += 1
            else:
                result.counts.deleted += 1
        room = len(writes) if plan_limit is None else max(0, plan_limit - len(result.plan))
        result.plan.extend(PlannedChange(w.op, w.state.key, w.state.size) for w in writes[:room])
    else:
        writer.apply(writes, result.counts)
    if progress is not None:
        progress(result.counts)


def _gcs_token() -> Callable[[str | None, str | None], str | None]:
    from syncd.storage.gcs import order_token

    return order_token


__all__ = ["InventoryError", "reconcile_inventory"]
