"""The `syncd` entry point: the parser, logging, and one exit code per outcome.

Exit codes: 0 ok, 1 failure, 2 usage or configuration error, 3 safety stop (nothing
deleted). With several (dataset, driver) pairs the worst wins: 2, then 1, then 3, then 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

import structlog

from syncd import __version__, logs
from syncd.cli import (
    catalog_views,
    config,
    dead_letters,
    demo,
    deploy,
    manifest,
    push,
    run,
    status,
    sync,
)
from syncd.cli.context import EXIT_FAILURE, EXIT_USAGE, UsageError
from syncd.errors import ConfigError, SyncdError

#: Modules that add subcommands, in the order `syncd --help` lists them.
COMMANDS = (config, sync, push, run, catalog_views, status, dead_letters, manifest, deploy, demo)
LOG_LEVELS = ("debug", "info", "warning", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncd",
        description="Keep labeling datasets in step with buckets and folders.",
    )
    parser.add_argument("--version", action="version", version=f"syncd {__version__}")
    parser.add_argument("--config", help="config file (default: $SYNCD_CONFIG or ./syncd.yaml)")
    parser.add_argument("--catalog", help="catalog URL (overrides config and $SYNCD_CATALOG_URL)")
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        help="debug, info, warning or error (default: $SYNCD_LOG_LEVEL or info)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.register(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C is so that everything unwinds the same way."""


def _terminated(signum: int, frame: object) -> None:
    # Unwinds like Ctrl-C: the open transaction rolls back, the run is recorded
    # `interrupted` with what was committed, and the process exits 143.
    raise Terminated


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)
    logs.configure(args.log_level)
    log = structlog.get_logger("syncd.cli")
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"config error:\n{logs.scrub(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"error: {logs.scrub(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except SyncdError as exc:
        message = logs.scrub(str(exc))
        log.error("command failed", error=message)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt as exc:
        # A service manager's log shows why the process ended; the code is 128 + the
        # signal's number, as a shell reports it.
        if isinstance(exc, Terminated):
            print("terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
