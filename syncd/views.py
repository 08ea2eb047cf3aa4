"""The stable JSON shapes of items, changes, runs, datasets and sync results.

The CLI's `--json` output, the HTTP API and the Python API's `as_dict` all come from here, so
none of them re-decides a field name. Times are ISO 8601 UTC with a `Z`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncd.catalog.types import Change, DatasetSummary, DeadLetter, Item, PushRun, SyncRun
from syncd.reconcile import SyncResult
from syncd.shards import Shard

if TYPE_CHECKING:
    from syncd.push.push import PushResult


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def item_view(item: Item) -> dict[str, Any]:
    return {
        "dataset": item.dataset,
        "driver": item.driver,
        "key": item.key,
        "size": item.size,
        "mtime": iso(item.mtime),
        "etag": item.etag,
        "version": item.version,
        "content_type": item.content_type,
        "media_kind": item.media_kind,
        "deleted": item.deleted,
        "verify": item.verify,
        "change_id": item.change_id,
    }


def change_view(change: Change) -> dict[str, Any]:
    return {
        "id": change.id,
        "dataset": change.dataset,
        "driver": change.driver,
        "key": change.key,
        "op": str(change.op),
        "size": change.size,
        "etag": change.etag,
        "version": change.version,
        "at": iso(change.at),
        "run_id": change.run_id,
    }


def run_view(run: SyncRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "dataset": run.dataset,
        "driver": run.driver,
        "status": str(run.status),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "counts": run.counts.as_dict(),
        "reason": run.reason,
        "errors": list(run.errors),
        "host": run.host,
        "pid": run.pid,
        "shard": shard_view(run.shard),
    }


def shard_view(shard: Shard | None) -> dict[str, Any] | None:
    """A run's key range: `from` inclusive, `to` exclusive (null: to the last key)."""
    if shard is None:
        return None
    return {
        "index": shard.index + 1,
        "of": shard.count,
        "from": shard.start,
        "to": shard.end,
    }


def push_run_view(run: PushRun) -> dict[str, Any]:
    return {
        "kind": "push",
        "id": run.id,
        "target": run.target,
        "dataset": run.dataset,
        "status": str(run.status),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "pushed_through": run.pushed_through,
        "counts": run.counts.as_dict(),
        "reason": run.reason,
        "errors": list(run.errors),
        "host": run.host,
        "pid": run.pid,
    }


def push_result_view(result: PushResult) -> dict[str, Any]:
    return {
        "target": result.target,
        "dataset": result.dataset,
        "status": str(result.status),
        "run_id": result.run_id,
        "dry_run": result.dry_run,
        "verified": result.verified,
        "pushed_through": result.pushed_through,
        "counts": result.counts.as_dict(),
        "reason": result.reason,
        "errors": list(result.errors),
    }


def dataset_view(summary: DatasetSummary) -> dict[str, Any]:
    return {
        "name": summary.name,
        "drivers": list(summary.drivers),
        "items": summary.items,
        "bytes": summary.bytes,
        "deleted": summary.deleted,
        "last_run": run_view(summary.last_run) if summary.last_run else None,
    }


def result_view(result: SyncResult, *, plan: bool = True) -> dict[str, Any]:
    """One sync result; with `dry_run`, `plan` carries the planned changes."""
    out: dict[str, Any] = {
        "dataset": result.dataset,
        "driver": result.driver,
        "run_id": result.run_id,
        "status": str(result.status),
        "dry_run": result.dry_run,
        "counts": result.counts.as_dict(),
        "reason": result.reason,
        "error_kind": result.error_kind,
        "errors": result.errors,
        "warnings": result.warnings,
        "elapsed_seconds": round(result.elapsed, 3),
        "shard": shard_view(result.shard),
    }
    if result.dry_run and plan:
        out["plan"] = [{"op": str(p.op), "key": p.key, "size": p.size} for p in result.plan]
    return out


def dead_letter_view(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.id,
        "received_at": iso(letter.received_at),
        "source": letter.source,
        "reason": letter.reason,
        "payload": letter.payload,
        "message_id": letter.message_id,
        "attempts": letter.attempts,
    }
