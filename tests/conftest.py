"""Shared fixtures: catalogs on SQLite and on the PostgreSQL at 127.0.0.1:5432 (one schema per
test), and drivers over temporary folders."""

from __future__ import annotations

import os
import unicodedata
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.catalog import Catalog, open_catalog
from syncd.config import Driver
from syncd.storage.types import Listed, ObjectInfo
from tests.peers import AWS_TEST_ENV, Peer, azurite, fake_gcs_server, moto_server, reset_moto

#: Keys that break naive code: encodings, normalization forms, depth, length, and the order
#: cases where UTF-8 byte order differs from a directory walk (`a-b` < `a/b` < `a0`).
NASTY_KEYS = [
    "with space.jpg",
    "plus+sign.jpg",
    "percent%20literal.jpg",
    "hash#tag.jpg",
    "question?.jpg",
    unicodedata.normalize("NFC", "café.jpg"),
    unicodedata.normalize("NFD", "café.jpg"),
    "emoji 😀.png",
    "日本語/画像.png",
    "/".join(["deep"] * 30) + "/leaf.png",
    "a-b",
    "a/b",
    "a0",
    "A",
    "/".join(["x" * 200] * 4) + "/" + "y" * 220,  # 1024 bytes
]

PG_URL = os.environ.get("SYNCD_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(params=["sqlite", "postgres"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty catalog URL on each database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{PG_URL}?schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema on the PostgreSQL server, for what only PostgreSQL has."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{PG_URL}?schema={schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    opened = open_catalog(catalog_url)
    yield opened
    opened.close()


def objects(listing: Iterable[Listed]) -> list[ObjectInfo]:
    """A listing that must have read everything: its objects, with no gap among them."""
    out = []
    for entry in listing:
        assert isinstance(entry, ObjectInfo), f"the listing has a gap: {entry}"
        out.append(entry)
    return out


def make_driver(bucket: str | Path, **fields: Any) -> Driver:
    return Driver(
        name=fields.pop("name", "files"), integration="disk", bucket=str(bucket), **fields
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "bucket"
    root.mkdir()
    return root


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """A moto server (S3, SQS, SNS) on a free port for the whole session, with dummy keys."""
    saved = {k: os.environ.get(k) for k in AWS_TEST_ENV}
    os.environ.update(AWS_TEST_ENV)
    peer = moto_server(tmp_path_factory.mktemp("moto"))
    yield peer
    peer.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def moto_clean(moto: Peer) -> Peer:
    """The session's moto server, emptied before the test."""
    reset_moto(moto)
    return moto


@pytest.fixture(scope="session")
def gcs_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = fake_gcs_server(tmp_path_factory.mktemp("gcs"))
    saved = os.environ.get("STORAGE_EMULATOR_HOST")
    os.environ["STORAGE_EMULATOR_HOST"] = peer.url
    yield peer
    peer.stop()
    if saved is None:
        os.environ.pop("STORAGE_EMULATOR_HOST", None)
    else:
        os.environ["STORAGE_EMULATOR_HOST"] = saved


@pytest.fixture(scope="session")
def azurite_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    peer = azurite(tmp_path_factory.mktemp("azurite"))
    yield peer
    peer.stop()
