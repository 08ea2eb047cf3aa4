"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from syncd.api.catalog_routes import context
from syncd.errors import SyncdError

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Ready when the catalog answers, every source is running, and held leases renew."""
    ctx = context(request)
    checks: dict[str, Any] = {}
    try:
        await ctx.call(lambda c: c.last_change_id())
        checks["catalog"] = "ok"
    except SyncdError as exc:
        checks["catalog"] = f"unreachable: {exc}"
    daemon = ctx.daemon
    if daemon is not None:
        dead = {
            t.name.removeprefix("syncd-source:")
            for t in daemon.source_threads()
            if not t.is_alive()
        }
        failing = {name for name, stats in daemon.state.sources.items() if stats.failing}
        problems = [f"{name}: stopped" for name in sorted(dead)] + [
            f"{name}: {daemon.state.sources[name].last_error}" for name in sorted(failing - dead)
        ]
        checks["sources"] = "ok" if not problems else "; ".join(problems)[:500]
        leases = daemon.leases.stats
        stale = leases.held and time.time() - leases.last_renewal > daemon.settings.lease_ttl
        checks["leases"] = "ok" if not stale else "not renewed within the lease TTL"
        if daemon.state.stopping:
            checks["daemon"] = "stopping"
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    ctx = context(request)
    if ctx.daemon is None:
        return web.Response(body=b"", content_type="text/plain")
    registry = ctx.daemon.metrics.registry
    body = await ctx.call(lambda c: generate_latest(registry))
    response = web.Response(body=body)
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response
