"""`syncd datasets ls`, `items ls`, `runs ls`, `changes`: what the catalog holds."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from syncd.catalog.types import PushRun, SyncRun
from syncd.cli.context import EXIT_OK, catalog_of, known_dataset
from syncd.cli.render import PAGE, emit_json, rows_out, size, table
from syncd.views import change_view, dataset_view, iso, item_view, push_run_view, run_view


def _page(args: argparse.Namespace) -> tuple[int | None, bool]:
    """(limit, paged): a terminal table shows a page unless --limit or --all says otherwise."""
    paged = sys.stdout.isatty() and not args.json
    if args.all:
        return None, False
    if args.limit is not None:
        return args.limit, paged
    return (PAGE, True) if paged else (None, False)


def cmd_datasets_ls(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    try:
        summaries = catalog.datasets()
    finally:
        catalog.close()
    if args.json:
        emit_json([dataset_view(s) for s in summaries])
        return EXIT_OK
    table(
        None,
        ("dataset", "drivers", "items", "size", "tombstones", "last run"),
        (
            (
                s.name,
                ", ".join(s.drivers),
                f"{s.items:,}",
                size(s.bytes),
                f"{s.deleted:,}",
                f"{s.last_run.status} {iso(s.last_run.started_at)}" if s.last_run else "",
            )
            for s in summaries
        ),
    )
    return EXIT_OK


def cmd_items_ls(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    try:
        known_dataset(catalog, args.dataset)
        limit, paged = _page(args)
        items = catalog.items(
            args.dataset, prefix=args.prefix, limit=limit, include_deleted=args.deleted
        )
        if args.json:
            for item in items:
                emit_json(item_view(item))
            return EXIT_OK

        def more(shown: int) -> int:
            total = catalog.count_items(
                args.dataset, prefix=args.prefix, include_deleted=args.deleted
            )
            return total - shown

        rows_out(
            ("driver", "key", "size", "kind", "modified", "change"),
            (
                (
                    i.driver,
                    i.key
                    + (" (deleted)" if i.deleted else "")
                    + (" (to verify)" if i.verify else ""),
                    size(i.size),
                    i.media_kind,
                    iso(i.mtime),
                    i.change_id,
                )
                for i in items
            ),
            more=more,
            paged=paged,
        )
    finally:
        catalog.close()
    return EXIT_OK


def cmd_runs_ls(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    try:
        if args.dataset is not None:
            known_dataset(catalog, args.dataset)
        runs = catalog.runs(args.dataset, limit=args.limit)
        pushes = [
            p
            for p in catalog.push_runs(limit=args.limit)
            if args.dataset is None or p.dataset == args.dataset
        ]
    finally:
        catalog.close()
    if args.json:
        if args.pushes:
            emit_json([push_run_view(p) for p in pushes])
        else:
            emit_json([run_view(r) for r in runs])
        return EXIT_OK
    if not args.pushes:
        _sync_runs(runs)
    if pushes:
        _push_runs(pushes)
    return EXIT_OK


def _sync_runs(runs: list[SyncRun]) -> None:
    table(
        None,
        ("run", "dataset", "driver", "status", "started", "listed", "+", "~", "-", "reason"),
        (
            (
                r.id,
                r.dataset,
                r.driver,
                r.status,
                iso(r.started_at),
                f"{r.counts.listed:,}",
                f"{r.counts.added:,}",
                f"{r.counts.updated:,}",
                f"{r.counts.deleted:,}",
                r.reason or "",
            )
            for r in runs
        ),
    )


def _push_runs(pushes: list[PushRun]) -> None:
    table(
        "Pushes",
        ("push", "dataset", "target", "status", "started", "+", "~", "-", "kept", "reason"),
        (
            (
                p.id,
                p.dataset,
                p.target,
                p.status,
                iso(p.started_at),
                f"{p.counts.imported:,}",
                f"{p.counts.updated:,}",
                f"{p.counts.deleted:,}",
                f"{p.counts.kept:,}",
                p.reason or "",
            )
            for p in pushes
        ),
    )


def cmd_changes(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    try:
        known_dataset(catalog, args.dataset)
        limit, paged = _page(args)
        changes = catalog.changes(args.dataset, since=args.since, limit=limit)
        if args.json:
            for change in changes:
                emit_json(change_view(change))
            return EXIT_OK

        def more(shown: int) -> int:
            return catalog.count_changes(args.dataset, since=args.since) - shown

        rows_out(
            ("id", "op", "driver", "key", "size", "at", "run"),
            ((c.id, c.op, c.driver, c.key, size(c.size), iso(c.at), c.run_id) for c in changes),
            more=more,
            paged=paged,
        )
    finally:
        catalog.close()
    return EXIT_OK


def _paging(p: Any) -> None:
    p.add_argument("--limit", type=int, help=f"at most this many (a terminal shows {PAGE})")
    p.add_argument("--all", action="store_true", help="every row, streamed")


def register(sub: Any) -> None:
    p = sub.add_parser("datasets", help="datasets in the catalog")
    actions = p.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="list datasets with item counts and their last run")
    ls.add_argument("--json", action="store_true", help="one JSON array")
    ls.set_defaults(func=cmd_datasets_ls)

    p = sub.add_parser("items", help="items of a dataset")
    actions = p.add_subparsers(dest="items_command", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="list items in (driver, key) order")
    ls.add_argument("dataset", help="the dataset's name")
    ls.add_argument("--prefix", default="", help="only keys starting with this")
    _paging(ls)
    ls.add_argument("--deleted", action="store_true", help="include tombstones")
    ls.add_argument("--json", action="store_true", help="JSON Lines, one item per line")
    ls.set_defaults(func=cmd_items_ls)

    p = sub.add_parser("runs", help="sync and push run history")
    actions = p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="recent runs, newest first")
    ls.add_argument("--dataset", help="only this dataset's runs")
    ls.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    ls.add_argument("--json", action="store_true", help="one JSON array")
    ls.add_argument("--pushes", action="store_true", help="only pushes into targets (`syncd push`)")
    ls.set_defaults(func=cmd_runs_ls)

    p = sub.add_parser("changes", help="the change feed of a dataset")
    p.add_argument("dataset", help="the dataset's name")
    p.add_argument("--since", type=int, default=0, help="changes with an id greater than this")
    _paging(p)
    p.add_argument("--json", action="store_true", help="JSON Lines, one change per line")
    p.set_defaults(func=cmd_changes)
