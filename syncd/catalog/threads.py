"""A catalog connection per thread: what lets the daemon's and the API's workers write at
once (a connection is never shared between threads)."""

from __future__ import annotations

import contextlib
import threading

from syncd.catalog import Catalog, open_catalog
from syncd.errors import SyncdError


class ThreadCatalogs:
    """One catalog connection per thread, opened on first use, all closed at the end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._local = threading.local()
        self._all: list[Catalog] = []
        self._lock = threading.Lock()

    def get(self) -> Catalog:
        catalog: Catalog | None = getattr(self._local, "catalog", None)
        if catalog is None:
            catalog = open_catalog(self.url)
            self._local.catalog = catalog
            with self._lock:
                self._all.append(catalog)
        return catalog

    def close(self) -> None:
        with self._lock:
            for catalog in self._all:
                with contextlib.suppress(SyncdError):
                    catalog.close()
            self._all.clear()
