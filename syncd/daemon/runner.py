"""`syncd run`: keep every dataset in step by itself.

asyncio at the top (signals, the schedule clock, later the HTTP API); the synchronous core in
worker threads: a bounded pool for reconciles, one thread per queue source or watched folder.
Every thread owns its catalog connection, stores and applier. Any number of replicas may run
on one PostgreSQL catalog: each schedule slot is claimed once across them, and a reconcile
runs under its pair's lease, renewed by a heartbeat and fenced by an epoch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from aiohttp import web

    from syncd.api.context import ApiContext
    from syncd.daemon.pushes import TargetPusher
    from syncd.daemon.webhooks import WebhookDeliverer

from syncd.catalog import RunStatus
from syncd.catalog.threads import ThreadCatalogs
from syncd.catalog.types import Fence, RunConflict
from syncd.config import Config, Dataset, Driver, PubsubSource, WatchSource
from syncd.daemon.consumer import ConsumerStats, Queue, consume
from syncd.daemon.leases import LeaseKeeper
from syncd.daemon.metrics import DaemonMetrics
from syncd.daemon.schedule import Cron, Every, latest_due, next_due, schedule_of
from syncd.errors import SyncdError
from syncd.events.apply import BatchResult, EventApplier, Route
from syncd.reconcile import SyncResult, reconcile
from syncd.shards import Shard
from syncd.storage.types import ObjectInfo, Store
from syncd.sync import config_store, selected_shards, store_failed

log = structlog.get_logger("syncd.daemon")

#: How far back a starting replica looks for a slot nobody ran (it runs the latest only).
LOOKBACK = 86_400.0
#: Names this replica in leases and slots when the config does not (one config, N replicas).
REPLICA_ENV = "SYNCD_REPLICA"
#: Seconds between looks at the schedules.
TICK = 0.5


def pair_name(dataset: str, driver: str, shard: Shard | None = None) -> str:
    """Names a pair's (or one shard's) lease and schedule slots."""
    return f"{dataset}/{driver}" if shard is None else f"{dataset}/{driver}#{shard.label}"


class RouteStats:
    """Stats a settle needs: a store per driver, opened once per thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._local = threading.local()

    def stat(self, route: Route, key: str) -> ObjectInfo:
        stores: dict[str, Store] = getattr(self._local, "stores", None) or {}
        self._local.stores = stores
        store = stores.get(route.driver.name)
        if store is None:
            opened = config_store(route.driver, self.config)
            assert isinstance(opened, Store)
            store = stores[route.driver.name] = opened
        return store.stat(key)


@dataclass(slots=True)
class PairState:
    dataset: str
    driver: str
    schedule: Every | Cron
    running: bool = False
    last_slot: int | None = None
    last_result: SyncResult | None = None
    next_due: float | None = None
    shard: Shard | None = None


@dataclass(slots=True)
class DaemonState:
    """What the daemon is doing, for the status page, /readyz and /metrics."""

    replica: str
    started_at: float = field(default_factory=time.time)
    pairs: dict[str, PairState] = field(default_factory=dict)
    sources: dict[str, ConsumerStats] = field(default_factory=dict)
    stopping: bool = False


