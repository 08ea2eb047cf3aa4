"""The pure merge: tables of listings and rows in, differences out."""

from __future__ import annotations

import pytest

from syncd.catalog import CatalogRow
from syncd.diff import SAME, Added, Changed, Removed, diff
from syncd.errors import ListingOrderError
from syncd.storage.types import ObjectInfo


def obj(key: str, size: int = 1, etag: str = "e") -> ObjectInfo:
    return ObjectInfo(key=key, size=size, mtime=1.0, etag=etag)


def row(key: str, size: int = 1, etag: str | None = "e", deleted: bool = False) -> CatalogRow:
    return CatalogRow(key, size, 1.0, etag, None, deleted, 1, None, 1.0, None, None)


def kinds(listing: list[ObjectInfo], rows: list[CatalogRow]) -> list[tuple[str, str]]:
    out = []
    for d in diff(listing, rows):
        if isinstance(d, Added):
            out.append(("added" if d.row is None else "revived", d.info.key))
        elif isinstance(d, Changed):
            out.append(("changed", d.info.key))
        elif isinstance(d, Removed):
            out.append(("removed", d.row.key))
        else:
            assert d is SAME
            out.append(("same", ""))
    return out


def test_classifies_each_key() -> None:
    listing = [obj("a"), obj("b", size=2), obj("d"), obj("e")]
    rows = [row("a"), row("b"), row("c"), row("d", deleted=True), row("f"), row("g", deleted=True)]
    assert kinds(listing, rows) == [
        ("same", ""),
        ("changed", "b"),
        ("removed", "c"),
        ("revived", "d"),
        ("added", "e"),
        ("removed", "f"),
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [("size", 9), ("etag", "other")],
)
def test_any_field_change_is_an_update(field: str, value: object) -> None:
    changed = ObjectInfo(**{"key": "k", "size": 1, "mtime": 1.0, "etag": "e", field: value})  # type: ignore[arg-type]
    assert kinds([changed], [row("k")]) == [("changed", "k")]


def test_mtime_decides_only_without_a_content_tag() -> None:
    # An item an event wrote holds the event's time, not the listing's LastModified.
    tagged = ObjectInfo(key="k", size=1, mtime=2.5, etag="e")
    assert kinds([tagged], [row("k")]) == [("same", "")]
    untagged = ObjectInfo(key="k", size=1, mtime=2.5, etag=None)
    assert kinds([untagged], [row("k", etag=None)]) == [("changed", "k")]
    assert kinds([untagged], [row("k")]) == [("changed", "k")]


def test_empty_sides() -> None:
    assert kinds([], []) == []
    assert kinds([obj("a")], []) == [("added", "a")]
    assert kinds([], [row("a"), row("b", deleted=True)]) == [("removed", "a")]


@pytest.mark.parametrize("listing", [["b", "a"], ["a", "a"], ["a/b", "a-b"]])
def test_disorder_and_duplicates_raise_before_yielding_the_bad_key(listing: list[str]) -> None:
    # A Removed for a row behind the listing may come first: the reconciler holds deletes
    # until the listing is known to be complete and in order.
    seen = []
    with pytest.raises(ListingOrderError) as caught:
        for d in diff([obj(k) for k in listing], [row(listing[1])]):
            seen.append(d)
    assert caught.value.key == listing[1]
    assert not any(isinstance(d, Added | Changed) and d.info.key == listing[1] for d in seen[1:])
