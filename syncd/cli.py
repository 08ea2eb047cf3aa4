"""The `syncd` command: parses arguments, calls the library, renders the result.

Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 safety stop (nothing deleted).
With several (dataset, driver) pairs the worst wins: 2, then 1, then 3, then 0.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from syncd import logs
from syncd.catalog import Catalog, RunConflict, RunCounts, RunStatus, open_catalog
from syncd.config import CATALOG_ENV, Config, MaxDelete, config_path, load_config
from syncd.errors import ConfigError, SyncdError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SAFETY = 0, 1, 2, 3

#: Modules that add subcommands: each has `register(subparsers)`.
COMMAND_MODULES: tuple[str, ...] = ("syncd.manifest.command", "syncd.deploy")

EXAMPLE_CONFIG = """\
# syncd configuration. Secrets are never written here: use env:NAME, file:PATH, or leave
# them out to use the provider's default chain (instance role, ADC, managed identity).

# Where the catalog lives. SQLite for one machine; PostgreSQL to share it between processes
# and machines: postgresql://user@host:5432/db?schema=syncd  (SYNCD_CATALOG_URL overrides).
catalog: sqlite:///.syncd/catalog.db

integrations:
  - name: disk
    provider: local
  # - name: aws
  #   provider: s3
  #   profile: labeling            # or access_key_id: env:AWS_ACCESS_KEY_ID ...
  # - name: gcp
  #   provider: gcs
  #   project: my-project
  # - name: azure
  #   provider: azure
  #   connection_string: env:AZURE_STORAGE_CONNECTION_STRING

drivers:
  - name: local-images
    integration: disk
    bucket: ./data                 # a folder for provider local; a bucket or container otherwise
    prefix: ""                     # only keys under this prefix
    include: []                    # globs, e.g. ["*.jpg", "scans/**/*.dcm"]
    exclude: []
    # skip: [".*", "*.part", "*.tmp", "*~"]   # hidden and partial files (the default)
    allow_external_delete: true    # false: keep items whose objects disappear
    max_delete: 50%                # a sync deleting more than this stops (also a count: 1000)

datasets:
  - name: images
    drivers: [local-images]
