"""A throw-away catalog per benchmark case: a SQLite file, or a PostgreSQL schema."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def temporary_catalog_url(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    try:
        yield f"{PG_URL}?schema={schema}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
