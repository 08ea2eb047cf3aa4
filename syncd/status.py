"""The summary `syncd status` prints and the status page shows: the catalog (and, inside
`syncd run`, the daemon's own state) read into plain JSON-ready data."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from syncd.catalog import Catalog
from syncd.catalog.types import RunStatus, SyncRun
from syncd.daemon.schedule import Cron, Every
from syncd.logs import scrub
from syncd.views import iso, run_view

if TYPE_CHECKING:
    from syncd.daemon.consumer import ConsumerStats
    from syncd.daemon.leases import LeaseStats
    from syncd.daemon.runner import DaemonState, PairState

#: A driver whose newest finished run ended so is failing (`syncd status` exits 1).
FAILING = frozenset({RunStatus.FAILED, RunStatus.ABORTED})
#: Dead letters counted at most (the catalog has no count; past it the page says "100+").
DEAD_LETTER_COUNT = 100
#: Dead letters shown, newest first.
NEWEST_LETTERS = 5
#: Failed or aborted runs shown, among the newest runs looked at.
RECENT_FAILURES = 10
RECENT_RUNS = 200
#: Runs of one dataset read at first to find each driver's newest; grown tenfold up to the
#: most while a driver has no finished run among them.
RUNS_FIRST = 100
RUNS_MOST = 10_000
#: Reasons and errors are cut to this many characters.
TEXT_MAX = 500
REFRESH_SECONDS = 5


def status_summary(
    catalog: Catalog,
    state: DaemonState | None = None,
    lease_stats: LeaseStats | None = None,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """What syncd is doing, as JSON-ready data.

    From the catalog alone: datasets, each driver's newest run, failing drivers, recent
    failures, dead letters (never their payloads) and live leases. With the daemon's `state`
    (and its `lease_stats`): the replica, uptime, schedules, event sources and lag.
    """
    now = time.time() if now is None else now
    pairs = _pairs_by_dataset(state)
    datasets: list[dict[str, Any]] = []
    failing: list[dict[str, Any]] = []
    seen: set[str] = set()
    for summary in catalog.datasets():
        seen.add(summary.name)
        configured = pairs.get(summary.name, {})
        names = list(dict.fromkeys([*summary.drivers, *configured]))
        newest, finished = _latest_runs(catalog, summary.name, set(names))
        drivers = []
        for name in names:
            row = _driver_row(name, newest.get(name), finished.get(name), configured.get(name), now)
            drivers.append(row)
            if row["failing"]:
                failing.append(row["last_finished"])
        datasets.append(
            {
                "name": summary.name,
                "items": summary.items,
                "bytes": summary.bytes,
                "deleted": summary.deleted,
                "drivers": drivers,
            }
        )
    # Datasets the daemon serves that have no row yet (nothing ran): shown empty.
    for name in sorted(pairs.keys() - seen):
        rows = [_driver_row(d, None, None, p, now) for d, p in pairs[name].items()]
        datasets.append({"name": name, "items": 0, "bytes": 0, "deleted": 0, "drivers": rows})

    letters = catalog.dead_letters(DEAD_LETTER_COUNT + 1)
    return {
        "generated_at": iso(now),
        "daemon": _daemon_view(state, lease_stats, now) if state is not None else None,
        "datasets": datasets,
        "failing": failing,
        "recent_failures": [
            run_brief(r) for r in catalog.runs(None, limit=RECENT_RUNS) if r.status in FAILING
        ][:RECENT_FAILURES],
        "dead_letters": {
            "count": min(len(letters), DEAD_LETTER_COUNT),
            "more": len(letters) > DEAD_LETTER_COUNT,
            "newest": [
                {
                    "id": d.id,
                    "received_at": iso(d.received_at),
                    "source": d.source,
                    "reason": _text(d.reason),
                    "message_id": d.message_id,
                    "attempts": d.attempts,
                }
                for d in letters[:NEWEST_LETTERS]
            ],
        },
        "leases": [
            {
                "name": lease.name,
                "owner": lease.owner,
                "epoch": lease.epoch,
                "expires_at": iso(lease.expires_at),
                "expires_in_seconds": round(lease.expires_at - now, 1),
                "renewed_at": iso(lease.renewed_at),
                "mine": state is not None and lease.owner == state.replica,
            }
            for lease in catalog.leases()
            # A released lease keeps its row (its epoch fences later writers): not held.
            if lease.expires_at > now
        ],
    }


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = scrub(value)
    return value if len(value) <= TEXT_MAX else value[: TEXT_MAX - 1] + "…"


def _pairs_by_dataset(state: DaemonState | None) -> dict[str, dict[str, list[PairState]]]:
    """Each driver's schedule state: one per shard of a sharded driver."""
    out: dict[str, dict[str, list[PairState]]] = {}
    if state is not None:
        for pair in list(state.pairs.values()):
            out.setdefault(pair.dataset, {}).setdefault(pair.driver, []).append(pair)
    return out


