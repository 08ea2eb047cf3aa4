"""Reconcile many (dataset, driver) pairs: what the CLI, the daemon and the API call.

One driver failing never stops the others: a store that cannot be opened (a missing SDK, an
unknown profile, refused credentials) becomes a failed result for its pair, recorded in the
run history like any other run, and the next pair runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial

import structlog

from syncd.catalog.types import Catalog, RunConflict, RunCounts, RunStatus
from syncd.config import Config, Dataset, Driver, MaxDelete, check_driver
from syncd.errors import ConfigError, SyncdError
from syncd.logs import scrub
from syncd.reconcile import PLAN_LIMIT, Progress, SyncResult, reconcile
from syncd.shards import Shard, shards_of
from syncd.storage import open_store
from syncd.storage.types import Lister

log = structlog.get_logger("syncd.sync")

#: Opens the store of one driver; tests and the daemon may pass their own.
StoreOpener = Callable[[Driver, Config], Lister]
#: Gives each pair a progress callback for the duration of its run (or None).
ProgressFor = Callable[[Dataset, Driver], AbstractContextManager[Progress | None]]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A pair another live run held: nothing was done for it."""

    dataset: str
    driver: str
    error: str


@dataclass(slots=True)
class SyncReport:
    dry_run: bool
    results: list[SyncResult] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)


def config_store(driver: Driver, config: Config) -> Lister:
    """The driver's store, after the checks that need the environment (secrets resolvable,
    the profile known, credentials well formed), so a mistake is a located error for this
    driver alone."""
    problems = check_driver(config, driver.name)
    if problems:
        raise ConfigError("\n".join(problems))
    return open_store(driver, config.integration(driver.integration), config.base_dir)


def _no_progress(dataset: Dataset, driver: Driver) -> AbstractContextManager[Progress | None]:
    return nullcontext(None)


def sync_pairs(
    catalog: Catalog,
    config: Config,
    pairs: Iterable[tuple[Dataset, Driver]],
    *,
    dry_run: bool = False,
    max_delete: MaxDelete | None = None,
    progress_for: ProgressFor = _no_progress,
    open_for: StoreOpener = config_store,
    plan_limit: int | None = PLAN_LIMIT,
    shard: int | None = None,
) -> SyncReport:
    """Reconcile each pair in turn, a sharded driver shard by shard (only shard index
    `shard`, when given); see `syncd.reconcile.reconcile` for one pair."""
    report = SyncReport(dry_run)
    for dataset, driver in pairs:
        provider = config.integration(driver.integration).provider
        run: Callable[..., SyncResult]
        if driver.listing == "inventory":
            from syncd.inventory.reconcile import reconcile_inventory

            run = partial(reconcile_inventory, catalog, config)
        else:
            try:
                store = open_for(driver, config)
            except SyncdError as exc:
                report.results.append(
                    store_failed(catalog, dataset.name, driver, provider, exc, dry_run=dry_run)
                )
                continue
            run = partial(reconcile, catalog, store)
        for part in selected_shards(driver, shard):
            try:
                with progress_for(dataset, driver) as progress:
                    report.results.append(
                        run(
                            dataset=dataset.name,
                            driver=driver,
                            provider=provider,
                            dry_run=dry_run,
                            max_delete=max_delete,
                            progress=progress,
                            plan_limit=plan_limit,
                            shard=part,
                        )
                    )
            except RunConflict as exc:
                report.conflicts.append(Conflict(dataset.name, driver.name, str(exc)))
    return report


def selected_shards(driver: Driver, index: int | None = None) -> list[Shard | None]:
    """The runs one reconcile of `driver` is: each of its shards (or shard `index` alone),
    or the whole driver when it has none."""
    shards = shards_of(driver.shards)
    if index is None:
        return list(shards) or [None]
    if not shards:
        raise ConfigError(f"driver {driver.name} has no shards: leave out --shard")
    if not 0 <= index < len(shards):
        raise ConfigError(
            f"driver {driver.name} has {len(shards)} shards: --shard takes 1 to {len(shards)}"
        )
    return [shards[index]]


def store_failed(
    catalog: Catalog,
    dataset: str,
    driver: Driver,
    provider: str,
    exc: SyncdError,
    *,
    dry_run: bool,
) -> SyncResult:
    """A pair whose store could not be opened: a failed run that names why."""
    reason = scrub(str(exc))
    result = SyncResult(
        dataset,
        driver.name,
        RunStatus.FAILED,
        RunCounts(),
        dry_run=dry_run,
        reason=reason,
        error_kind="transient" if exc.transient else "permanent",
    )
    log.warning("driver not synced", dataset=dataset, driver=driver.name, reason=reason)
    if dry_run:
        return result
    dataset_id = catalog.dataset_id(dataset)
    driver_id = catalog.driver_id(driver.name, provider, driver.bucket, driver.prefix)
    try:
        result.run_id = catalog.begin_run(dataset_id, driver_id, watermark=catalog.last_change_id())
    except RunConflict:
        return result  # the live run's own history stands
    catalog.finish_run(result.run_id, RunStatus.FAILED, result.counts, (), reason)
    return result
