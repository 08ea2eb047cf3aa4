"""Where a serverless handler sends what it parsed: straight into the catalog, or to the
daemon's ingest API (`syncd.events.forward`) when `SYNCD_INGEST_URL` is set.

The catalog comes from `SYNCD_CATALOG_URL` (PostgreSQL, so every function instance shares
it) or, on AWS, from the Secrets Manager secret named by `SYNCD_CATALOG_URL_SECRET`; the routing configuration from `SYNCD_CONFIG` (a file path) or `SYNCD_CONFIG_YAML`
(the YAML itself). A forwarding function needs neither: the daemon routes and applies.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import quote

import structlog

from syncd.catalog import open_catalog
from syncd.config import Config, load_config, parse_config
from syncd.errors import ConfigError
from syncd.events.apply import BatchResult, EventApplier, Route, apply_all
from syncd.events.types import Message
from syncd.storage import open_store
from syncd.storage.types import ObjectInfo, Store

log = structlog.get_logger("syncd.events")


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
        import botocore.exceptions

        try:
            value: str = boto3.client("secretsmanager").get_secret_value(SecretId=secret)[
                "SecretString"
            ]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise ConfigError(
                f"SYNCD_CATALOG_URL_SECRET {secret}: cannot read the secret "
                f"({type(exc).__name__}); the function needs secretsmanager:GetSecretValue "
                "and, for a secret under a customer key, kms:Decrypt"
            ) from None
        return catalog_url_of_secret(value, secret)
    return os.environ.get("SYNCD_CATALOG_URL") or config.catalog_url()


def catalog_url_of_secret(value: str, name: str) -> str:
    """The catalog URL a secret holds: the URL itself, or the JSON of a database secret as
    AWS's RDS rotation templates write it (`username`, `password`, `host`, `port`,
    `dbname`). No message ever shows the value."""
    text = value.strip()
    if not text.startswith("{"):
        return text
    try:
        fields = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"secret {name}: neither a URL nor JSON") from None
    if not isinstance(fields, dict) or not {"username", "password", "host"} <= set(fields):
        raise ConfigError(
            f"secret {name}: a database secret needs username, password and host (and port, dbname)"
        )
    user = quote(str(fields["username"]), safe="")
    password = quote(str(fields["password"]), safe="")
    host = str(fields["host"])
    port = f":{int(fields['port'])}" if fields.get("port") else ""
    database = quote(str(fields.get("dbname") or "postgres"), safe="")
    schema = fields.get("schema")
    query = f"?schema={quote(str(schema), safe='')}" if schema else ""
    return f"postgresql://{user}:{password}@{host}{port}/{database}{query}"


class Sink(Protocol):
    def handle(self, messages: Sequence[Message]) -> BatchResult: ...

    def close(self) -> None: ...


def open_sink(cloud: str) -> Sink:
    """The sink the environment names: the daemon's ingest API for `cloud` (aws, gcp, azure)
    when `SYNCD_INGEST_URL` is set, else the catalog."""
    if os.environ.get("SYNCD_INGEST_URL"):
        from syncd.events.forward import ForwardingSink

        return ForwardingSink.from_env(cloud)
    return CatalogSink()


class CatalogSink:
    """Applies messages to the catalog; reuse one per warm function instance."""

    def __init__(self, config: Config | None = None, catalog_url: str | None = None) -> None:
        self.config = config or config_from_env()
        url = catalog_url or catalog_url_from_env(self.config)
        self.applier = EventApplier(open_catalog(url), self.config)
        self._stores: dict[str, Store] = {}

    def handle(self, messages: Sequence[Message]) -> BatchResult:
        result = apply_all(self.applier, messages)
        if result.unsettled:
            # Committed already: a failure here leaves the items marked for the next sync.
            try:
                self.applier.settle(result.unsettled, self._stat)
            except Exception as exc:
                log.warning("items left to verify", count=len(result.unsettled), error=str(exc))
        return result

    def _stat(self, route: Route, key: str) -> ObjectInfo:
        store = self._stores.get(route.driver.name)
        if store is None:
            integration = self.config.integration(route.driver.integration)
            store = open_store(route.driver, integration, self.config.base_dir)
            self._stores[route.driver.name] = store
        return store.stat(key)

    def close(self) -> None:
        self.applier.catalog.close()
