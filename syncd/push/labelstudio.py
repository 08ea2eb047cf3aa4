"""Label Studio's REST API, as much of it as a push needs.

Authentication follows Label Studio's docs: a personal access token is a JWT *refresh* token,
exchanged at `POST /api/token/refresh` for a five-minute access token sent as
`Authorization: Bearer`; an expired access token answers 401 and is refreshed once. A legacy
token (not a JWT) goes as `Authorization: Token`, which new organizations refuse.

Reads and idempotent writes (PATCH, the guarded delete) are retried on 5xx, resets and
timeouts. An import is not: had the server stored it before the connection broke, a retry
would duplicate every task, so the push checks the project instead.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import structlog

from syncd.errors import SyncdError, TransientError
from syncd.logs import scrub

log = structlog.get_logger(__name__)

RETRIES = 4
PAGE_SIZE = 1000
#: The task fields a push reads: annotation counts decide whether a task may be deleted.
TASK_FIELDS = "id,data,meta,total_annotations,cancelled_annotations,draft_exists"
#: Data Manager filters that hold a delete back from any task with human work, checked by
#: the server in the same request (an annotation saved a moment ago still counts).
UNTOUCHED = {
    "conjunction": "and",
    "items": [
        {
            "filter": "filter:tasks:total_annotations",
            "operator": "equal",
            "type": "Number",
            "value": 0,
        },
        {
            "filter": "filter:tasks:cancelled_annotations",
            "operator": "equal",
            "type": "Number",
            "value": 0,
        },
        {
            "filter": "filter:tasks:draft_exists",
            "operator": "equal",
            "type": "Boolean",
            "value": False,
        },
    ],
}


class LabelStudioError(SyncdError):
    """Label Studio refused a request; the message says which and what to do."""


@dataclass(frozen=True, slots=True)
class Task:
    id: int
    data: Mapping[str, Any]
    meta: Mapping[str, Any]
    annotations: int
    cancelled: int
    drafts: bool

    @property
    def has_work(self) -> bool:
        """Annotations, skips or drafts: human work a push must never destroy."""
        return bool(self.annotations or self.cancelled or self.drafts)


@dataclass(frozen=True, slots=True)
class Storage:
    scheme: str
    bucket: str
    prefix: str


def is_jwt(token: str) -> bool:
    parts = token.split(".")
    return len(parts) == 3 and token.startswith("eyJ")


class LabelStudio:
    """One project on one Label Studio server."""

    def __init__(self, url: str, token: str, project: int, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.project = project
        self.timeout = timeout
        self._token = token
        self._access: str | None = None
        #: Requests that changed the project (imports, updates, deletes).
        self.writes = 0
        self.requests = 0

    # -- transport -------------------------------------------------------------------------

    def _authorization(self, refresh: bool = False) -> str:
        if not is_jwt(self._token):
            return f"Token {self._token}"
        if self._access is None or refresh:
            answer = self._send(
                "POST", "/api/token/refresh", {"refresh": self._token}, auth=None, retry=True
            )
            access = answer.get("access") if isinstance(answer, dict) else None
            if not isinstance(access, str):
                raise LabelStudioError(
                    f"Label Studio at {self.url}: /api/token/refresh gave no access token"
                )
            self._access = access
        return f"Bearer {self._access}"

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, Any] | None = None,
        retry: bool = True,
    ) -> Any:
        if query:
            path = f"{path}?{urlencode(query)}"
        if method != "GET":
            self.writes += 1
        try:
            return self._send(method, path, body, auth=self._authorization(), retry=retry)
        except _Unauthorized:
            if not is_jwt(self._token):
                raise self._refused() from None
        # The access token expired mid-push: one refresh, then the same request.
        try:
            return self._send(method, path, body, auth=self._authorization(True), retry=retry)
        except _Unauthorized:
            raise self._refused() from None

    def _refused(self) -> LabelStudioError:
        how = "personal access token" if is_jwt(self._token) else "legacy token"
        hint = (
            "; this organization may have legacy tokens disabled: use a personal access token"
            if not is_jwt(self._token)
            else ""
        )
        return LabelStudioError(
            f"Label Studio at {self.url} refused the {how} (401){hint}; check the target's token"
        )

    def _send(self, method: str, path: str, body: Any, *, auth: str | None, retry: bool) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth is not None:
            headers["Authorization"] = auth
        attempt = 0
        while True:
            attempt += 1
            request = urllib.request.Request(
                f"{self.url}{path}", data=data, method=method, headers=headers
            )
            self.requests += 1
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                return json.loads(raw) if raw else None
            except ValueError:
                # A login page of an SSO proxy in front, or another server at that URL.
                raise LabelStudioError(
                    f"Label Studio at {self.url}: {method} {_path(path)} answered something "
                    "that is not JSON (a login page?); check the target's url"
                ) from None
            except urllib.error.HTTPError as exc:
                text = _detail(exc)
                if exc.code == 401:
                    raise _Unauthorized from None
                if exc.code < 500 or not retry or attempt >= RETRIES:
                    raise self._error(method, path, exc.code, text, data) from None
                why = f"{exc.code} {text}"
            except (TimeoutError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                if not retry or attempt >= RETRIES:
                    raise TransientError(
                        f"Label Studio at {self.url}: {method} {_path(path)} failed after "
                        f"{attempt} attempt(s): {reason}"
                    ) from None
                why = str(reason)
            delay = min(8.0, 0.5 * 2 ** (attempt - 1))
            log.warning(
                "label studio request failed; retrying",
                method=method,
                path=_path(path),
                error=scrub(why),
                attempt=attempt,
                delay=delay,
            )
            time.sleep(delay)

    def _error(
        self, method: str, path: str, code: int, text: str, body: bytes | None
    ) -> SyncdError:
        where = f"Label Studio at {self.url}"
        if code == 404 and path.startswith(f"/api/projects/{self.project}"):
            return LabelStudioError(
                f"{where}: project {self.project} does not exist (404); check the target's "
                "project id (the number in the project's URL)"
            )
        if code == 403:
            return LabelStudioError(
                f"{where}: the token's user may not use project {self.project} (403)"
            )
        # A body over the server's upload limit is refused as 413 by a proxy in front, and as
        # a bare 500 by Label Studio itself.
        if code == 413 or (code == 500 and body is not None and len(body) > 100 * 2**20):
            size = 0 if body is None else len(body)
            return LabelStudioError(
                f"{where}: the server refused a {size / 2**20:.1f} MiB request as too large "
                f"({code}); lower the target's `batch`"
            )
        message = f"{where}: {method} {_path(path)} answered {code}: {text}"
        return TransientError(message) if code >= 500 else LabelStudioError(message)

    # -- the API ---------------------------------------------------------------------------

    def project_info(self) -> dict[str, Any]:
        answer = self.call("GET", f"/api/projects/{self.project}")
        if not isinstance(answer, dict):
            raise LabelStudioError(f"Label Studio at {self.url}: project answer is not an object")
        return answer

    def storages(self) -> list[Storage]:
        """The project's source storages, whose URLs the server resolves itself."""
        out = []
        for kind, scheme, field in (
            ("s3", "s3", "bucket"),
            ("gcs", "gs", "bucket"),
            ("azure", "azure-blob", "container"),
        ):
            answer = self.call("GET", f"/api/storages/{kind}", query={"project": self.project})
            for storage in answer if isinstance(answer, list) else []:
                bucket = storage.get(field)
                if isinstance(bucket, str) and bucket:
                    out.append(Storage(scheme, bucket, str(storage.get("prefix") or "")))
        return out

    def tasks(self) -> Iterator[Task]:
        """Every task of the project, in id order."""
        page, seen = 1, 0
        while True:
            query = {
                "project": self.project,
                "page": page,
                "page_size": PAGE_SIZE,
                "resolve_uri": "false",
                "fields": "all",
                "include": TASK_FIELDS,
            }
            try:
                answer = self.call("GET", "/api/tasks", query=query)
            except LabelStudioError as exc:
                if "answered 404" in str(exc):
                    return  # past the last page
                raise
            tasks = answer.get("tasks", []) if isinstance(answer, dict) else []
            for raw in tasks:
                yield _task(raw)
            seen += len(tasks)
            # The server may cap page_size below what was asked: only an empty page, a 404
            # past the end, or the total tells that the listing is complete.
            total = answer.get("total") if isinstance(answer, dict) else None
            if not tasks or (isinstance(total, int) and seen >= total):
                return
            page += 1

    def task(self, task_id: int) -> Task | None:
        try:
            raw = self.call("GET", f"/api/tasks/{task_id}", query={"resolve_uri": "false"})
        except LabelStudioError as exc:
            if "answered 404" in str(exc):
                return None
            raise
        return _task(raw)

    def import_tasks(self, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Create tasks; their ids, in the order given (all or none are created)."""
        answer = self.call(
            "POST",
            f"/api/projects/{self.project}/import",
            list(tasks),
            query={"return_task_ids": "true"},
            retry=False,
        )
        ids = answer.get("task_ids") if isinstance(answer, dict) else None
        if not isinstance(ids, list) or len(ids) != len(tasks):
            raise LabelStudioError(
                f"Label Studio at {self.url}: the import answered without one id per task"
            )
        return [int(i) for i in ids]

    def update_task(self, task_id: int, data: Mapping[str, Any], meta: Mapping[str, Any]) -> bool:
        """Replace a task's data and meta (annotations stay); False if the task is gone."""
        try:
            self.call("PATCH", f"/api/tasks/{task_id}", {"data": data, "meta": meta})
        except LabelStudioError as exc:
            if "answered 404" in str(exc):
                return False
            raise
        return True

    def update_meta(self, task_id: int, meta: Mapping[str, Any]) -> bool:
        """Replace a task's meta only; False if the task is gone."""
        try:
            self.call("PATCH", f"/api/tasks/{task_id}", {"meta": meta})
        except LabelStudioError as exc:
            if "answered 404" in str(exc):
                return False
            raise
        return True

    def delete_untouched(self, task_ids: Sequence[int]) -> None:
        """Delete those of `task_ids` that hold no annotations, skips or drafts."""
        if not task_ids:
            return  # an empty selection would mean every task of the project
        self.call(
            "POST",
            "/api/dm/actions",
            {"selectedItems": {"all": False, "included": list(task_ids)}, "filters": UNTOUCHED},
            query={"id": "delete_tasks", "project": self.project},
        )


class _Unauthorized(Exception):
    pass


def _task(raw: Mapping[str, Any]) -> Task:
    drafts = raw.get("draft_exists")
    if drafts is None:
        drafts = bool(raw.get("drafts"))
    return Task(
        id=int(raw["id"]),
        data=raw.get("data") or {},
        meta=raw.get("meta") or {},
        annotations=int(raw.get("total_annotations") or 0),
        cancelled=int(raw.get("cancelled_annotations") or 0),
        drafts=bool(drafts),
    )


def _path(path: str) -> str:
    return path.split("?", 1)[0]


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read()[:2000].decode("utf-8", "replace")
    except OSError:
        return exc.reason or ""
    try:
        body = json.loads(raw)
    except ValueError:
        # Django answers an unknown route with an HTML page.
        return "(an HTML page)" if raw.lstrip().startswith("<") else scrub(raw.strip()[:300])
    if isinstance(body, dict):
        for field in ("validation_errors", "detail", "error"):
            if field in body:
                return scrub(json.dumps(body[field])[:300])
    return scrub(json.dumps(body)[:300])
