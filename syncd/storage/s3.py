"""Amazon S3 and S3-compatible stores (MinIO, R2, OBS, Wasabi...) through boto3.

Listings stream ListObjectsV2 pages (or ListObjectVersions for versioned drivers, keeping the
live version id). Throttling and transient errors are retried by botocore's standard retry
mode; what outlives the retries, and every refusal, is mapped to a syncd error that names
the driver, the bucket, and the permission most likely missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.exceptions
from botocore.config import Config as BotoConfig

from syncd.config import Driver, Integration
from syncd.errors import NotFound, PermissionDenied, SyncdError, TransientError
from syncd.storage.deadline import bounded
from syncd.storage.s3_listing import LeanLister
from syncd.storage.types import Listed, ObjectInfo, Objects, Prefixes
from syncd.storage.urls import s3_url

T = TypeVar("T")

_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AllAccessDisabled",
    "AccountProblem",
}
_MISSING = {"NoSuchBucket", "NoSuchKey", "404", "NotFound"}
_TRANSIENT = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "500", "503"}


def _error(exc: Exception, where: str, permission: str) -> SyncdError:
    """The one place S3 SDK errors become syncd errors."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _DENIED or status == 403:
            return PermissionDenied(
                f"{where}: access denied ({code or status}); check the credentials and that they "
                f"allow {permission}"
            )
        if code in _MISSING or status == 404:
            return NotFound(f"{where}: does not exist ({code or status})")
        if code in _TRANSIENT or (status is not None and status >= 500):
            return TransientError(f"{where}: {code or status} after retries: {exc}")
        return SyncdError(f"{where}: {code}: {exc}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return PermissionDenied(f"{where}: no credentials found (profile, keys, role or env)")
    if isinstance(
        exc,
        botocore.exceptions.EndpointConnectionError
        | botocore.exceptions.ConnectionClosedError
        | botocore.exceptions.ReadTimeoutError
        | botocore.exceptions.ConnectTimeoutError,
    ):
        return TransientError(f"{where}: {exc}")
    return SyncdError(f"{where}: {exc}")


def _listed(item: dict[str, Any], version: str | None = None) -> ObjectInfo:
    """An object as a boto3 listing (ListObjectsV2 or ListObjectVersions) describes it."""
    return ObjectInfo(
        item["Key"],
        item["Size"],
        item["LastModified"].timestamp(),
        item.get("ETag", "").strip('"') or None,
        version,
    )


class S3Store:
    """One bucket. `versioned` lists versions and keeps the live version id on each item."""

    sorted_listing = True
    skipped_by_store: tuple[str, ...] = ()

    def __init__(
        self,
        bucket: str,
        client: Any,
        *,
        name: str = "s3",
        region: str | None = None,
        endpoint_url: str | None = None,
        path_style: bool = False,
        versioned: bool = False,
        page_size: int = 1000,
        lister: LeanLister | None = None,
        read_timeout: float = 60.0,
    ) -> None:
        self.read_timeout = read_timeout
        self.bucket = bucket
        self.client = client
        self.name = name
        self.region = region
        self.endpoint_url = endpoint_url
        self.path_style = path_style
        self.versioned = versioned
        self.page_size = page_size
        self.lister = lister

    def _call(self, what: Callable[[], T], key: str | None, permission: str) -> T:
        try:
            return what()
        except Exception as exc:
            where = f"driver {self.name}: s3://{self.bucket}/{key or ''}"
            raise _error(exc, where, permission) from exc

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Listed]:
        if self.versioned:
            # boto3 cannot be interrupted mid-request: a clock outside it stops a server that
            # accepts and then trickles. (The lean lister bounds its own requests.)
            return bounded(
                lambda: self._list_versions(prefix, start_after),
                stall=3 * self.read_timeout,
                what=f"driver {self.name}",
            )
        return self._list(prefix, start_after)

    def _list(self, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        if self.lister is not None:
            listing = self.lister.list(prefix, start_after, self.page_size)
            while True:
                info = self._call(lambda: next(listing, None), prefix, "s3:ListBucket")
                if info is None:
                    return
                yield info
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "MaxKeys": self.page_size,
        }
        if start_after:
            params["StartAfter"] = start_after
        while True:
            page = self._call(
                lambda: self.client.list_objects_v2(**params), prefix, "s3:ListBucket"
            )
            yield from map(_listed, page.get("Contents", ()))
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params["ContinuationToken"] = token
            params.pop("StartAfter", None)

    def _list_versions(self, prefix: str, start_after: str | None) -> Iterator[ObjectInfo]:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": prefix,
            "MaxKeys": self.page_size,
        }
        if start_after:
            params["KeyMarker"] = start_after
        while True:
            page = self._call(
                lambda: self.client.list_object_versions(**params), prefix, "s3:ListBucketVersions"
            )
            # A key whose latest entry is a delete marker is deleted; versions come newest first.
            latest_deleted = {m["Key"] for m in page.get("DeleteMarkers", ()) if m.get("IsLatest")}
            for item in page.get("Versions", ()):
                if not item.get("IsLatest") or item["Key"] in latest_deleted:
                    continue
                yield _listed(item, item.get("VersionId"))
            if not page.get("IsTruncated"):
                return
            params["KeyMarker"] = page.get("NextKeyMarker")
            params["VersionIdMarker"] = page.get("NextVersionIdMarker")

    def list_prefixes(self, prefix: str = "") -> tuple[Prefixes, Objects]:
        """The sub-prefixes one level below `prefix`, and the objects directly at that level."""
        prefixes: Prefixes = []
        objects: Objects = []
        params: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "Delimiter": "/"}
        while True:
            page = self._call(
                lambda: self.client.list_objects_v2(**params), prefix, "s3:ListBucket"
            )
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", ())]
            objects += map(_listed, page.get("Contents", ()))
            if not page.get("IsTruncated"):
                return prefixes, objects
            params["ContinuationToken"] = page["NextContinuationToken"]

    def stat(self, key: str) -> ObjectInfo:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        head = self._call(lambda: self.client.head_object(**params), key, "s3:GetObject")
        return ObjectInfo(
            key,
            head["ContentLength"],
            head["LastModified"].timestamp(),
            head.get("ETag", "").strip('"') or None,
            head.get("VersionId") if self.versioned else None,
            head.get("ContentType"),
        )

    def read_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        rng = f"bytes={start}-{start + length - 1}"
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key, Range=rng)
            data: bytes = response["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "InvalidRange":
                return b""
            raise _error(
                exc, f"driver {self.name}: s3://{self.bucket}/{key}", "s3:GetObject"
            ) from exc
        except Exception as exc:
            raise _error(
                exc, f"driver {self.name}: s3://{self.bucket}/{key}", "s3:GetObject"
            ) from exc
        return data

    def metadata(self, key: str) -> dict[str, str]:
        head = self._call(
            lambda: self.client.head_object(Bucket=self.bucket, Key=key), key, "s3:GetObject"
        )
        return dict(head.get("Metadata", {}))

    def url(self, key: str) -> str:
        return s3_url(
            self.bucket,
            key,
            region=self.region,
            endpoint_url=self.endpoint_url,
            path_style=self.path_style,
        )

    def signed_url(self, key: str, ttl_seconds: int) -> str:
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl_seconds
        )
        return url

    def put(self, key: str, data: bytes, content_type: str | None = None) -> ObjectInfo:
        extra = {"ContentType": content_type} if content_type else {}
        self._call(
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra),
            key,
            "s3:PutObject",
        )
        return self.stat(key)

    def delete(self, key: str) -> None:
        self._call(
            lambda: self.client.delete_object(Bucket=self.bucket, Key=key), key, "s3:DeleteObject"
        )


