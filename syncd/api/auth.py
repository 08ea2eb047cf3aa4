"""Bearer tokens with read and write scopes, compared in constant time; CORS only for the
origins the config lists."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from syncd.api.problems import Handler, problem_response
from syncd.config import ApiSettings

#: Paths anyone who can reach the port may read: liveness, readiness, the API's own schema.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/v1/openapi.json"})


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    secret: bytes
    scopes: frozenset[str]


def tokens_of(settings: ApiSettings, base_dir: Path) -> list[Token]:
    out = []
    for token in settings.tokens:
        scopes = set(token.scopes)
        if "write" in scopes:
            scopes.add("read")
        out.append(Token(token.name, token.token.resolve(base_dir).encode(), frozenset(scopes)))
    return out


def needed_scope(request: web.Request) -> str:
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return "read"
    return "write"


def make_auth(tokens: list[Token], ingest_prefix: str = "/v1/events/") -> web.middleware:  # type: ignore[valid-type]
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not tokens or request.path in OPEN_PATHS:
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer":
            presented = ""
        if request.path.startswith(ingest_prefix) and request.query.get("token"):
            # Platforms that push events cannot all send a header, and Pub/Sub's push
            # sends its own OIDC token in it: the query's token is the API's.
            presented = request.query["token"]
        if not presented:
            return problem_response(
                401,
                "this API needs a bearer token (Authorization: Bearer TOKEN)",
                headers={"WWW-Authenticate": 'Bearer realm="syncd"'},
            )
        found = None
        for token in tokens:
            # Every token is compared, so the time taken says nothing about which matched.
            if hmac.compare_digest(token.secret, presented.encode()):
                found = token
        if found is None:
            return problem_response(
                401,
                "the bearer token is not one this API knows",
                headers={"WWW-Authenticate": 'Bearer realm="syncd", error="invalid_token"'},
            )
        scope = needed_scope(request)
        if scope not in found.scopes:
            return problem_response(
                403, f"token {found.name!r} lacks the {scope!r} scope this request needs"
            )
        request["token"] = found.name
        return await handler(request)

    return auth


def make_cors(origins: tuple[str, ...]) -> web.middleware:  # type: ignore[valid-type]
    allowed = frozenset(origins)

    @web.middleware
    async def cors(request: web.Request, handler: Handler) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is None or origin not in allowed:
            return await handler(request)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response: web.StreamResponse = web.Response(status=204)
        else:
            response = await handler(request)
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, DELETE, OPTIONS"
        return response

    return cors
