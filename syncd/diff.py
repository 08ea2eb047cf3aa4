"""The pure merge of a sorted listing with the catalog's rows of the same driver.

Like rclone's march: two sorted streams walked in step, no I/O, no dict of all keys. Both
sides must be strictly increasing in UTF-8 byte order (Python `str` order); a listing that
is not raises `ListingOrderError` before anything for the out-of-order key is yielded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import cast

from syncd.catalog.types import CatalogRow, RawRow
from syncd.errors import ListingOrderError
from syncd.storage.types import Gap, Listed, ObjectInfo


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
class Held:
    """A live row under a part of the listing that could not be read: neither updated nor
    deleted."""

    row: CatalogRow


@dataclass(frozen=True, slots=True)
class Same:
    pass


SAME = Same()

#: A `Gap` of the listing is passed on as it is, in key order.
Difference = Added | Changed | Removed | Held | Same | Gap


def differs(info: ObjectInfo, row: RawRow) -> bool:
    """True when the listed object is not the one the row describes.

    Size and content tag decide when both sides have a tag; mtime only when one lacks it. An
    item an event wrote carries the event's time, which never equals the listing's
    LastModified to the millisecond: comparing it would make every backfill rewrite every
    item that events kept current. A row marked for verification (row[11]) is rewritten
    from what the listing observed.
    """
    if info.size != row[1] or info.version != row[4] or row[11]:
        return True
    if info.etag is not None and row[3] is not None:
        return bool(info.etag != row[3])
    return bool(info.mtime != row[2] or info.etag != row[3])


def diff(listing: Iterable[Listed], rows: Iterable[RawRow]) -> Iterator[Difference]:
    """Yield one difference per listed object and per live row the listing lacks.

    `rows` are tuples in `CatalogRow` field order (key first, `deleted` sixth). A live row
    the listing lacks is `Held` when an error `Gap` covers its key, else `Removed`.
    """
    make = CatalogRow._make
    catalog = iter(rows)
    row = next(catalog, None)
    row_key = row[0] if row is not None else None
    previous = None
    gap: Gap | None = None
    for info in listing:
        key = info[0]
        if previous is not None and key <= previous:
            raise ListingOrderError(previous, key)
        previous = key
        while row_key is not None and row_key < key:
            assert row is not None
            if not row[5]:
                yield (
                    Held(make(row))
                    if gap is not None and gap.covers(row_key)
                    else Removed(make(row))
                )
            row = next(catalog, None)
            row_key = row[0] if row is not None else None
        if info.__class__ is Gap:
            yield info
            if info.error:
                gap = info
            if row_key == key:
                assert row is not None
                if not row[5]:
                    yield Held(make(row)) if info.error else Removed(make(row))
                row = next(catalog, None)
                row_key = row[0] if row is not None else None
            continue
        info = cast(ObjectInfo, info)
        if row_key == key:
            assert row is not None
            if row[5]:
                yield Added(info, make(row))
            elif differs(info, row):
                yield Changed(info, make(row))
            else:
                yield SAME
            row = next(catalog, None)
            row_key = row[0] if row is not None else None
        else:
            yield Added(info, None)
    while row is not None:
        if not row[5]:
            covered = gap is not None and gap.covers(row[0])
            yield Held(make(row)) if covered else Removed(make(row))
        row = next(catalog, None)
