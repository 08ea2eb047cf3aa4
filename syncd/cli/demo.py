"""`syncd demo`: sync a generated sample folder into SQLite twice and show the dataset."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from syncd.cli.context import EXIT_OK, exit_for
from syncd.cli.render import size, table
from syncd.cli.sync import print_report
from syncd.config import load_config
from syncd.project import Project
from syncd.views import iso


def command_name() -> str:
    """How this very process was started, so the hints it prints work as printed: the
    `syncd` script by its path, else this interpreter with `-m syncd`."""
    script = sys.argv[0]
    if os.path.basename(script) == "syncd" and os.path.isfile(script):
        return shlex.quote(os.path.abspath(script))
    return f"{shlex.quote(sys.executable)} -m syncd"


def cmd_demo(args: argparse.Namespace) -> int:
    from syncd.demo import prepare

    folder = Path(args.dir).resolve()
    config_file = prepare(folder)
    print(f"sample folder: {folder / 'data'}")
    print(f"config:        {config_file}")
    with Project(load_config(str(config_file)), args.catalog) as project:
        for attempt in ("first sync", "second sync (nothing changed: nothing written)"):
            print(f"\n== {attempt}")
            report = project.sync()
            print_report(report)
            code = exit_for((r.status for r in report.results), len(report.conflicts))
            if code != EXIT_OK:
                return code
        print("\n== items in dataset 'demo'")
        table(
            None,
            ("driver", "key", "size", "kind", "modified", "change"),
            (
                (i.driver, i.key, size(i.size), i.media_kind, iso(i.mtime), i.change_id)
                for i in project.items("demo")
            ),
        )
    run = f"{command_name()} --config {shlex.quote(str(config_file))}"
    print(f"\nTry: {run} changes demo --since 0")
    print(f"     {run} manifest demo --format encord-json --probe")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="sync a generated sample folder into SQLite and show it")
    p.add_argument("--dir", default="syncd-demo", help="where to write it (default: syncd-demo)")
    p.set_defaults(func=cmd_demo)
