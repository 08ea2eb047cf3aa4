"""A lean ListObjectsV2 client: botocore's SigV4 signer, urllib3 and the C XML parser.

boto3 spends most of a listing parsing each response into dictionaries (PERFORMANCE.md
measures ~75 µs per key); this reads the same pages for a fraction of that. It lists only:
every other S3 call goes through boto3. Retries follow botocore's standard mode (throttling,
5xx, dropped connections; exponential backoff with full jitter).
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit
from xml.sax.saxutils import unescape

import botocore.exceptions
import urllib3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest

from syncd.storage.types import ObjectInfo

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_TOKEN = re.compile(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>")
_RETRY_STATUS = {429, 500, 502, 503, 504}
_RETRY_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable", "Throttling"}


class LeanLister:
    def __init__(
        self,
        bucket: str,
        credentials: Any,
        region: str,
        *,
        endpoint_url: str | None = None,
        path_style: bool = False,
        max_attempts: int = 8,
        pool: urllib3.PoolManager | None = None,
        read_timeout: float = 60.0,
    ) -> None:
        self.timeout = urllib3.Timeout(connect=10.0, read=read_timeout)
        #: One request, however slowly its bytes come; and one page, with its retries. The
        #: page's bound also covers a server that trickles its status line, which no read
        #: timeout sees.
        self.request_deadline = 3 * read_timeout
        self.page_deadline = 2 * self.request_deadline + 30
        self.bucket = bucket
        self.credentials = credentials
        self.region = region
        self.max_attempts = max_attempts
        # Trust what botocore trusts: a custom CA bundle configured for AWS applies here too.
        bundle = os.environ.get("AWS_CA_BUNDLE")
        if pool is None:
            pool = (
                urllib3.PoolManager(maxsize=32, retries=False, ca_certs=bundle)
                if bundle
                else urllib3.PoolManager(maxsize=32, retries=False)
            )
        self.pool = pool
        # The URL of the bucket's listing, query string to follow.
        if endpoint_url:
            parts = urlsplit(endpoint_url.rstrip("/"))
            if path_style:
                self.base = f"{parts.scheme}://{parts.netloc}{parts.path}/{quote(bucket)}?"
            else:
                self.base = f"{parts.scheme}://{bucket}.{parts.netloc}{parts.path}/?"
        else:
            self.base = f"https://{bucket}.s3.{region}.amazonaws.com/?"

    def list(
        self, prefix: str = "", start_after: str | None = None, page_size: int = 1000
    ) -> Iterator[ObjectInfo]:
        params = {"list-type": "2", "encoding-type": "url", "max-keys": str(page_size)}
        if prefix:
            params["prefix"] = prefix
        if start_after:
            params["start-after"] = start_after
        # The next page is requested as soon as this one's token is known, so the server's
        # time for page N+1 overlaps this process's work on page N.
        pending: _Fetch | None = _Fetch(self._page, dict(params))
        while pending is not None:
            body = pending.result(self.page_deadline)
            pending = None
            token = _TOKEN.search(body)
            if token and b"<IsTruncated>true</IsTruncated>" in body:
                params["continuation-token"] = unescape(token.group(1).decode())
                params.pop("start-after", None)
                pending = _Fetch(self._page, dict(params))
            root = ET.fromstring(body)
            for contents in root.iterfind(f"{_NS}Contents"):
                etag = contents.findtext(f"{_NS}ETag") or ""
                yield ObjectInfo(
                    unquote_plus(contents.findtext(f"{_NS}Key") or ""),
                    int(contents.findtext(f"{_NS}Size") or 0),
                    datetime.fromisoformat(
                        contents.findtext(f"{_NS}LastModified") or ""
                    ).timestamp(),
                    etag.strip('"') or None,
                )

    def _page(self, params: dict[str, str]) -> bytes:
        query = "&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
        )
        url = self.base + query
        attempt = 0
        while True:
            attempt += 1
            request = AWSRequest(method="GET", url=url)
            S3SigV4Auth(self.credentials.get_frozen_credentials(), "s3", self.region).add_auth(
                request
            )
            try:
                status, body = self._fetch(url, dict(request.headers.items()))
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                # A server that did not answer in time is asked once more, not eight times:
                # a hang is rarely over a few seconds later, and every try costs its timeout.
                timed_out = isinstance(exc, urllib3.exceptions.ReadTimeoutError | _TooSlow)
                if attempt >= (2 if timed_out else self.max_attempts):
                    # Say which: a server that never answered is not one that refused us.
                    if timed_out:
                        raise botocore.exceptions.ReadTimeoutError(
                            endpoint_url=url, error=exc
                        ) from exc
                    raise botocore.exceptions.EndpointConnectionError(
                        endpoint_url=url, error=exc
                    ) from exc
                self._backoff(attempt)
                continue
            if status == 200:
                return body
            code, message = _error_of(body)
            if (status in _RETRY_STATUS or code in _RETRY_CODES) and attempt < self.max_attempts:
                self._backoff(attempt)
                continue
            raise botocore.exceptions.ClientError(
                {
                    "Error": {"Code": code or str(status), "Message": message},
                    "ResponseMetadata": {"HTTPStatusCode": status},
                },
                "ListObjectsV2",
            )

    def _fetch(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """One GET, read within the request's deadline: a server that trickles its answer a
        byte at a time never lets a single read time out."""
        response = self.pool.request(
            "GET", url, headers=headers, timeout=self.timeout, retries=False, preload_content=False
        )
        ends = time.monotonic() + self.request_deadline
        parts = []
        try:
            while chunk := response.read1(1 << 16):
                parts.append(chunk)
                if time.monotonic() > ends:
                    raise _TooSlow(f"no complete answer within {self.request_deadline:.0f}s")
        except BaseException:
            # Unread bytes are still coming on this connection: it must not serve another
            # request.
            response.close()
            raise
        finally:
            response.release_conn()
        return response.status, b"".join(parts)

    def _backoff(self, attempt: int) -> None:
        time.sleep(random.uniform(0, min(20.0, 0.05 * 2**attempt)))


class _TooSlow(urllib3.exceptions.TimeoutError):
    """A response whose bytes keep coming, too slowly to finish within its deadline."""


class _Fetch:
    """One page request running in a daemon thread; `result` waits and re-raises."""

    def __init__(self, fetch: Callable[[dict[str, str]], bytes], params: dict[str, str]) -> None:
        self._done = threading.Event()
        self._body = b""
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._body = fetch(params)
            except BaseException as exc:
                self._error = exc
            finally:
                self._done.set()

        threading.Thread(target=run, name="syncd-s3-page", daemon=True).start()

    def result(self, deadline: float) -> bytes:
        if not self._done.wait(deadline):
            raise botocore.exceptions.ReadTimeoutError(
                endpoint_url="(listing page)",
                error=f"no complete answer within {deadline:.0f}s",
            )
        if self._error is not None:
            raise self._error
        return self._body


def _error_of(body: bytes) -> tuple[str, str]:
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", body[:200].decode("utf-8", "replace")
    return root.findtext("Code") or "", root.findtext("Message") or ""