def session_for(integration: Integration, base_dir: Path, region: str | None = None) -> Any:
    """A boto3 session with the integration's credentials: its keys, profile, or the
    default chain, then its role when it names one."""
    keys: dict[str, str] = {}
    if integration.access_key_id and integration.secret_access_key:
        keys["aws_access_key_id"] = integration.access_key_id.resolve(base_dir)
        keys["aws_secret_access_key"] = integration.secret_access_key.resolve(base_dir)
        if integration.session_token:
            keys["aws_session_token"] = integration.session_token.resolve(base_dir)
    session = boto3.session.Session(profile_name=integration.profile, **keys)
    if integration.role_arn:
        sts = session.client(
            "sts", region_name=region or integration.region, endpoint_url=integration.endpoint_url
        )
        assumed = sts.assume_role(RoleArn=integration.role_arn, RoleSessionName="syncd")[
            "Credentials"
        ]
        session = boto3.session.Session(
            aws_access_key_id=assumed["AccessKeyId"],
            aws_secret_access_key=assumed["SecretAccessKey"],
            aws_session_token=assumed["SessionToken"],
        )
    return session


def _session_and_client(
    integration: Integration, driver: Driver | None, base_dir: Path
) -> tuple[Any, Any]:
    region = (driver.region if driver else None) or integration.region
    endpoint = (driver.endpoint_url if driver else None) or integration.endpoint_url
    style = integration.addressing_style
    config = BotoConfig(
        region_name=region,
        retries={"mode": "standard", "max_attempts": 8},
        connect_timeout=10,
        read_timeout=driver.read_timeout if driver else 60,
        max_pool_connections=32,
        signature_version="s3v4",
        s3={"addressing_style": "path" if style == "path" else style},
    )
    session = session_for(integration, base_dir, region)
    return session, session.client("s3", endpoint_url=endpoint, config=config)


def from_config(driver: Driver, integration: Integration, base_dir: Path) -> S3Store:
    endpoint = driver.endpoint_url or integration.endpoint_url
    region = driver.region or integration.region
    path_style = integration.addressing_style == "path" or (
        endpoint is not None and integration.addressing_style == "auto"
    )
    try:
        session, client = _session_and_client(integration, driver, base_dir)
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        where = f"driver {driver.name}: integration {integration.name}"
        raise _error(
            exc, where, "sts:AssumeRole" if integration.role_arn else "s3:ListBucket"
        ) from exc
    credentials = session.get_credentials()
    lister = None
    if credentials is not None:
        lister = LeanLister(
            driver.bucket,
            credentials,
            region or client.meta.region_name or "us-east-1",
            endpoint_url=endpoint,
            path_style=path_style,
            read_timeout=driver.read_timeout,
        )
    return S3Store(
        driver.bucket,
        client,
        name=driver.name,
        region=region,
        endpoint_url=endpoint,
        path_style=path_style,
        versioned=driver.versioned,
        lister=lister,
        read_timeout=driver.read_timeout,
    )
