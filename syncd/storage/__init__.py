"""Storage backends behind one small protocol, opened by provider name.

Backends are imported lazily so that a process (a serverless handler, say) pays only for the
SDK of the provider it uses.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from syncd.config import Driver, Integration
from syncd.errors import ConfigError
from syncd.storage.filters import KeyFilter, key_filter
from syncd.storage.types import ObjectInfo, Presigner, Store, Writer

__all__ = ["KeyFilter", "ObjectInfo", "Presigner", "Store", "Writer", "key_filter", "open_store"]


class _Factory(Protocol):
    def __call__(self, driver: Driver, integration: Integration, base_dir: Path) -> Store: ...


@dataclass(frozen=True)
class Backend:
    target: str
    install_hint: str


BACKENDS: dict[str, Backend] = {
    "local": Backend("syncd.storage.local:from_config", "pip install syncd"),
    "s3": Backend("syncd.storage.s3:from_config", "pip install 'syncd[s3]'"),
    "gcs": Backend("syncd.storage.gcs:from_config", "pip install 'syncd[gcs]'"),
    "azure": Backend("syncd.storage.azure:from_config", "pip install 'syncd[azure]'"),
}


def open_store(driver: Driver, integration: Integration, base_dir: Path) -> Store:
    """Build the store for `driver` through `integration`."""
    backend = BACKENDS[integration.provider]
    module_name, _, attribute = backend.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"drivers.{driver.name}: provider {integration.provider!r} needs a package that is "
            f"not installed ({exc.name}): {backend.install_hint}"
        ) from exc
    factory: _Factory = getattr(module, attribute)
    return factory(driver, integration, base_dir)
