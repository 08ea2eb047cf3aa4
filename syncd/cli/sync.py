"""`syncd sync`: reconcile drivers into datasets, or with --dry-run print the plan."""

from __future__ import annotations

import argparse
import sys
from contextlib import AbstractContextManager
from typing import Any

from syncd.cli.context import UsageError, exit_for, max_delete_arg, project_of
from syncd.cli.render import emit_json, progress, size, table
from syncd.config import Dataset, Driver
from syncd.reconcile import PLAN_LIMIT, Progress, SyncResult
from syncd.sync import SyncReport
from syncd.views import result_view

#: Planned changes printed per driver by a dry run without --plan.
SHORT_PLAN = 20


def cmd_sync(args: argparse.Namespace) -> int:
    if args.shard is not None and args.driver is None:
        raise UsageError("--shard needs --driver: shards are one driver's key ranges")
    project = project_of(args)
    show = sys.stderr.isatty() and not args.json

    def progress_for(dataset: Dataset, driver: Driver) -> AbstractContextManager[Progress | None]:
        return progress(show, f"{dataset.name} ← {driver.name}")

    try:
        report = project.sync(
            args.dataset,
            args.driver,
            dry_run=args.dry_run,
            max_delete=args.max_delete,
            progress_for=progress_for,
            plan_limit=None if args.json or args.plan else PLAN_LIMIT,
            shard=args.shard - 1 if args.shard is not None else None,
        )
    finally:
        project.close()
    code = exit_for((r.status for r in report.results), len(report.conflicts))
    if args.json:
        emit_json(
            {
                "dry_run": report.dry_run,
                "exit_code": code,
                "results": [result_view(r) for r in report.results],
                "conflicts": [
                    {"dataset": c.dataset, "driver": c.driver, "error": c.error}
                    for c in report.conflicts
                ],
            }
        )
        return code
    print_report(report, plan_rows=None if args.plan else SHORT_PLAN)
    return code


def print_report(report: SyncReport, plan_rows: int | None = SHORT_PLAN) -> None:
    dry_run = report.dry_run
    table(
        "Sync plan (dry run: nothing written)" if dry_run else "Sync",
        (
            "dataset",
            "driver",
            "status",
            "listed",
            "added",
            "updated",
            "deleted",
            "unchanged",
            "skipped",
            "seconds",
        ),
        (
            (
                r.dataset,
                driver_label(r),
                "planned" if dry_run and r.status == "succeeded" else r.status,
                f"{r.counts.listed:,}",
                f"{r.counts.added:,}",
                f"{r.counts.updated:,}",
                f"{r.counts.deleted:,}",
                f"{r.counts.unchanged:,}",
                f"{r.counts.skipped:,}",
                f"{r.elapsed:.2f}",
            )
            for r in report.results
        ),
    )
    for r in report.results:
        if dry_run and r.plan:
            _print_plan(r, plan_rows)
        label = f"{r.dataset} ← {driver_label(r)}"
        if r.reason:
            print(f"{label}: {r.status}: {r.reason}", file=sys.stderr)
        for error in r.errors[:10]:
            print(f"{label}: {error}", file=sys.stderr)
        if len(r.errors) > 10:
            print(
                f"{label}: ... {len(r.errors) - 10} more errors (--json lists them)",
                file=sys.stderr,
            )
        for warning in r.warnings[:10]:
            print(f"{label}: {warning}", file=sys.stderr)
    for conflict in report.conflicts:
        print(f"{conflict.dataset} ← {conflict.driver}: {conflict.error}", file=sys.stderr)


def driver_label(result: SyncResult) -> str:
    if result.shard is None:
        return result.driver
    return f"{result.driver} [shard {result.shard.label}]"


def _print_plan(result: SyncResult, rows: int | None) -> None:
    shown = result.plan if rows is None else result.plan[:rows]
    table(
        f"{result.dataset} ← {driver_label(result)}: planned changes",
        ("op", "key", "size"),
        ((p.op, p.key, size(p.size)) for p in shown),
    )
    planned = result.counts.added + result.counts.updated + result.counts.deleted
    if planned > len(shown):
        hint = " (--plan or --json shows every one)" if rows is not None else ""
        print(f"... and {planned - len(shown):,} more{hint}")


def _shard_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes a shard number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("--shard counts from 1")
    return value


def register(sub: Any) -> None:
    p = sub.add_parser("sync", help="reconcile drivers into datasets")
    p.add_argument("--dataset", help="only this dataset's drivers")
    p.add_argument("--driver", help="only this driver")
    p.add_argument(
        "--shard",
        type=_shard_arg,
        metavar="N",
        help="with --driver: only its shard N (1 to the number of shards)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    p.add_argument("--plan", action="store_true", help="with --dry-run: print every planned change")
    p.add_argument("--json", action="store_true", help="print one JSON result on stdout")
    p.add_argument(
        "--max-delete",
        type=max_delete_arg,
        metavar="LIMIT",
        help="override every driver's max_delete for this run ('10%%' or 500)",
    )
    p.set_defaults(func=cmd_sync)
