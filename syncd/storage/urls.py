"""Object URLs in the forms labeling platforms expect, with keys percent-encoded once.

Every byte of the key's UTF-8 form outside RFC 3986's unreserved set and `/` is encoded, so
a space is `%20`, `+` is `%2B`, `#` is `%23`, `?` is `%3F`, and `é` is `%C3%A9`.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

_PLAIN = re.compile(r"[A-Za-z0-9/_.~-]*\Z")
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/_.~-")
_ASCII = {c: f"%{c:02X}" for c in range(128) if chr(c) not in _SAFE}


def encode_key(key: str) -> str:
    # Manifests encode millions of keys: plain keys are returned as they are and ASCII keys
    # go through one C-level translate; only non-ASCII keys take urllib's path.
    if _PLAIN.match(key):
        return key
    if key.isascii():
        return key.translate(_ASCII)
    return quote(key, safe="/~")


def s3_url(
    bucket: str,
    key: str,
    *,
    region: str | None = None,
    endpoint_url: str | None = None,
    path_style: bool = False,
) -> str:
    """`https://BUCKET.s3.REGION.amazonaws.com/KEY`, or the form of a custom endpoint."""
    if endpoint_url:
        parts = urlsplit(endpoint_url.rstrip("/"))
        if path_style:
            return f"{parts.scheme}://{parts.netloc}{parts.path}/{bucket}/{encode_key(key)}"
        return f"{parts.scheme}://{bucket}.{parts.netloc}{parts.path}/{encode_key(key)}"
    return f"https://{bucket}.s3.{region or 'us-east-1'}.amazonaws.com/{encode_key(key)}"


def s3_multi_region_url(alias: str, key: str) -> str:
    """The S3 Multi-Region Access Point form: `https://ALIAS.accesspoint.s3-global.amazonaws.com/KEY`."""
    return f"https://{alias}.accesspoint.s3-global.amazonaws.com/{encode_key(key)}"


def gcs_url(bucket: str, key: str) -> str:
    return f"https://storage.cloud.google.com/{bucket}/{encode_key(key)}"


def azure_url(account_url: str, container: str, blob: str) -> str:
    """`https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB` (or the emulator's form)."""
    return f"{account_url.rstrip('/')}/{container}/{encode_key(blob)}"
