"""`syncd push`: bring labeling projects (targets) in step with their datasets."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from syncd.catalog import open_catalog
from syncd.cli.context import EXIT_OK, UsageError, config_of, exit_for
from syncd.cli.render import emit_json, table
from syncd.push.push import PushResult, push, targets_of
from syncd.views import push_result_view

#: Planned task changes a dry run prints per target.
SHORT_PLAN = 20


def cmd_push(args: argparse.Namespace) -> int:
    config = config_of(args)
    if not config.targets:
        raise UsageError("no targets in the config: add one under `targets:` (see README)")
    targets = targets_of(config, args.target)
    catalog = open_catalog(args.catalog or config.catalog_url())
    results: list[PushResult] = []
    failures: list[dict[str, Any]] = []
    try:
        for target in targets:
            try:
                results.append(
                    push(
                        config,
                        catalog,
                        target,
                        dry_run=args.dry_run,
                        verify=not args.no_verify,
                    )
                )
            except Exception as exc:
                if len(targets) == 1:
                    raise
                failures.append({"target": target.name, "error": str(exc)})
    finally:
        catalog.close()
    code = exit_for((r.status for r in results), len(failures))
    if args.json:
        emit_json(
            {
                "dry_run": args.dry_run,
                "exit_code": code,
                "results": [push_result_view(r) for r in results],
                "failures": failures,
            }
        )
        return code
    table(
        "Push plan (dry run: nothing written)" if args.dry_run else "Push",
        ("target", "dataset", "status", "imported", "updated", "deleted", "kept", "unchanged"),
        (
            (
                r.target,
                r.dataset,
                "planned" if r.dry_run else r.status,
                f"{r.counts.imported:,}",
                f"{r.counts.updated:,}",
                f"{r.counts.deleted:,}",
                f"{r.counts.kept:,}",
                f"{r.counts.unchanged:,}",
            )
            for r in results
        ),
    )
    for r in results:
        if r.plan is not None and r.plan:
            _print_plan(r)
        for error in r.errors[:10]:
            print(f"{r.target}: {error}", file=sys.stderr)
        if r.reason:
            print(f"{r.target}: {r.status}: {r.reason}", file=sys.stderr)
    for failure in failures:
        print(f"{failure['target']}: {failure['error']}", file=sys.stderr)
    return code if results or failures else EXIT_OK


def _print_plan(result: PushResult) -> None:
    plan = result.plan
    assert plan is not None
    rows: list[tuple[str, str, str]] = []
    rows += [("import", i.driver, i.key) for i in plan.imports]
    rows += [("update", i.driver, i.key) for _, i, _ in plan.updates]
    rows += [("delete or keep", d, k) for _, _, (d, k) in plan.removals]
    rows += [("delete duplicate", "", f"task {t.id}") for t in plan.duplicates]
    table(f"{result.target}: planned task changes", ("op", "driver", "key"), rows[:SHORT_PLAN])
    if len(rows) > SHORT_PLAN:
        print(f"... and {len(rows) - SHORT_PLAN:,} more (--json counts them)")


def register(sub: Any) -> None:
    p = sub.add_parser("push", help="push dataset changes into labeling projects (targets)")
    p.add_argument(
        "--target", action="append", help="only this target (repeatable; default: every one)"
    )
    p.add_argument("--dry-run", action="store_true", help="print what would change; write nothing")
    p.add_argument(
        "--no-verify",
        action="store_true",
        help="apply only the change feed; skip checking the whole project (faster)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON result on stdout")
    p.set_defaults(func=cmd_push)
