"""Where a serverless handler sends what it parsed: straight into the catalog.

The catalog comes from `SYNCD_CATALOG_URL` (PostgreSQL, so every function instance shares
it) or, on AWS, from the Secrets Manager secret named by `SYNCD_CATALOG_URL_SECRET`; the routing configuration from `SYNCD_CONFIG` (a file path) or `SYNCD_CONFIG_YAML`
(the YAML itself). Forwarding to the daemon's ingest API comes with the daemon.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from syncd.catalog import open_catalog
from syncd.config import Config, load_config, parse_config
from syncd.errors import ConfigError
from syncd.events.apply import BatchResult, EventApplier, apply_all
from syncd.events.types import Message


def config_from_env() -> Config:
    inline = os.environ.get("SYNCD_CONFIG_YAML")
    if inline:
        return parse_config(inline, "$SYNCD_CONFIG_YAML")
    if os.environ.get("SYNCD_CONFIG"):
        return load_config()
    raise ConfigError("set SYNCD_CONFIG (a file) or SYNCD_CONFIG_YAML (the YAML) for routing")


def catalog_url_from_env(config: Config) -> str:
    secret = os.environ.get("SYNCD_CATALOG_URL_SECRET")
    if secret:
        import boto3

        value: str = boto3.client("secretsmanager").get_secret_value(SecretId=secret)[
            "SecretString"
        ]
        return value.strip()
    return os.environ.get("SYNCD_CATALOG_URL") or config.catalog_url()


class CatalogSink:
    """Applies messages to the catalog; reuse one per warm function instance."""

    def __init__(self, config: Config | None = None, catalog_url: str | None = None) -> None:
        self.config = config or config_from_env()
        url = catalog_url or catalog_url_from_env(self.config)
        self.applier = EventApplier(open_catalog(url), self.config)

    def handle(self, messages: Sequence[Message]) -> BatchResult:
        return apply_all(self.applier, messages)

    def close(self) -> None:
        self.applier.catalog.close()