def _latest_runs(
    catalog: Catalog, dataset: str, drivers: set[str]
) -> tuple[dict[str, SyncRun], dict[str, SyncRun]]:
    """Each driver's newest run, and its newest finished one (not `running`)."""
    limit = RUNS_FIRST
    while True:
        runs = catalog.runs(dataset, limit=limit)
        newest: dict[str, SyncRun] = {}
        finished: dict[str, SyncRun] = {}
        for run in runs:  # newest first
            newest.setdefault(run.driver, run)
            if run.status is not RunStatus.RUNNING:
                # A sharded driver is failing while any of its shards is: the newest failed
                # shard run stands for it over a sibling's later success.
                seen = finished.get(run.driver)
                if seen is None or (
                    run.status in FAILING
                    and seen.status not in FAILING
                    and run.shard is not None
                    and not _later_run_of(runs, run)
                ):
                    finished[run.driver] = run
        if len(runs) < limit or drivers <= finished.keys() or limit >= RUNS_MOST:
            return newest, finished
        limit *= 10


def _later_run_of(runs: list[SyncRun], run: SyncRun) -> bool:
    """Whether a newer finished run of the same driver and key range is among `runs`."""
    return any(
        other.id > run.id
        and other.driver == run.driver
        and other.shard == run.shard
        and other.status is not RunStatus.RUNNING
        for other in runs
    )


def _driver_row(
    name: str,
    newest: SyncRun | None,
    finished: SyncRun | None,
    shards: list[PairState] | None,
    now: float,
) -> dict[str, Any]:
    failing = finished is not None and finished.status in FAILING
    # The newest run's end (or start, while it runs).
    at = None if newest is None else (newest.finished_at or newest.started_at)
    return {
        "name": name,
        "last_run": run_brief(newest) if newest is not None else None,
        "age_seconds": None if at is None else round(max(0.0, now - at), 1),
        "last_finished": run_brief(finished) if finished is not None else None,
        "failing": failing,
        "schedule": describe_schedule(shards[0].schedule) if shards else None,
        "running": any(p.running for p in shards) if shards else None,
        "next_due": iso(min(due))
        if (due := [p.next_due for p in shards or () if p.next_due])
        else None,
    }


def run_brief(run: SyncRun) -> dict[str, Any]:
    """`run_view`'s shape, its reason scrubbed and cut, its first few errors only (with
    `error_count` saying how many there were)."""
    view = run_view(run)
    view["reason"] = _text(run.reason)
    view["errors"] = [_text(error) for error in run.errors[:3]]
    view["error_count"] = len(run.errors)
    return view


def describe_schedule(schedule: Every | Cron) -> str:
    if isinstance(schedule, Cron):
        return f"cron {schedule.expression}"
    return f"every {duration(schedule.period)}"


def _daemon_view(state: DaemonState, lease_stats: LeaseStats | None, now: float) -> dict[str, Any]:
    return {
        "replica": state.replica,
        "started_at": iso(state.started_at),
        "uptime_seconds": round(max(0.0, now - state.started_at), 1),
        "stopping": state.stopping,
        "sources": [_source_view(n, s) for n, s in sorted(list(state.sources.items()), key=_first)],
        "leases": None
        if lease_stats is None
        else {
            "held": lease_stats.held,
            "renewals": lease_stats.renewals,
            "lost": lease_stats.lost,
            "last_renewal": iso(lease_stats.last_renewal) if lease_stats.last_renewal else None,
            "last_error": _text(lease_stats.last_error),
        },
    }


def _first(pair: tuple[str, Any]) -> str:
    return pair[0]


def _source_view(name: str, stats: ConsumerStats) -> dict[str, Any]:
    # A copy first: the source's thread appends (and trims) while this reads.
    lags = sorted(list(stats.latencies or ()))
    return {
        "name": name,
        "batches": stats.batches,
        "applied": stats.applied,
        "dead_lettered": stats.dead_lettered,
        "failed": stats.failed,
        "errors": stats.errors,
        #: The last attempt to reach the queue failed.
        "failing": stats.failing,
        "last_error": _text(stats.last_error),
        "lag_samples": len(lags),
        "lag_p50_seconds": percentile(lags, 0.50),
        "lag_p99_seconds": percentile(lags, 0.99),
    }


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of sorted values; None for none."""
    if not ordered:
        return None
    rank = max(1, math.ceil(fraction * len(ordered)))
    return round(ordered[rank - 1], 4)


# -- words for people (the page and `syncd status`) ------------------------------------------


def duration(seconds: float | None) -> str:
    """`45s`, `12m 5s`, `3h 20m`, `2d 4h`."""
    if seconds is None:
        return ""
    whole = int(max(0.0, seconds))
    if whole < 60:
        return f"{seconds:.1f}s" if 0 < seconds < 10 and seconds % 1 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h" if hours else f"{days}d"


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)  # pragma: no cover - the loop always returns


def counts_text(counts: dict[str, int]) -> str:
    return (
        f"listed {counts['listed']:,} +{counts['added']:,} ~{counts['updated']:,} "
        f"-{counts['deleted']:,}"
    )


def letters_count(summary: dict[str, Any]) -> str:
    letters = summary["dead_letters"]
    return f"{letters['count']:,}{'+' if letters['more'] else ''}"
