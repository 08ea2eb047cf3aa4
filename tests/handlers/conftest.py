"""Handlers read their catalog and routing config from the environment, as in the cloud."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

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
    """The handler module imported anew, as on a cold start: no sink cached from an earlier
    test, and its own log configuration in force."""
    return importlib.reload(importlib.import_module(module))


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line a function printed, each of which must be one JSON object."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]
