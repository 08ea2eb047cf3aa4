"""`syncd run`: the daemon, until SIGTERM; `--once` for cron and tests."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

import structlog

from syncd.cli.context import EXIT_USAGE, UsageError, config_of
from syncd.config import check_config

log = structlog.get_logger("syncd.daemon")


def cmd_run(args: argparse.Namespace) -> int:
    try:
        from syncd.daemon.runner import run_daemon
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"`syncd run` needs the daemon extra ({exc.name} is missing): "
            "pip install 'syncd[daemon]'"
        ) from None

    config = config_of(args)
    problems = check_config(config)
    if problems:
        print("config error:\n" + "\n".join(problems), file=sys.stderr)
        return EXIT_USAGE
    code = run_daemon(config, args.catalog, once=args.once)
    lingering = [t.name for t in threading.enumerate() if t.is_alive() and not t.daemon]
    if len(lingering) > 1:
        # A worker stuck in a store's retries past the grace: everything committed is
        # committed, so leave now rather than hold the service manager's stop.
        log.warning("work still running after the shutdown grace; exiting", threads=lingering[1:])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


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