"""


class UsageError(SyncdError):
    """A command was called with arguments that cannot work."""


# -- rendering -------------------------------------------------------------------------------


def _emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False, sort_keys=False) + "\n")


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200).print(table)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


@contextmanager
def _progress(enabled: bool, label: str) -> Iterator[Callable[[RunCounts], None] | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        transient=True,
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(label, detail="")

        def update(counts: RunCounts) -> None:
            bar.update(
                task,
                detail=(
                    f"listed {counts.listed:,}  +{counts.added:,} ~{counts.updated:,} "
                    f"-{counts.deleted:,}"
                ),
            )

        yield update


# -- shared plumbing -------------------------------------------------------------------------


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def _open_catalog(args: argparse.Namespace, config: Config | None = None) -> Catalog:
    if args.catalog:
        return open_catalog(args.catalog)
    if config is None:
        try:
            config = _config(args)
        except ConfigError:
            import os

            if os.environ.get(CATALOG_ENV):
                return open_catalog(os.environ[CATALOG_ENV])
            raise
    return open_catalog(config.catalog_url())


# -- commands --------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists; use --force to overwrite it")
    path.write_text(EXAMPLE_CONFIG, encoding="utf-8")
    print(f"wrote {path}: edit the driver's folder, then run `syncd sync`")
    return EXIT_OK


def cmd_config_validate(args: argparse.Namespace) -> int:
    config = _config(args)
    source = config_path(args.config)
    if args.json:
        _emit_json({"valid": True, "config": str(source), "datasets": len(config.datasets)})
    else:
        print(
            f"{source}: valid ({len(config.integrations)} integrations, "
            f"{len(config.drivers)} drivers, {len(config.datasets)} datasets)"
        )
    return EXIT_OK


def _exit_for(statuses: Iterable[RunStatus]) -> int:
    codes = set()
    for status in statuses:
        if status in (RunStatus.FAILED, RunStatus.COMPLETED_WITH_ERRORS, RunStatus.INTERRUPTED):
            codes.add(EXIT_FAILURE)
        elif status is RunStatus.ABORTED:
            codes.add(EXIT_SAFETY)
    for code in (EXIT_FAILURE, EXIT_SAFETY):
        if code in codes:
            return code
    return EXIT_OK


def cmd_sync(args: argparse.Namespace) -> int:
    from syncd.reconcile import SyncResult, reconcile
    from syncd.storage import open_store

    config = _config(args)
    pairs = list(config.pairs(args.dataset, args.driver))
    if not pairs:
        raise UsageError("nothing to sync: no dataset has a driver matching the filters")
    limit = MaxDelete.model_validate(args.max_delete) if args.max_delete is not None else None
    catalog = _open_catalog(args, config)
    results: list[SyncResult] = []
    failures: list[dict[str, str]] = []
    show_progress = sys.stderr.isatty() and not args.json
    try:
        for dataset, driver in pairs:
            integration = config.integration(driver.integration)
            store = open_store(driver, integration, config.base_dir)
            label = f"{dataset.name} ← {driver.name}"
            try:
                with _progress(show_progress, label) as progress:
                    results.append(
                        reconcile(
                            catalog,
                            store,
                            dataset=dataset.name,
                            driver=driver,
                            provider=integration.provider,
                            dry_run=args.dry_run,
                            max_delete=limit,
                            progress=progress,
                        )
                    )
            except RunConflict as exc:
                failures.append({"dataset": dataset.name, "driver": driver.name, "error": str(exc)})
    finally:
        catalog.close()
    code = _exit_for(r.status for r in results)
    if (failures and code == EXIT_OK) or (failures and code == EXIT_SAFETY):
        code = EXIT_FAILURE
    if args.json:
        _emit_json(
            {
                "dry_run": args.dry_run,
                "exit_code": code,
                "results": [r.as_dict() for r in results],
                "conflicts": failures,
            }
        )
        return code
    _print_sync(results, failures, args.dry_run)
    return code


def _print_sync(results: list[Any], failures: list[dict[str, str]], dry_run: bool) -> None:
    title = "Sync plan (dry run: nothing written)" if dry_run else "Sync"
    _table(
        title,
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
                r.driver,
                r.status if not dry_run else "planned" if r.status == "succeeded" else r.status,
                f"{r.counts.listed:,}",
                f"{r.counts.added:,}",
                f"{r.counts.updated:,}",
                f"{r.counts.deleted:,}",
                f"{r.counts.unchanged:,}",
                f"{r.counts.skipped:,}",
                f"{r.elapsed:.2f}",
            )
            for r in results
        ),
    )
    for r in results:
        if dry_run and r.plan:
            _table(
                f"{r.dataset} ← {r.driver}: planned changes",
                ("op", "key", "size"),
                ((p.op, p.key, _size(p.size)) for p in r.plan),
            )
            shown = r.counts.added + r.counts.updated + r.counts.deleted
            if shown > len(r.plan):
                print(f"... and {shown - len(r.plan):,} more")
        if r.reason:
            print(f"{r.dataset} ← {r.driver}: {r.status}: {r.reason}", file=sys.stderr)
        for error in r.errors[:10]:
            print(f"{r.dataset} ← {r.driver}: {error}", file=sys.stderr)
    for failure in failures:
        print(f"{failure['dataset']} ← {failure['driver']}: {failure['error']}", file=sys.stderr)


def cmd_datasets_ls(args: argparse.Namespace) -> int:
    catalog = _open_catalog(args)
    try:
        summaries = catalog.datasets()
    finally:
        catalog.close()
    if args.json:
        _emit_json(
            [
                {
                    "name": s.name,
                    "drivers": list(s.drivers),
                    "items": s.items,
                    "bytes": s.bytes,
                    "deleted": s.deleted,
                    "last_run": _run_dict(s.last_run) if s.last_run else None,
                }
                for s in summaries
            ]
        )
        return EXIT_OK
    _table(
        None,
        ("dataset", "drivers", "items", "size", "tombstones", "last run"),
        (
            (
                s.name,
                ", ".join(s.drivers),
                f"{s.items:,}",
                _size(s.bytes),
                f"{s.deleted:,}",
                f"{s.last_run.status} {_iso(s.last_run.started_at)}" if s.last_run else "",
            )
            for s in summaries
        ),
    )
    return EXIT_OK


def cmd_items_ls(args: argparse.Namespace) -> int:
    catalog = _open_catalog(args)
    try:
        if catalog.find_id("dataset", args.dataset) is None:
            raise UsageError(f"unknown dataset {args.dataset!r} (see `syncd datasets ls`)")
        items = catalog.items(
            args.dataset, prefix=args.prefix, limit=args.limit, include_deleted=args.deleted
        )
        if args.json:
            for item in items:
                _emit_json(
                    {
                        "dataset": item.dataset,
                        "driver": item.driver,
                        "key": item.key,
                        "size": item.size,
                        "mtime": _iso(item.mtime),
                        "etag": item.etag,
                        "version": item.version,
                        "content_type": item.content_type,
                        "media_kind": item.media_kind,
                        "deleted": item.deleted,
                        "verify": item.verify,
                        "change_id": item.change_id,
                    }
                )
        else:
            _table(
                None,
                ("driver", "key", "size", "kind", "modified", "change"),
                (
                    (
                        i.driver,
                        i.key
                        + (" (deleted)" if i.deleted else "")
                        + (" (to verify)" if i.verify else ""),
                        _size(i.size),
                        i.media_kind,
                        _iso(i.mtime),
                        i.change_id,
                    )
                    for i in items
                ),
            )
    finally:
        catalog.close()
    return EXIT_OK


def _run_dict(run: Any) -> dict[str, Any]:
    return {
        "id": run.id,
        "dataset": run.dataset,
        "driver": run.driver,
        "status": str(run.status),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "counts": run.counts.as_dict(),
        "reason": run.reason,
        "errors": list(run.errors),
        "host": run.host,
        "pid": run.pid,
    }


def cmd_runs_ls(args: argparse.Namespace) -> int:
    catalog = _open_catalog(args)
    try:
        runs = catalog.runs(args.dataset, limit=args.limit)
    finally:
        catalog.close()
    if args.json:
        _emit_json([_run_dict(r) for r in runs])
        return EXIT_OK
    _table(
        None,
        ("run", "dataset", "driver", "status", "started", "listed", "+", "~", "-", "reason"),
        (
            (
                r.id,
                r.dataset,
                r.driver,
                r.status,
                _iso(r.started_at),
                f"{r.counts.listed:,}",
                f"{r.counts.added:,}",
                f"{r.counts.updated:,}",
                f"{r.counts.deleted:,}",
                r.reason or "",
            )
            for r in runs
        ),
    )
    return EXIT_OK


def cmd_changes(args: argparse.Namespace) -> int:
    catalog = _open_catalog(args)
    try:
        if catalog.find_id("dataset", args.dataset) is None:
            raise UsageError(f"unknown dataset {args.dataset!r} (see `syncd datasets ls`)")
        changes = catalog.changes(args.dataset, since=args.since, limit=args.limit)
        if args.json:
            for c in changes:
                _emit_json(
                    {
                        "id": c.id,
                        "dataset": c.dataset,
                        "driver": c.driver,
                        "key": c.key,
                        "op": str(c.op),
                        "size": c.size,
                        "etag": c.etag,
                        "version": c.version,
                        "at": _iso(c.at),
                        "run_id": c.run_id,
                    }
                )
        else:
            _table(
                None,
                ("id", "op", "driver", "key", "size", "at", "run"),
                (
                    (c.id, c.op, c.driver, c.key, _size(c.size), _iso(c.at), c.run_id)
                    for c in changes
                ),
            )
    finally:
        catalog.close()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from syncd.demo import prepare

    folder = Path(args.dir).resolve()
    config_file = prepare(folder)
    print(f"sample folder: {folder / 'data'}")
    print(f"config:        {config_file}")
    demo_args = argparse.Namespace(**{**vars(args), "config": str(config_file)})
    for attempt in ("first sync", "second sync (nothing changed: nothing written)"):
        print(f"\n== {attempt}")
        code = cmd_sync(
            argparse.Namespace(
                **{
                    **vars(demo_args),
                    "dataset": None,
                    "driver": None,
                    "dry_run": False,
                    "json": False,
                    "max_delete": None,
                }
            )
        )
        if code != EXIT_OK:
            return code
    print("\n== items in dataset 'demo'")
    cmd_items_ls(
        argparse.Namespace(
            **{
                **vars(demo_args),
                "dataset": "demo",
                "prefix": "",
                "limit": None,
                "deleted": False,
                "json": False,
            }
        )
    )
    print(f"\nTry: syncd --config {config_file} changes demo --since 0")
    print(f"     syncd --config {config_file} manifest demo --format encord-json --probe")
    return EXIT_OK


# -- parser ----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Keep labeling datasets in step with buckets and folders.",
    )
    parser.add_argument("--config", help="config file (default: $SYNCD_CONFIG or ./syncd.yaml)")
    parser.add_argument("--catalog", help="catalog URL (overrides config and $SYNCD_CATALOG_URL)")
    parser.add_argument("--log-level", default=None, help="debug, info, warning, error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="write a commented example syncd.yaml")
    p.add_argument("--path", default="syncd.yaml")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("config", help="configuration tools")
    config_sub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    v = config_sub.add_parser("validate", help="check the config; report every error")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_config_validate)

    p = sub.add_parser("sync", help="reconcile drivers into datasets")
    p.add_argument("--dataset")
    p.add_argument("--driver")
    p.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    p.add_argument("--json", action="store_true", help="print a JSON result on stdout")
    p.add_argument("--max-delete", help="override every driver's max_delete ('10%%' or 500)")
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("datasets", help="datasets in the catalog")
    ds_sub = p.add_subparsers(dest="datasets_command", required=True, metavar="ACTION")
    ls = ds_sub.add_parser("ls", help="list datasets")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_datasets_ls)

    p = sub.add_parser("items", help="items of a dataset")
    items_sub = p.add_subparsers(dest="items_command", required=True, metavar="ACTION")
    ls = items_sub.add_parser("ls", help="list items in (driver, key) order")
    ls.add_argument("dataset")
    ls.add_argument("--prefix", default="")
    ls.add_argument("--limit", type=int)
    ls.add_argument("--deleted", action="store_true", help="include tombstones")
    ls.add_argument("--json", action="store_true", help="JSON Lines, one item per line")
    ls.set_defaults(func=cmd_items_ls)

    p = sub.add_parser("runs", help="sync run history")
    runs_sub = p.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    ls = runs_sub.add_parser("ls", help="recent runs, newest first")
    ls.add_argument("--dataset")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_runs_ls)

    p = sub.add_parser("changes", help="the change feed of a dataset")
    p.add_argument("dataset")
    p.add_argument("--since", type=int, default=0, help="changes with id greater than this")
    p.add_argument("--limit", type=int)
    p.add_argument("--json", action="store_true", help="JSON Lines, one change per line")
    p.set_defaults(func=cmd_changes)

    p = sub.add_parser("demo", help="sync a generated sample folder into SQLite and show it")
    p.add_argument("--dir", default="syncd-demo")
    p.set_defaults(func=cmd_demo)

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    log = structlog.get_logger("syncd.cli")
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"config error:\n{exc}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SyncdError as exc:
        log.error("command failed", error=logs.scrub(str(exc)))
        print(f"error: {logs.scrub(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    return code


if __name__ == "__main__":
    sys.exit(main())
