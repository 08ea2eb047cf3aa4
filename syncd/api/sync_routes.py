"""POST /v1/sync: start a reconcile of a dataset (or one of its drivers) now."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from syncd.api.catalog_routes import context
from syncd.api.problems import Problem
from syncd.views import shard_view

routes = web.RouteTableDef()


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=200)
    driver: str | None = Field(default=None, min_length=1, max_length=200)


async def body_of(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        document = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Problem(400, "the body is not JSON") from None
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Problem(
            400,
            f"{where}: {first['msg']}",
            errors=exc.errors(include_url=False, include_input=False),
        ) from None


@routes.post("/v1/sync")
async def sync(request: web.Request) -> web.Response:
    ctx = context(request)
    wanted: SyncRequest = await body_of(request, SyncRequest)
    daemon = ctx.daemon
    if daemon is None:
        raise Problem(503, "sync triggers need `syncd run`")
    dataset = next((d for d in ctx.config.datasets if d.name == wanted.dataset), None)
    if dataset is None:
        raise Problem(404, f"no dataset {wanted.dataset!r} in the config")
    names = list(dataset.drivers)
    if wanted.driver is not None:
        if wanted.driver not in names:
            raise Problem(404, f"dataset {dataset.name!r} has no driver {wanted.driver!r}")
        names = [wanted.driver]
    started: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for name in names:
        driver = ctx.config.driver(name)
        for shard, future in daemon.trigger(dataset, driver):
            outcome = await asyncio.wrap_future(future)
            which = {"dataset": dataset.name, "driver": name, "shard": shard_view(shard)}
            if isinstance(outcome, int):
                started.append({**which, "run_id": outcome})
            else:
                refused.append({**which, "reason": outcome})
    if not started:
        raise Problem(
            409, "; ".join(f"{r['driver']}: {r['reason']}" for r in refused), refused=refused
        )
    return web.json_response({"started": started, "refused": refused}, status=202)
