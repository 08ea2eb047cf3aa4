"""What every command shares: exit codes, usage errors, and the project its arguments name."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable

from syncd.catalog import Catalog, open_catalog
from syncd.catalog.types import RunStatus
from syncd.config import CATALOG_ENV, Config, MaxDelete, load_config
from syncd.errors import ConfigError, SyncdError
from syncd.project import Project

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_SAFETY = 0, 1, 2, 3


class UsageError(SyncdError):
    """A command was called with arguments that cannot work (exit 2)."""


def config_of(args: argparse.Namespace) -> Config:
    return load_config(args.config)


def project_of(args: argparse.Namespace, config: Config | None = None) -> Project:
    """The project of `--config` (and `--catalog`), loading the config if not given."""
    return Project(config or config_of(args), args.catalog)


def catalog_of(args: argparse.Namespace) -> Catalog:
    """The catalog to read: `--catalog`, else the config's, else `$SYNCD_CATALOG_URL` alone
    (reading needs no config)."""
    if args.catalog:
        return open_catalog(args.catalog)
    try:
        config = config_of(args)
    except ConfigError:
        if os.environ.get(CATALOG_ENV):
            return open_catalog(os.environ[CATALOG_ENV])
        raise
    return open_catalog(config.catalog_url())


def known_dataset(catalog: Catalog, name: str) -> None:
    if catalog.find_id("dataset", name) is None:
        raise UsageError(f"unknown dataset {name!r} (see `syncd datasets ls`)")


def max_delete_arg(text: str) -> MaxDelete:
    """argparse type for --max-delete: '10%', a count, or an error naming the value."""
    try:
        limit = MaxDelete.model_validate(text)
    except Exception:
        raise argparse.ArgumentTypeError(
            f"{text!r}: write a percentage from 0% to 100% (10%) or a whole number (500)"
        ) from None
    return limit


def exit_for(statuses: Iterable[RunStatus], conflicts: int = 0) -> int:
    """The worst outcome wins: failure (1), then safety stop (3), then success (0)."""
    codes = set()
    for status in statuses:
        if status in (RunStatus.FAILED, RunStatus.COMPLETED_WITH_ERRORS, RunStatus.INTERRUPTED):
            codes.add(EXIT_FAILURE)
        elif status is RunStatus.ABORTED:
            codes.add(EXIT_SAFETY)
    if conflicts:
        codes.add(EXIT_FAILURE)
    for code in (EXIT_FAILURE, EXIT_SAFETY):
        if code in codes:
            return code
    return EXIT_OK
