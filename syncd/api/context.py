"""What the API's handlers share: the config, a catalog connection per worker thread, and
the daemon they are served by (for sync triggers and readiness), if any."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from syncd.catalog import Catalog
from syncd.catalog.threads import ThreadCatalogs
from syncd.config import Config

if TYPE_CHECKING:
    from syncd.daemon.runner import Daemon

T = TypeVar("T")

#: Catalog reads and writes at once on behalf of requests (each thread owns a connection).
API_THREADS = 4


@dataclass
class ApiContext:
    config: Config
    catalog_url: str
    daemon: Daemon | None = None
    catalogs: ThreadCatalogs = field(init=False)
    executor: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self.catalogs = ThreadCatalogs(self.catalog_url)
        self.executor = ThreadPoolExecutor(API_THREADS, thread_name_prefix="syncd-api")

    async def call(self, work: Callable[..., T], *args: Any) -> T:
        """`work(catalog, *args)` in an API thread, on that thread's own catalog connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._with_catalog, work, args)

    def _with_catalog(self, work: Callable[..., T], args: tuple[Any, ...]) -> T:
        catalog: Catalog = self.catalogs.get()
        return work(catalog, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.catalogs.close()


CONTEXT: web.AppKey[ApiContext] = web.AppKey("syncd_context", ApiContext)
