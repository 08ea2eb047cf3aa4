"""Azure Blob Storage containers through azure-storage-blob.

Azure lists blob names in its own order, which differs from UTF-8 byte order for some
non-ASCII names, so `sorted_listing` is False and the reconciler sorts (in memory up to its
run size, spilling beyond). Credentials: a connection string, an account key, a SAS token, or
DefaultAzureCredential (the `azure-identity` extra).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from azure.core import exceptions as aexc
from azure.storage.blob import (
    BlobPrefix,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    ExponentialRetry,
    generate_blob_sas,
)

from syncd.config import Driver, Integration
from syncd.errors import ConfigError, NotFound, PermissionDenied, SyncdError, TransientError
from syncd.storage.deadline import bounded
from syncd.storage.types import Listed, ObjectInfo, Objects, Prefixes
from syncd.storage.urls import azure_url

T = TypeVar("T")


def _error(exc: Exception, where: str, permission: str) -> SyncdError:
    """The one place Azure SDK errors become syncd errors."""
    if isinstance(exc, aexc.ClientAuthenticationError):
        return PermissionDenied(
            f"{where}: authentication failed or {permission} is missing: {exc.message}"
        )
    if isinstance(exc, aexc.ResourceNotFoundError):
        return NotFound(
            f"{where}: does not exist ({getattr(exc, 'error_code', None) or 'not found'})"
        )
    if isinstance(exc, aexc.HttpResponseError):
        if exc.status_code == 403:
            return PermissionDenied(f"{where}: access denied; the identity needs {permission}")
        if exc.status_code in (429, 500, 503):
            return TransientError(f"{where}: {exc.status_code} after retries")
        return SyncdError(f"{where}: {exc.status_code}: {exc.message}")
    if isinstance(exc, aexc.ServiceRequestError | aexc.ServiceResponseError):
        return TransientError(f"{where}: {exc}")
    return SyncdError(f"{where}: {exc}")


def _materialize(page: Any) -> Any:
    return [*page]


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


def _info(blob: Any) -> ObjectInfo:
    return ObjectInfo(
        blob.name,
        blob.size,
        blob.last_modified.timestamp(),
        _etag(blob.etag),
        blob.version_id,
        blob.content_settings.content_type,
    )


class AzureBlobStore:
    sorted_listing = False
    skipped_by_store: tuple[str, ...] = ()

    def __init__(
        self,
        container: str,
        service: BlobServiceClient,
        *,
        name: str = "azure",
        account_key: str | None = None,
        page_size: int = 5000,
        read_timeout: float = 60.0,
    ) -> None:
        self.read_timeout = read_timeout
        self.container_name = container
        self.service = service
        self.container = service.get_container_client(container)
        self.name = name
        self.account_key = account_key
        self.page_size = page_size

    def _call(self, what: Callable[[], T], key: str | None, permission: str) -> T:
        try:
            return what()
        except Exception as exc:
            where = f"driver {self.name}: azure container {self.container_name}/{key or ''}"
            raise _error(exc, where, permission) from exc

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Listed]:
        # The SDK cannot be interrupted mid-request: a clock outside it stops a server that
        # accepts and then trickles.
        return bounded(
            lambda: self._list(prefix, start_after),
            stall=3 * self.read_timeout,
            what=f"driver {self.name}",
        )

    def _list(self, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        pages = self._call(
            lambda: self.container.list_blobs(
                name_starts_with=prefix or None, results_per_page=self.page_size
            ).by_page(),
            prefix,
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read (List Blobs)",
        )
        iterator = iter(pages)
        while True:
            page = self._call(
                lambda: next(iterator, None), prefix, "List Blobs (Storage Blob Data Reader)"
            )
            if page is None:
                return
            for blob in self._call(partial(_materialize, page), prefix, "List Blobs"):
                if start_after is not None and blob.name <= start_after:
                    continue
                yield _info(blob)

    def list_prefixes(self, prefix: str = "") -> tuple[Prefixes, Objects]:
        """One level below `prefix` by a delimiter listing: the virtual folders and the blobs.

        Both are returned in byte order; the reconciler still sorts the whole fanned-out
        listing, as it does every Azure listing (see the module note)."""
        entries = self._call(
            lambda: [
                *self.container.walk_blobs(
                    name_starts_with=prefix or None,
                    delimiter="/",
                    results_per_page=self.page_size,
                )
            ],
            prefix,
            "List Blobs (Storage Blob Data Reader)",
        )
        prefixes = sorted(e.name for e in entries if isinstance(e, BlobPrefix))
        blobs = sorted(
            (_info(e) for e in entries if not isinstance(e, BlobPrefix)), key=lambda i: i.key
        )
        return prefixes, blobs

    def stat(self, key: str) -> ObjectInfo:
        props = self._call(
            lambda: self.container.get_blob_client(key).get_blob_properties(),
            key,
            "Storage Blob Data Reader",
        )
        return ObjectInfo(
            key,
            props.size,
            props.last_modified.timestamp(),
            _etag(props.etag),
            props.version_id,
            props.content_settings.content_type,
        )

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        blob = self.container.get_blob_client(key)
        try:
            return blob.download_blob(offset=start, length=length).readall()
        except aexc.HttpResponseError as exc:
            if exc.status_code == 416:
                return b""
            raise _error(exc, f"driver {self.name}: {key}", "Storage Blob Data Reader") from exc
        except Exception as exc:
            raise _error(exc, f"driver {self.name}: {key}", "Storage Blob Data Reader") from exc

    def metadata(self, key: str) -> dict[str, str]:
        props = self._call(
            lambda: self.container.get_blob_client(key).get_blob_properties(),
            key,
            "Storage Blob Data Reader",
        )
        return dict(props.metadata or {})

    def url(self, key: str) -> str:
        return azure_url(self.service.url, self.container_name, key)

    def signed_url(self, key: str, ttl_seconds: int) -> str:
        if not self.account_key:
            raise ConfigError(
                f"driver {self.name}: signed URLs need an account key (connection string or "
                "account_key) to sign a SAS"
            )
        sas = generate_blob_sas(
            account_name=self.service.account_name or "",
            container_name=self.container_name,
            blob_name=key,
            account_key=self.account_key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=ttl_seconds),
        )
        return f"{self.url(key)}?{sas}"

    def put(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        settings = ContentSettings(content_type=content_type) if content_type else None
        self._call(
            lambda: self.container.upload_blob(
                key, data, overwrite=True, content_settings=settings
            ),
            key,
            "Storage Blob Data Contributor",
        )
        return self.stat(key)

    def delete(self, key: str) -> None:
        self._call(lambda: self.container.delete_blob(key), key, "Storage Blob Data Contributor")


def _service(
    integration: Integration, base_dir: Path, read_timeout: float = 60.0
) -> tuple[BlobServiceClient, str | None]:
    retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=6)
    options: dict[str, Any] = {
        "retry_policy": retry,
        "connection_timeout": 10,
        "read_timeout": read_timeout,
    }
    if integration.connection_string:
        text = integration.connection_string.resolve(base_dir)
        fields = dict(part.split("=", 1) for part in text.split(";") if "=" in part)
        service = BlobServiceClient.from_connection_string(text, **options)
        return service, fields.get("AccountKey")
    account_url = integration.account_url or (
        f"https://{integration.account_name}.blob.core.windows.net"
        if integration.account_name
        else None
    )
    if account_url is None:
        raise ConfigError(
            f"integrations.{integration.name}: azure needs connection_string, or account_name / "
            "account_url with account_key, sas_token or the default credential chain"
        )
    if integration.account_key:
        key = integration.account_key.resolve(base_dir)
        credential: Any = {"account_name": integration.account_name, "account_key": key}
        return BlobServiceClient(account_url, credential=credential, **options), key
    if integration.sas_token:
        return BlobServiceClient(
            account_url, credential=integration.sas_token.resolve(base_dir), **options
        ), None
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError as exc:
        raise ConfigError(
            f"integrations.{integration.name}: the default Azure credential chain needs "
            "azure-identity: pip install 'syncd[azure]'"
        ) from exc
    return BlobServiceClient(account_url, credential=DefaultAzureCredential(), **options), None


def from_config(driver: Driver, integration: Integration, base_dir: Path) -> AzureBlobStore:
    service, key = _service(integration, base_dir, driver.read_timeout)
    return AzureBlobStore(
        driver.bucket, service, name=driver.name, account_key=key, read_timeout=driver.read_timeout
    )
