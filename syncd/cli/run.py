"""`syncd run`: the daemon, until SIGTERM; `--once` for cron and tests."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from syncd.cli.context import EXIT_USAGE, config_of
from syncd.config import check_config


def cmd_run(args: argparse.Namespace) -> int:
    from syncd.daemon.runner import run_daemon

    config = config_of(args)
    problems = check_config(config)
    if problems:
        print("config error:\n" + "\n".join(problems), file=sys.stderr)
        return EXIT_USAGE
    return run_daemon(config, args.catalog, once=args.once)


def register(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="keep every dataset in step: schedules, queue sources, folder watchers",
        description=(
            "Runs until SIGTERM or Ctrl-C. Any number of replicas may share one PostgreSQL "
            "catalog: each schedule slot runs once across them, each driver under a lease."
        ),
    )
    p.add_argument(
        "--once",
        action="store_true",
        help="run every due schedule and drain every queue once, then exit (cron, tests)",
    )
    p.set_defaults(func=cmd_run)
