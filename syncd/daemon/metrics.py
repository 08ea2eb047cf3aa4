"""The daemon's Prometheus metrics, in its own registry (named by Prometheus conventions:
`_total` counters, `_seconds` histograms, base units). Labels are config names and queue
names, never a secret or a key."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from syncd.catalog.types import DatasetSummary
from syncd.events.apply import BatchResult
from syncd.reconcile import SyncResult

# `_created` series double every counter's lines and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RUN_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0)
#: Seconds a catalog summary is reused between scrapes (it counts every dataset's items).
SUMMARY_TTL = 10.0


class DaemonMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter(
            "syncd_sync_runs",
            "Sync runs finished, by outcome.",
            ["dataset", "driver", "status"],
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "syncd_sync_run_duration_seconds",
            "How long sync runs took.",
            ["dataset", "driver"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self.applied = Counter(
            "syncd_events_applied",
            "Item changes written from events.",
            ["source"],
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "syncd_events_dead_lettered",
            "Messages that could not be understood, kept in the dead-letter table.",
            ["source"],
            registry=self.registry,
        )
        self.released = Counter(
            "syncd_events_released",
            "Messages given back to their queue because their commit failed.",
            ["source"],
            registry=self.registry,
        )
        self.lag = Histogram(
            "syncd_event_lag_seconds",
            "From a message's arrival at this replica to its commit.",
            ["source"],
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.source_errors = Counter(
            "syncd_source_errors",
            "Failures receiving from an event source (each is retried).",
            ["source"],
            registry=self.registry,
        )

    def run_finished(self, result: SyncResult) -> None:
        self.runs.labels(result.dataset, result.driver, str(result.status)).inc()
        self.run_seconds.labels(result.dataset, result.driver).observe(result.elapsed)

    def batch_applied(self, source: str, result: BatchResult, lags: list[float]) -> None:
        self.applied.labels(source).inc(result.applied)
        self.dead_lettered.labels(source).inc(result.dead_lettered)
        self.released.labels(source).inc(len(result.failed))
        histogram = self.lag.labels(source)
        for lag in lags:
            histogram.observe(lag)

    def source_failed(self, source: str) -> None:
        self.source_errors.labels(source).inc()

    def watch_catalog(
        self, summaries: Callable[[], list[DatasetSummary]], leases_held: Callable[[], int]
    ) -> None:
        self.registry.register(_CatalogCollector(summaries, leases_held))


class _CatalogCollector(Collector):
    """Gauges read from the catalog at scrape time (cached briefly)."""

    def __init__(
        self, summaries: Callable[[], list[DatasetSummary]], leases_held: Callable[[], int]
    ) -> None:
        self._summaries = summaries
        self._leases_held = leases_held
        self._cache: tuple[float, list[DatasetSummary]] | None = None
        self._lock = threading.Lock()

    def _read(self) -> list[DatasetSummary]:
        with self._lock:
            if self._cache is None or time.monotonic() - self._cache[0] > SUMMARY_TTL:
                self._cache = (time.monotonic(), self._summaries())
            return self._cache[1]

    def collect(self) -> Iterator[Metric]:
        items = GaugeMetricFamily("syncd_items", "Live items per dataset.", labels=["dataset"])
        size = GaugeMetricFamily(
            "syncd_items_bytes", "Bytes of the live items per dataset.", labels=["dataset"]
        )
        for summary in self._read():
            items.add_metric([summary.name], summary.items)
            size.add_metric([summary.name], summary.bytes)
        yield items
        yield size
        yield GaugeMetricFamily(
            "syncd_leases_held", "Driver leases this replica holds.", value=self._leases_held()
        )
