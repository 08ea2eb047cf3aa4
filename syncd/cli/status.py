"""`syncd status`: what the catalog says about every dataset, driver, dead letter and lease
(the status page's summary, read without a daemon)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from syncd.cli.context import EXIT_FAILURE, EXIT_OK, catalog_of
from syncd.cli.render import emit_json, size, table


def cmd_status(args: argparse.Namespace) -> int:
    # Imported here: the page module brings aiohttp (when installed) that no other command needs.
    from syncd.status import status_summary

    catalog = catalog_of(args)
    try:
        summary = status_summary(catalog)
    finally:
        catalog.close()
    code = EXIT_FAILURE if summary["failing"] else EXIT_OK
    if args.json:
        emit_json({**summary, "exit_code": code})
        return code
    show(summary)
    return code


def show(summary: dict[str, Any]) -> None:
    from syncd.status import duration, letters_count

    datasets = summary["datasets"]
    table(
        "datasets",
        ("dataset", "drivers", "items", "size", "tombstones"),
        (
            (
                d["name"],
                ", ".join(r["name"] for r in d["drivers"]),
                f"{d['items']:,}",
                size(d["bytes"]),
                f"{d['deleted']:,}",
            )
            for d in datasets
        ),
    )
    table(
        "last run per driver",
        ("dataset", "driver", "run", "status", "age", "counts", "reason"),
        (_driver_row(d["name"], r) for d in datasets for r in d["drivers"]),
    )
    for failing in summary["failing"]:
        print(
            f"failing: {failing['dataset']}/{failing['driver']}: run {failing['id']} "
            f"{failing['status']}: {failing['reason'] or 'no reason recorded'}"
        )
    letters = summary["dead_letters"]
    print(f"dead letters: {letters_count(summary)}")
    if letters["newest"]:
        table(
            None,
            ("id", "received", "source", "attempts", "reason"),
            (
                (d["id"], d["received_at"], d["source"], d["attempts"], d["reason"])
                for d in letters["newest"]
            ),
        )
    if summary["leases"]:
        table(
            "leases",
            ("lease", "owner", "epoch", "expires", "in"),
            (
                (
                    lease["name"],
                    lease["owner"],
                    lease["epoch"],
                    lease["expires_at"],
                    duration(lease["expires_in_seconds"]),
                )
                for lease in summary["leases"]
            ),
        )
    else:
        print("leases: none held")
    sys.stdout.flush()


def _driver_row(dataset: str, row: dict[str, Any]) -> tuple[Any, ...]:
    from syncd.status import counts_text, duration

    run = row["last_run"]
    if run is None:
        return (dataset, row["name"], "", "never run", "", "", "")
    failing = row["last_finished"] if row["failing"] else None
    status = run["status"]
    if failing and failing["id"] != run["id"]:
        status += f" (last finished: {failing['status']})"
    reason = (failing or {}).get("reason") or run["reason"] or ""
    return (
        dataset,
        row["name"],
        run["id"],
        status,
        f"{duration(row['age_seconds'])} ago",
        counts_text(run["counts"]),
        reason,
    )


def register(sub: Any) -> None:
    p = sub.add_parser(
        "status",
        help="datasets, each driver's last run, dead letters and leases, from the catalog",
        description=(
            "A summary read from the catalog alone (no daemon needed): datasets with their "
            "items and size, each driver's last run with its status and age, failing "
            "drivers with their reasons, the dead-letter count and the newest few, and the "
            "leases held with their owner and expiry. Exit status: 0, or 1 when any "
            "driver's last finished run failed or was aborted."
        ),
    )
    p.add_argument("--json", action="store_true", help="one JSON object (with `exit_code`)")
    p.set_defaults(func=cmd_status)
