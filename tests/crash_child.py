"""A sync process for the crash test: reconciles a generated listing into CATALOG_URL.

Usage: python -m tests.crash_child CATALOG_URL VERSION COUNT [DRIVER]
Version 1 lists k000000..; version 2 drops every 5th key and changes every 3rd.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

from syncd import logs
from syncd.catalog import open_catalog
from syncd.config import Driver, MaxDelete
from syncd.reconcile import reconcile
from syncd.storage.types import ObjectInfo


def listing(version: int, count: int) -> Iterator[ObjectInfo]:
    for n in range(count):
        if version == 2 and n % 5 == 0:
            continue
        etag = f"v2-{n}" if version == 2 and n % 3 == 0 else f"v1-{n}"
        yield ObjectInfo(key=f"data/k{n:07d}.jpg", size=n, mtime=1_700_000_000.0, etag=etag)


class GeneratedStore:
    name = "generated"
    sorted_listing = True
    skipped_by_store: tuple[str, ...] = ()

    def __init__(self, version: int, count: int) -> None:
        self.version = version
        self.count = count

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ObjectInfo]:
        return listing(self.version, self.count)


def main() -> None:
    logs.configure("warning")
    url, version, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    driver = sys.argv[4] if len(sys.argv) > 4 else "gen"
    catalog = open_catalog(url)
    result = reconcile(
        catalog,
        GeneratedStore(version, count),
        dataset="crash",
        driver=Driver(name=driver, integration="x", bucket="b"),
        provider="memory",
        max_delete=MaxDelete(fraction=1.0),
    )
    print(result.status, result.counts.as_dict())


if __name__ == "__main__":
    main()
