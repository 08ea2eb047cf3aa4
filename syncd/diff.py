"""The pure merge of a sorted listing with the catalog's rows of the same driver.

Like rclone's march: two sorted streams walked in step, no I/O, no dict of all keys. Both
sides must be strictly increasing in UTF-8 byte order (Python `str` order); a listing that
is not raises `ListingOrderError` before anything for the out-of-order key is yielded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from syncd.catalog.types import CatalogRow
from syncd.errors import ListingOrderError
from syncd.storage.types import ObjectInfo


@dataclass(frozen=True, slots=True)
class Added:
    """Listed but not live in the catalog; `row` is the tombstone when there is one."""

    info: ObjectInfo
    row: CatalogRow | None


@dataclass(frozen=True, slots=True)
class Changed:
    info: ObjectInfo
    row: CatalogRow


@dataclass(frozen=True, slots=True)
class Removed:
    row: CatalogRow


@dataclass(frozen=True, slots=True)
class Same:
    pass


SAME = Same()

Difference = Added | Changed | Removed | Same


def differs(info: ObjectInfo, row: CatalogRow) -> bool:
    return (
        info.size != row.size
        or info.mtime != row.mtime
        or info.etag != row.etag
        or info.version != row.version
    )


def diff(listing: Iterable[ObjectInfo], rows: Iterable[CatalogRow]) -> Iterator[Difference]:
    """Yield one difference per listed object and per live row the listing lacks."""
    objects = iter(listing)
    catalog = iter(rows)
    info = next(objects, None)
    row = next(catalog, None)
    previous = ""
    first = True
    while info is not None:
        key = info.key
        if not first and key <= previous:
            raise ListingOrderError(previous, key)
        first = False
        while row is not None and row.key < key:
            if not row.deleted:
                yield Removed(row)
            row = next(catalog, None)
        if row is not None and row.key == key:
            if row.deleted:
                yield Added(info, row)
            elif differs(info, row):
                yield Changed(info, row)
            else:
                yield SAME
            row = next(catalog, None)
        else:
            yield Added(info, None)
        previous = key
        info = next(objects, None)
    while row is not None:
        if not row.deleted:
            yield Removed(row)
        row = next(catalog, None)
