"""Google Cloud Storage through google-cloud-storage.

Listings ask only for the fields syncd keeps. `version` is the generation; `order_token` is
`GGGGGGGGGGGGGGGGGGGG.MMMMMMMMMMMMMMMMMMMM` (generation and metageneration, zero-padded to 20
digits) so tokens of one object compare correctly as strings. `STORAGE_EMULATOR_HOST` is
honoured (anonymous credentials unless a credentials file is configured).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.api_core import retry as gretry
from google.auth import exceptions as google_auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from syncd.config import Driver, Integration
from syncd.errors import ConfigError, NotFound, PermissionDenied, SyncdError, TransientError
from syncd.storage.deadline import bounded
from syncd.storage.types import Listed, ObjectInfo, Objects, Prefixes
from syncd.storage.urls import gcs_url

T = TypeVar("T")
_FIELDS = (
    "items(name,size,updated,md5Hash,etag,generation,metageneration,contentType),nextPageToken"
)
_RETRY = gretry.Retry(initial=0.2, maximum=10.0, multiplier=2.0, timeout=120.0)


def order_token(generation: int | str | None, metageneration: int | str | None) -> str | None:
    if generation is None:
        return None
    return f"{int(generation):020d}.{int(metageneration or 1):020d}"


def _error(exc: Exception, where: str, permission: str) -> SyncdError:
    """The one place GCS SDK errors become syncd errors."""
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return PermissionDenied(f"{where}: access denied; the account needs {permission}: {exc}")
    if isinstance(exc, gexc.NotFound):
        return NotFound(f"{where}: does not exist")
    if isinstance(
        exc,
        gexc.TooManyRequests
        | gexc.ServiceUnavailable
        | gexc.InternalServerError
        | ConnectionError
        | TimeoutError,
    ):
        return TransientError(f"{where}: {exc}")
    return SyncdError(f"{where}: {exc}")


def _info(blob: Any) -> ObjectInfo:
    md5 = blob.md5_hash
    etag = base64.b64decode(md5).hex() if md5 else blob.etag
    return ObjectInfo(
        blob.name,
        int(blob.size or 0),
        blob.updated.timestamp() if blob.updated else 0.0,
        etag,
        str(blob.generation) if blob.generation is not None else None,
        blob.content_type,
        order_token(blob.generation, blob.metageneration),
    )


class GcsStore:
    sorted_listing = True
    skipped_by_store: tuple[str, ...] = ()

    def __init__(
        self,
        bucket: str,
        client: storage.Client,
        *,
        name: str = "gcs",
        signer: Any = None,
        page_size: int = 1000,
        read_timeout: float = 60.0,
    ) -> None:
        self.timeout = (10.0, read_timeout)
        self.bucket_name = bucket
        self.client = client
        self.bucket = client.bucket(bucket)
        self.name = name
        self.signer = signer
        self.page_size = page_size

    def _call(self, what: Callable[[], T], key: str | None, permission: str) -> T:
        try:
            return what()
        except Exception as exc:
            where = f"driver {self.name}: gs://{self.bucket_name}/{key or ''}"
            raise _error(exc, where, permission) from exc

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Listed]:
        # The SDK cannot be interrupted mid-request: a clock outside it stops a server that
        # accepts and then trickles.
        return bounded(
            lambda: self._list(prefix, start_after),
            stall=3 * self.timeout[1],
            what=f"driver {self.name}",
        )

    def _list(self, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        pages = self._call(
            lambda: (
                self.client.list_blobs(
                    self.bucket_name,
                    prefix=prefix or None,
                    start_offset=start_after,
                    page_size=self.page_size,
                    fields=_FIELDS,
                    retry=_RETRY,
                    timeout=self.timeout,
                ).pages
            ),
            prefix,
            "storage.objects.list",
        )
        iterator = iter(pages)
        while True:
            page = self._call(lambda: next(iterator, None), prefix, "storage.objects.list")
            if page is None:
                return
            for blob in page:
                if start_after is not None and blob.name <= start_after:
                    continue
                yield _info(blob)

    def list_prefixes(self, prefix: str = "") -> tuple[Prefixes, Objects]:
        iterator = self.client.list_blobs(
            self.bucket_name, prefix=prefix or None, delimiter="/", retry=_RETRY
        )
        objects = self._call(lambda: [_info(b) for b in iterator], prefix, "storage.objects.list")
        return sorted(iterator.prefixes), objects

    def stat(self, key: str) -> ObjectInfo:
        blob = self._call(
            lambda: self.bucket.get_blob(key, retry=_RETRY), key, "storage.objects.get"
        )
        if blob is None:
            raise NotFound(f"driver {self.name}: gs://{self.bucket_name}/{key} does not exist")
        return _info(blob)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        blob = self.bucket.blob(key)
        try:
            data: bytes = blob.download_as_bytes(start=start, end=start + length - 1, retry=_RETRY)
        except Exception as exc:
            response = getattr(exc, "response", None)
            if isinstance(exc, gexc.RequestRangeNotSatisfiable) or (
                getattr(response, "status_code", None) == 416
            ):
                return b""
            where = f"driver {self.name}: gs://{self.bucket_name}/{key}"
            raise _error(exc, where, "storage.objects.get") from exc
        return data

    def metadata(self, key: str) -> dict[str, str]:
        blob = self._call(lambda: self.bucket.get_blob(key), key, "storage.objects.get")
        if blob is None:
            raise NotFound(f"driver {self.name}: gs://{self.bucket_name}/{key} does not exist")
        return dict(blob.metadata or {})

    def url(self, key: str) -> str:
        return gcs_url(self.bucket_name, key)

    def signed_url(self, key: str, ttl_seconds: int) -> str:
        if self.signer is None:
            raise ConfigError(
                f"driver {self.name}: GCS signed URLs need a service-account key: set the "
                "integration's credentials_file (file:PATH or env:NAME holding its JSON)"
            )
        endpoint = os.environ.get("STORAGE_EMULATOR_HOST")
        url: str = self.bucket.blob(key).generate_signed_url(
            version="v4",
            expiration=datetime.timedelta(seconds=ttl_seconds),
            method="GET",
            credentials=self.signer,
            **({"api_access_endpoint": endpoint} if endpoint else {}),
        )
        return url

    def put(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        blob = self.bucket.blob(key)
        self._call(
            lambda: blob.upload_from_string(data, content_type=content_type),
            key,
            "storage.objects.create",
        )
        return self.stat(key)

    def delete(self, key: str) -> None:
        self._call(lambda: self.bucket.blob(key).delete(), key, "storage.objects.delete")


def _credentials(integration: Integration, base_dir: Path) -> tuple[Any, Any, str | None]:
    """(credentials, signer, project) from the integration's key: a service-account key also
    signs URLs; an authorized-user or workload-identity key only authenticates."""
    if not integration.credentials_file:
        return None, None, None
    where = f"integrations.{integration.name}.credentials_file"
    # The reference (file:PATH or env:NAME) yields the key's JSON itself.
    try:
        info = json.loads(integration.credentials_file.resolve(base_dir))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON (line {exc.lineno}, column {exc.colno})") from None
    try:
        if isinstance(info, dict) and info.get("type") == "service_account":
            from google.oauth2 import service_account

            signer = service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
            return signer, signer, signer.project_id
        import google.auth

        credentials, project = google.auth.load_credentials_from_dict(info)  # type: ignore[no-untyped-call]
        return credentials, None, project
    except (ValueError, TypeError, google_auth_exceptions.GoogleAuthError) as exc:
        raise ConfigError(f"{where}: not a usable Google credentials key: {exc}") from None


def from_config(driver: Driver, integration: Integration, base_dir: Path) -> GcsStore:
    credentials, signer, project = _credentials(integration, base_dir)
    try:
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            anonymous = AnonymousCredentials()  # type: ignore[no-untyped-call]
            client = storage.Client(project=integration.project or "test", credentials=anonymous)
        elif credentials is not None:
            client = storage.Client(project=integration.project or project, credentials=credentials)
        else:
            client = storage.Client(project=integration.project)
    except google_auth_exceptions.GoogleAuthError as exc:
        raise PermissionDenied(
            f"driver {driver.name}: no Google credentials: set credentials_file, or run where "
            f"Application Default Credentials exist ({exc})"
        ) from None
    return GcsStore(
        driver.bucket, client, name=driver.name, signer=signer, read_timeout=driver.read_timeout
    )
