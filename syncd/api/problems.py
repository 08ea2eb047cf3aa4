"""Every error as an RFC 9457 problem body (`application/problem+json`), never a traceback."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import structlog
from aiohttp import web

from syncd.errors import SyncdError
from syncd.logs import scrub

log = structlog.get_logger("syncd.api")

PROBLEM = "application/problem+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Problem(Exception):
    """Raised by a handler to answer `status` with a problem body naming what is at fault."""

    def __init__(self, status: int, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def problem_response(
    status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    body["detail"] = detail
    body.update(extra)
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM, headers=headers)


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Problem as exc:
        return problem_response(exc.status, exc.detail, **exc.extra)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        headers = {
            k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")
        }
        return problem_response(exc.status, detail or exc.reason, headers=headers)
    except SyncdError as exc:
        # The core's errors name what is at fault and carry no secret (they are scrubbed).
        status = 503 if exc.transient else 422
        return problem_response(status, scrub(str(exc)))
    except Exception as exc:
        log.error("request failed", path=request.path, error=str(exc), exc_info=True)
        return problem_response(500, "internal error; the daemon's log has the details")