class Daemon:
    def __init__(self, config: Config, catalog_url: str | None = None) -> None:
        self.config = config
        self.settings = config.daemon
        self.catalog_url = catalog_url or config.catalog_url()
        replica = (
            self.settings.replica
            or os.environ.get(REPLICA_ENV)
            or f"{socket.gethostname()}:{os.getpid()}"
        )
        self.state = DaemonState(replica)
        self.stop = threading.Event()
        self.catalogs = ThreadCatalogs(self.catalog_url)
        self.leases = LeaseKeeper(self.catalog_url, replica, self.settings.lease_ttl)
        self.sync_pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix="syncd-sync")
        self.stats = RouteStats(config)
        self.metrics = DaemonMetrics()
        self._threads: list[threading.Thread] = []
        self._jobs: set[Future[SyncResult | None]] = set()
        self._jobs_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        self.deliverer: WebhookDeliverer | None = None
        self.pusher: TargetPusher | None = None
        for dataset, driver in config.pairs():
            for shard in selected_shards(driver):
                name = pair_name(dataset.name, driver.name, shard)
                self.state.pairs[name] = PairState(
                    dataset.name, driver.name, self._schedule(driver), shard=shard
                )

    def _schedule(self, driver: Driver) -> Every | Cron:
        if driver.schedule is not None:
            return schedule_of(driver.schedule)
        # Notifications are not guaranteed, and a driver with neither a schedule nor a
        # source must still stay current: the backfill reconciles it.
        return Every(self.settings.backfill, 0.1)

    # -- reconciles ------------------------------------------------------------------------

    def submit_sync(
        self,
        dataset: Dataset,
        driver: Driver,
        slot: int | None = None,
        started: Future[int | str] | None = None,
        shard: Shard | None = None,
    ) -> Future[SyncResult | None] | None:
        """A reconcile of the pair (or one shard of it) in the sync pool (for schedule
        `slot`, when given), unless one is already running here. `started` gets the run id
        once the run is recorded, or the reason it did not start."""
        pair = self.state.pairs[pair_name(dataset.name, driver.name, shard)]
        if pair.running or self.stop.is_set():
            if started is not None:
                started.set_result(
                    "shutting down" if self.stop.is_set() else "a run of it is in progress here"
                )
            return None
        pair.running = True
        future = self.sync_pool.submit(self._sync, dataset, driver, slot, started, shard)
        with self._jobs_lock:
            self._jobs.add(future)
        future.add_done_callback(self._job_done)
        return future

    def trigger(
        self, dataset: Dataset, driver: Driver
    ) -> list[tuple[Shard | None, Future[int | str]]]:
        """Start a reconcile now (the API's POST /sync), of every shard of a sharded driver:
        each run's id, or why it did not start."""
        out = []
        for shard in selected_shards(driver):
            started: Future[int | str] = Future()
            self.submit_sync(dataset, driver, started=started, shard=shard)
            out.append((shard, started))
        return out

    def _job_done(self, future: Future[SyncResult | None]) -> None:
        with self._jobs_lock:
            self._jobs.discard(future)

    def _sync(
        self,
        dataset: Dataset,
        driver: Driver,
        slot: int | None,
        started: Future[int | str] | None,
        shard: Shard | None = None,
    ) -> SyncResult | None:
        name = pair_name(dataset.name, driver.name, shard)
        pair = self.state.pairs[name]
        structlog.contextvars.bind_contextvars(dataset=dataset.name, driver=driver.name)

        def not_started(reason: str) -> None:
            if started is not None and not started.done():
                started.set_result(reason)

        if self.stop.is_set():
            # Queued before the stop: it does not start now.
            not_started("shutting down")
            pair.running = False
            structlog.contextvars.unbind_contextvars("dataset", "driver")
            return None
        try:
            # The lease first, the slot second: a slot is claimed only by the replica that
            # can run it now, so a busy pair never makes a slot vanish unrun.
            fence = self.leases.acquire(f"sync:{name}")
            if fence is None:
                log.debug("another replica holds the driver's lease")
                not_started("another replica is syncing it")
                return None
            try:
                if slot is not None:
                    won = self.catalogs.get().claim_slot(name, slot, self.state.replica)
                    pair.last_slot = slot
                    if not won:
                        return None
                    log.info("schedule slot due", slot=slot)
                result = self._reconcile(dataset, driver, fence, started, shard)
                pair.last_result = result
                self.metrics.run_finished(result)
                self._committed()
                if result.run_id is not None:
                    if started is not None and not started.done():
                        started.set_result(result.run_id)
                else:
                    not_started(result.reason or "not started")
                return result
            finally:
                self.leases.release(fence)
        except RunConflict as exc:
            log.info("a run of this driver is live elsewhere", reason=str(exc))
            not_started(str(exc))
            return None
        except Exception as exc:  # a worker must never take the daemon down
            log.error("sync crashed", error=str(exc), exc_info=True)
            not_started(f"internal error: {exc}")
            return None
        finally:
            pair.running = False
            structlog.contextvars.unbind_contextvars("dataset", "driver")

    def _reconcile(
        self,
        dataset: Dataset,
        driver: Driver,
        fence: Fence,
        started: Future[int | str] | None,
        shard: Shard | None,
    ) -> SyncResult:
        catalog = self.catalogs.get()
        provider = self.config.integration(driver.integration).provider

        def on_start(run_id: int) -> None:
            if started is not None and not started.done():
                started.set_result(run_id)

        if driver.listing == "inventory":
            from syncd.inventory.reconcile import reconcile_inventory

            return reconcile_inventory(
                catalog,
                self.config,
                dataset=dataset.name,
                driver=driver,
                provider=provider,
                fence=fence,
                stop=self.stop,
                on_start=on_start,
                shard=shard,
            )
        try:
            store = config_store(driver, self.config)
        except SyncdError as exc:
            return store_failed(catalog, dataset.name, driver, provider, exc, dry_run=False)
        return reconcile(
            catalog,
            store,
            dataset=dataset.name,
            driver=driver,
            provider=provider,
            fence=fence,
            stop=self.stop,
            on_start=on_start,
            shard=shard,
        )

    def _due(self, now: float, not_before: float) -> None:
        """Start every pair whose latest slot since `not_before` this replica has not seen."""
        for dataset, driver in self.config.pairs():
            for shard in selected_shards(driver):
                name = pair_name(dataset.name, driver.name, shard)
                pair = self.state.pairs[name]
                pair.next_due = next_due(pair.schedule, name, now)[1]
                if pair.running:
                    continue
                slot = latest_due(pair.schedule, name, now, not_before)
                if slot is not None and slot != pair.last_slot:
                    self.submit_sync(dataset, driver, slot, shard=shard)

    # -- sources -----------------------------------------------------------------------------

    def _queue_of(self, driver: Driver) -> Queue:
        source = driver.source
        assert source is not None
        if source.kind == "sqs":
            from syncd.daemon.sqs import SqsQueue

            return SqsQueue(
                source, self.config.integration(driver.integration), self.config.base_dir
            )
        if source.kind == "azure-queue":
            from syncd.daemon.azure_queue import AzureQueue

            integration = self.config.integration(source.integration or driver.integration)
            return AzureQueue(source, integration, self.config.base_dir)
        from syncd.daemon.pubsub import PubsubQueue

        assert source.kind == "pubsub"
        return PubsubQueue(source)

    def _consume(self, driver: Driver, once: bool) -> None:
        source = driver.source
        assert source is not None and not isinstance(source, WatchSource)
        structlog.contextvars.bind_contextvars(driver=driver.name, source=source.kind)
        stats = self.state.sources.setdefault(driver.name, ConsumerStats(latencies=[]))
        label = f"{source.kind}:{driver.name}"

        def on_batch(result: BatchResult, lags: list[float]) -> None:
            self.metrics.batch_applied(label, result, lags)
            if result.applied:
                self._committed()

        def on_error(exc: Exception) -> None:
            self.metrics.source_failed(label)

        while not self.stop.is_set():
            try:
                queue = self._queue_of(driver)
                applier = EventApplier(self.catalogs.get(), self.config)
                consume(
                    queue,
                    applier,
                    stop=self.stop,
                    once=once,
                    wait=source.wait,
                    visibility=source.ack_deadline
                    if isinstance(source, PubsubSource)
                    else source.visibility,
                    stat=self.stats.stat,
                    stats=stats,
                    on_batch=on_batch,
                    on_error=on_error,
                )
                return
            except Exception as exc:
                stats.errors += 1
                stats.last_error = str(exc)
                stats.failing = True
                on_error(exc)
                log.error("source failed; starting it again", error=str(exc))
                if once or self.stop.wait(5.0):
                    return

    def _watch(self, dataset: Dataset, driver: Driver) -> Callable[[], None]:
        """Start a folder watcher for `driver`; return its stop."""
        from pathlib import Path

        from syncd.daemon.watch import FolderWatcher
        from syncd.events.types import Message
        from syncd.storage.filters import key_filter

        source = driver.source
        assert isinstance(source, WatchSource)
        root = Path(driver.bucket).expanduser()
        root = root if root.is_absolute() else self.config.base_dir / root
        stats = self.state.sources.setdefault(driver.name, ConsumerStats(latencies=[]))
        lock = threading.Lock()
        local = threading.local()

        def on_events(events: list[Any]) -> None:
            applier: EventApplier | None = getattr(local, "applier", None)
            if applier is None:
                # The watcher's thread: its log lines name the driver like every other.
                structlog.contextvars.bind_contextvars(driver=driver.name, source="watch")
                applier = local.applier = EventApplier(self.catalogs.get(), self.config)
            message = Message(f"watch:{time.time_ns()}", f"watch:{driver.name}", "", list(events))
            with lock:
                result = applier.apply([message])
            stats.batches += 1
            stats.applied += result.applied
            self.metrics.batch_applied(f"watch:{driver.name}", result, [])
            if result.applied:
                self._committed()

        def on_rescan(folder: str, reason: str) -> None:
            # The whole driver, not the folder: a folder moved out lists empty, and a
            # reconcile of it alone could only refuse to delete.
            log.warning("watcher missed changes; reconciling", folder=folder, reason=reason)
            for shard in selected_shards(driver):
                self.submit_sync(dataset, driver, shard=shard)

        def watcher(polling: bool) -> FolderWatcher:
            return FolderWatcher(
                root,
                key_filter(driver),
                bucket=driver.bucket,
                settle=source.settle,
                polling=polling,
                poll_interval=source.poll_interval,
                on_events=on_events,
                on_rescan=on_rescan,
            )

        watching = watcher(source.polling)
        try:
            watching.start()
        except OSError as exc:
            if source.polling:
                raise
            # Out of inotify instances or watches: polling still works, only slower.
            log.error("cannot watch the folder with inotify; polling it", error=str(exc))
            watching = watcher(True)
            watching.start()
        return watching.stop

    # -- the whole -----------------------------------------------------------------------

    async def run(self, *, once: bool = False) -> int:
        """Until SIGTERM/SIGINT (or, with `once`, until every due slot ran and every queue
        was drained): 0 on a clean stop."""
        loop = asyncio.get_running_loop()
        # Opened (and migrated) here, before any worker: a catalog that cannot open stops
        # the daemon at once, with the reason.
        self.catalogs.get()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.request_stop, signum)
        self.leases.start()
        api = None
        if self.config.api is not None and not once:
            from syncd.api.app import serve
            from syncd.api.context import ApiContext

            self.metrics.watch_catalog(
                lambda: self.catalogs.get().datasets(), lambda: self.leases.stats.held
            )
            context = ApiContext(self.config, self.catalog_url, daemon=self)
            try:
                api = (await serve(context), context)
            except OSError as exc:
                context.close()
                raise SyncdError(f"api.listen {self.config.api.listen}: {exc.strerror}") from None
        if self.config.webhooks and not once:
            from syncd.daemon.webhooks import WebhookDeliverer

            self.deliverer = WebhookDeliverer(
                self.config, self.catalog_url, self.state.replica, self.stop
            )
            self.deliverer.start()
        if self.config.targets:
            from syncd.daemon.pushes import TargetPusher

            self.pusher = TargetPusher(self.config, self.catalog_url, self.state.replica, self.stop)
            if not once:
                self.pusher.start()
        log.info(
            "daemon started", replica=self.state.replica, once=once, pairs=len(self.state.pairs)
        )
        watchers: list[Callable[[], None]] = []
        seen: set[tuple[str, str]] = set()
        for dataset, driver in self.config.pairs():
            if driver.source is None:
                continue
            if isinstance(driver.source, WatchSource):
                if not once:
                    try:
                        watchers.append(self._watch(dataset, driver))
                    except OSError as exc:
                        log.error(
                            "cannot watch the folder; only its schedule keeps it current",
                            driver=driver.name,
                            error=str(exc),
                        )
                continue
            ident = (driver.source.kind, repr(driver.source))
            if ident in seen:
                continue  # one consumer per queue: events are routed to every driver anyway
            seen.add(ident)
            thread = threading.Thread(
                target=self._consume,
                args=(driver, once),
                name=f"syncd-source:{driver.name}",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self._wake = asyncio.Event()
        started = time.time()
        self._due(started, started - LOOKBACK)
        if once:
            await self._drain(loop)
            if self.pusher is not None:
                await loop.run_in_executor(None, self.pusher.push_due, True)
        else:
            while not self.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=TICK)
                # A slot is looked for since the start: one whose pair was busy, or whose
                # lease another replica held, is tried again until someone claims it.
                self._due(time.time(), started - LOOKBACK)
        code = await self._shutdown(loop, watchers, api, self.deliverer)
        if once:
            failed = any(
                p.last_result is not None and p.last_result.status is not RunStatus.SUCCEEDED
                for p in self.state.pairs.values()
            )
            return 1 if failed else code
        return code

    def _committed(self) -> None:
        """Changes were committed: webhooks and targets look now, not at their next poll."""
        if self.deliverer is not None:
            self.deliverer.wake()
        if self.pusher is not None:
            self.pusher.wake()

    def request_stop(self, signum: int | None = None) -> None:
        if not self.stop.is_set():
            log.info("stopping", signal=signal.Signals(signum).name if signum else None)
        self.state.stopping = True
        self.stop.set()
        if self._wake is not None:
            self._wake.set()

    async def _drain(self, loop: asyncio.AbstractEventLoop) -> None:
        for thread in self._threads:
            await loop.run_in_executor(None, thread.join)
        while True:
            with self._jobs_lock:
                jobs = list(self._jobs)
            if not jobs:
                return
            await asyncio.wrap_future(jobs[0])

    async def _shutdown(
        self,
        loop: asyncio.AbstractEventLoop,
        watchers: list[Callable[[], None]],
        api: tuple[web.AppRunner, ApiContext] | None,
        deliverer: WebhookDeliverer | None,
    ) -> int:
        """Stop taking work; let what is in flight finish or stop between batches (nothing
        is acknowledged that was not committed); release the leases; within the grace."""
        self.stop.set()
        deadline = time.monotonic() + self.settings.shutdown_grace
        if api is not None:
            # No new requests; a long poll in progress is answered with what it has.
            await api[0].cleanup()
            api[1].close()
        for stop_watcher in watchers:
            await loop.run_in_executor(None, stop_watcher)
        for thread in self._threads:
            remaining = max(0.0, deadline - time.monotonic())
            await loop.run_in_executor(None, thread.join, remaining)
        with self._jobs_lock:
            jobs = list(self._jobs)
        if jobs:
            remaining = max(0.1, deadline - time.monotonic())
            await asyncio.wait([asyncio.wrap_future(j) for j in jobs], timeout=remaining)
        self.sync_pool.shutdown(wait=False, cancel_futures=True)
        if deliverer is not None:
            remaining = max(0.1, deadline - time.monotonic())
            await loop.run_in_executor(None, deliverer.join, remaining)
        if self.pusher is not None:
            remaining = max(0.1, deadline - time.monotonic())
            await loop.run_in_executor(None, self.pusher.join, remaining)
        await loop.run_in_executor(None, self.leases.stop)
        self.catalogs.close()
        log.info("daemon stopped", replica=self.state.replica)
        return 0

    def source_threads(self) -> list[threading.Thread]:
        return list(self._threads)


def run_daemon(config: Config, catalog_url: str | None = None, *, once: bool = False) -> int:
    return asyncio.run(Daemon(config, catalog_url).run(once=once))
