"""Handlers read their catalog and routing config from the environment, as in the cloud."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from types import ModuleType

import pytest

from syncd.catalog import Catalog, open_catalog

ROUTES = """\
integrations: [{{name: cloud, provider: {provider}}}]
drivers: [{{name: inbox, integration: cloud, bucket: {bucket}}}]
datasets: [{{name: inbox, drivers: [inbox]}}]
"""


@pytest.fixture
def wired(
    catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Catalog, pytest.MonkeyPatch]]:
    monkeypatch.setenv("SYNCD_CATALOG_URL", catalog_url)
    catalog = open_catalog(catalog_url)
    yield catalog, monkeypatch
    catalog.close()


def fresh(module: str) -> ModuleType:
    """The handler module with no sink cached from an earlier test (a cold start)."""
    loaded = importlib.import_module(module)
    setattr(loaded, "_sink", None)  # noqa: B010 - a module attribute mypy cannot see
    return loaded
