"""Read the catalog: datasets, items (cursor pages), the change feed (long-polled), runs,
dead letters (retry, discard) and manifests."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from syncd.api.context import CONTEXT, ApiContext
from syncd.api.params import boolean, decode_cursor, encode_cursor, integer
from syncd.api.problems import Problem
from syncd.catalog import Catalog
from syncd.views import change_view, dataset_view, dead_letter_view, item_view, run_view

MAX_PAGE = 10_000
SUFFIXES = {
    "encord-json": ".json",
    "encord-csv": ".csv",
    "labelbox-ndjson": ".ndjson",
    "cvat-manifest": ".jsonl",
    "jsonl": ".jsonl",
}
#: How often a long poll looks for a commit (any replica's: it reads the catalog).
POLL = 0.1
MAX_WAIT = 60

routes = web.RouteTableDef()


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]


def known(catalog: Catalog, dataset: str) -> None:
    if catalog.find_id("dataset", dataset) is None:
        raise Problem(404, f"no dataset {dataset!r} (GET /v1/datasets lists them)")


@routes.get("/v1/datasets")
async def datasets(request: web.Request) -> web.Response:
    found = await context(request).call(lambda c: c.datasets())
    return web.json_response({"datasets": [dataset_view(d) for d in found]})


@routes.get("/v1/datasets/{dataset}")
async def dataset(request: web.Request) -> web.Response:
    name = request.match_info["dataset"]

    def read(catalog: Catalog) -> Any:
        known(catalog, name)
        return next(d for d in catalog.datasets() if d.name == name)

    return web.json_response(dataset_view(await context(request).call(read)))


@routes.get("/v1/datasets/{dataset}/items")
async def items(request: web.Request) -> web.Response:
    name = request.match_info["dataset"]
    limit = integer(request, "limit", 1000, 1, MAX_PAGE)
    after = decode_cursor(request)
    prefix = request.query.get("prefix", "")
    include_deleted = boolean(request, "include_deleted")

    def read(catalog: Catalog) -> list[Any]:
        known(catalog, name)
        return list(
            catalog.items(
                name,
                prefix=prefix,
                after=after,
                limit=limit + 1,
                include_deleted=include_deleted,
            )
        )

    page = await context(request).call(read)
    more = len(page) > limit
    page = page[:limit]
    cursor = encode_cursor(page[-1].driver, page[-1].key) if more and page else None
    return web.json_response({"items": [item_view(i) for i in page], "next_cursor": cursor})


@routes.get("/v1/datasets/{dataset}/changes")
async def changes(request: web.Request) -> web.Response:
    name = request.match_info["dataset"]
    since = integer(request, "since", 0, 0, 2**62)
    limit = integer(request, "limit", 1000, 1, MAX_PAGE)
    wait = integer(request, "wait", 0, 0, MAX_WAIT)
    ctx = context(request)

    def read(catalog: Catalog) -> list[Any]:
        known(catalog, name)
        return list(catalog.changes(name, since=since, limit=limit))

    def last(catalog: Catalog) -> int:
        return catalog.last_change_id()

    found = await ctx.call(read)
    deadline = time.monotonic() + wait
    # A long poll: wait for any commit (cheap to see: the change counter), then read again.
    while not found and time.monotonic() < deadline:
        seen = await ctx.call(last)
        while time.monotonic() < deadline and await ctx.call(last) == seen:
            await asyncio.sleep(POLL)
        found = await ctx.call(read)
    cursor = found[-1].id if found else since
    return web.json_response({"changes": [change_view(c) for c in found], "next_since": cursor})


@routes.get("/v1/runs")
async def runs(request: web.Request) -> web.Response:
    limit = integer(request, "limit", 20, 1, 1000)
    name = request.query.get("dataset")

    def read(catalog: Catalog) -> list[Any]:
        if name is not None:
            known(catalog, name)
        return catalog.runs(name, limit=limit)

    return web.json_response({"runs": [run_view(r) for r in await context(request).call(read)]})


@routes.get("/v1/runs/{run_id}")
async def run(request: web.Request) -> web.Response:
    text = request.match_info["run_id"]
    if not text.isdigit() or len(text) > 18:
        raise Problem(400, f"run id {text[:40]!r} is not a whole number")
    found = await context(request).call(lambda c: c.run_by_id(int(text)))
    if found is None:
        raise Problem(404, f"no run {text}")
    return web.json_response(run_view(found))


def letter_id(request: web.Request) -> int:
    text = request.match_info["letter_id"]
    if not text.isdigit() or len(text) > 18:
        raise Problem(400, f"dead letter id {text[:40]!r} is not a whole number")
    return int(text)


@routes.get("/v1/dead-letters")
async def dead_letters(request: web.Request) -> web.Response:
    limit = integer(request, "limit", 100, 1, 1000)
    found = await context(request).call(lambda c: c.dead_letters(limit))
    return web.json_response({"dead_letters": [dead_letter_view(d) for d in found]})


@routes.get("/v1/dead-letters/{letter_id}")
async def dead_letter(request: web.Request) -> web.Response:
    ident = letter_id(request)
    found = await context(request).call(lambda c: c.dead_letter_by_id(ident))
    if found is None:
        raise Problem(404, f"no dead letter {ident}")
    return web.json_response(dead_letter_view(found))


@routes.delete("/v1/dead-letters/{letter_id}")
async def discard(request: web.Request) -> web.Response:
    ident = letter_id(request)
    if not await context(request).call(lambda c: c.discard_dead_letter(ident)):
        raise Problem(404, f"no dead letter {ident}")
    return web.Response(status=204)


@routes.post("/v1/dead-letters/{letter_id}/retry")
async def retry(request: web.Request) -> web.Response:
    from syncd.events.replay import retry_dead_letter

    ident = letter_id(request)
    ctx = context(request)
    outcome = await ctx.call(lambda c: retry_dead_letter(c, ctx.config, ident))
    if outcome is None:
        raise Problem(404, f"no dead letter {ident}")
    return web.json_response(outcome.as_dict(), status=200 if outcome.applied_ok else 422)


@routes.get("/v1/datasets/{dataset}/manifest")
async def manifest(request: web.Request) -> web.StreamResponse:
    from syncd.manifest.build import FORMATS, build_manifest

    name = request.match_info["dataset"]
    fmt = request.query.get("format", "")
    if fmt not in FORMATS:
        raise Problem(
            400, f"query parameter 'format': {fmt[:40]!r} is not one of {', '.join(FORMATS)}"
        )
    prefix = request.query.get("prefix", "")
    ctx = context(request)
    folder = Path(tempfile.mkdtemp(prefix="syncd-manifest-"))
    out = folder / f"{name}{SUFFIXES[fmt]}"

    def build(catalog: Catalog) -> dict[str, Any]:
        known(catalog, name)
        return build_manifest(catalog, ctx.config, name, fmt, str(out), prefix=prefix)

    try:
        summary = await ctx.call(build)
        files = [Path(f) for f in summary.get("files", [])] or [out]
        if len(files) != 1:
            raise Problem(
                400,
                f"format {fmt!r} writes {len(files)} files; use `syncd manifest` for it",
            )
        response = web.StreamResponse(
            headers={
                "Content-Type": _content_type(files[0]),
                "Content-Disposition": f'attachment; filename="{files[0].name}"',
            }
        )
        await response.prepare(request)
        with files[0].open("rb") as handle:
            while chunk := handle.read(256 * 1024):
                await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        for leftover in folder.iterdir():
            os.unlink(leftover)
        folder.rmdir()


def _content_type(path: Path) -> str:
    if path.suffix == ".csv":
        return "text/csv"
    if path.suffix in (".ndjson", ".jsonl"):
        return "application/x-ndjson"
    return "application/json"
