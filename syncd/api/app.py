"""The aiohttp application and its server, started inside `syncd run`'s event loop."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiohttp import web

from syncd.api import catalog_routes, health_routes, ingest_routes, status_page, sync_routes
from syncd.api.auth import make_auth, make_cors, tokens_of
from syncd.api.context import CONTEXT, ApiContext
from syncd.api.problems import problems

log = structlog.get_logger("syncd.api")

OPENAPI = Path(__file__).with_name("openapi.yaml")


@cache
def openapi_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(OPENAPI.read_text(encoding="utf-8"))
    return document


async def openapi(request: web.Request) -> web.Response:
    return web.Response(text=json.dumps(openapi_document()), content_type="application/json")


def build_app(ctx: ApiContext) -> web.Application:
    settings = ctx.config.api
    assert settings is not None
    middlewares = [problems, make_auth(tokens_of(settings, ctx.config.base_dir))]
    if settings.cors_origins:
        middlewares.insert(0, make_cors(settings.cors_origins))
    app = web.Application(middlewares=middlewares, client_max_size=settings.max_body)
    app[CONTEXT] = ctx
    app.router.add_get("/openapi.json", openapi)
    app.router.add_routes(catalog_routes.routes)
    app.router.add_routes(health_routes.routes)
    app.router.add_routes(sync_routes.routes)
    app.router.add_routes(ingest_routes.routes)
    app.router.add_routes(status_page.routes)
    return app


async def serve(ctx: ApiContext) -> web.AppRunner:
    """Listen on the config's `api.listen`; the caller cleans the runner up at shutdown."""
    settings = ctx.config.api
    assert settings is not None
    host, _, port = settings.listen.rpartition(":")
    runner = web.AppRunner(build_app(ctx), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host.strip("[]"), int(port), reuse_address=True)
    await site.start()
    log.info("api listening", url=f"http://{settings.listen}")
    return runner
