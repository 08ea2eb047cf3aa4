"""The status page (`GET /`): one self-contained HTML page from `syncd.status`'s summary, no
script, no external asset, every value escaped (keys, reasons and sources are user data)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web

from syncd.status import REFRESH_SECONDS, counts_text, duration, letters_count, size, status_summary

# -- the page --------------------------------------------------------------------------------

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d2430;background:#f7f8fa}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.05rem;margin:1.6rem 0 .4rem}
.meta{color:#5b6575}table{border-collapse:collapse;background:#fff;min-width:40%}
th,td{border:1px solid #dde1e7;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
.s{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-weight:600;font-size:.85em}
.ok{background:#d9f2df;color:#17622c}.bad{background:#fbdcdc;color:#8c1c1c}
.warn{background:#fdf0c8;color:#7a5a00}.run{background:#dbe8fb;color:#1e4f91}
.nw{white-space:nowrap}.none{color:#8a93a2}.reason{max-width:48rem;word-break:break-word}
"""

_STATUS_CLASS = {
    "succeeded": "ok",
    "failed": "bad",
    "aborted": "bad",
    "completed_with_errors": "warn",
    "interrupted": "warn",
    "running": "run",
}


def e(value: Any) -> str:
    """Any value as escaped HTML text; None as a dash."""
    if value is None or value == "":
        return '<span class="none">—</span>'
    return html.escape(str(value), quote=True)


def _status(status: str | None) -> str:
    if status is None:
        return e(None)
    return f'<span class="s {_STATUS_CLASS.get(status, "warn")}">{e(status)}</span>'


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """A table of cells that are already HTML (each made with `e`, `_status` or `_num`)."""
    body = "".join("<tr>" + "".join(row) + "</tr>" for row in rows)
    if not body:
        return f'<p class="none">{e(empty)}</p>'
    head = "".join(f"<th>{e(c)}</th>" for c in columns)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _td(value: Any, cls: str = "") -> str:
    return f'<td class="{cls}">{e(value)}</td>' if cls else f"<td>{e(value)}</td>"


def _num(value: int | float | None) -> str:
    return _td(None if value is None else f"{value:,}", "n")


def render_page(summary: dict[str, Any]) -> str:
    """The status page of `status_summary(...)`: one HTML document, refreshing itself."""
    daemon = summary["daemon"]
    parts = []
    if daemon is not None:
        line = (
            f"replica <strong>{e(daemon['replica'])}</strong> · up {e(duration(daemon['uptime_seconds']))}"
            f" (since {e(daemon['started_at'])})"
        )
        if daemon["stopping"]:
            line += ' · <span class="s warn">stopping</span>'
    else:
        line = "no daemon: read from the catalog alone"
    parts.append(f'<p class="meta">{line} · generated {e(summary["generated_at"])}</p>')

    parts.append("<h2>Datasets</h2>")
    parts.append(
        _table(
            ("dataset", "drivers", "items", "size", "tombstones"),
            (
                (
                    _td(d["name"]),
                    _td(", ".join(r["name"] for r in d["drivers"])),
                    _num(d["items"]),
                    _td(size(d["bytes"]), "n"),
                    _num(d["deleted"]),
                )
                for d in summary["datasets"]
            ),
            "no datasets yet",
        )
    )
    parts.append("<h2>Drivers</h2>")
    parts.append(
        _table(
            ("dataset", "driver", "last run", "counts", "finished", "next run", "reason"),
            (_driver_cells(d["name"], r) for d in summary["datasets"] for r in d["drivers"]),
            "no drivers yet",
        )
    )
    if daemon is not None:
        parts.append("<h2>Event sources</h2>")
        parts.append(
            _table(
                (
                    "source",
                    "batches",
                    "applied",
                    "dead-lettered",
                    "errors",
                    "lag p50",
                    "lag p99",
                    "last error",
                ),
                (
                    (
                        f"<td>{e(s['name'])}"
                        + (' <span class="s bad">failing</span>' if s["failing"] else "")
                        + "</td>",
                        _num(s["batches"]),
                        _num(s["applied"]),
                        _num(s["dead_lettered"]),
                        _num(s["errors"]),
                        _td(_seconds(s["lag_p50_seconds"]), "n"),
                        _td(_seconds(s["lag_p99_seconds"]), "n"),
                        _td(s["last_error"], "reason"),
                    )
                    for s in daemon["sources"]
                ),
                "no event sources",
            )
        )
    parts.append("<h2>Recent failures</h2>")
    parts.append(
        _table(
            ("run", "dataset", "driver", "status", "finished", "reason"),
            (
                (
                    _num(f["id"]),
                    _td(f["dataset"]),
                    _td(f["driver"]),
                    f"<td>{_status(f['status'])}</td>",
                    _td(f["finished_at"]),
                    _td(f["reason"], "reason"),
                )
                for f in summary["recent_failures"]
            ),
            "no failed or aborted runs recently",
        )
    )
    letters = summary["dead_letters"]
    parts.append(f"<h2>Dead letters ({e(letters_count(summary))})</h2>")
    parts.append(
        _table(
            ("id", "received", "source", "attempts", "reason"),
            (
                (
                    _num(d["id"]),
                    _td(d["received_at"]),
                    _td(d["source"]),
                    _num(d["attempts"]),
                    _td(d["reason"], "reason"),
                )
                for d in letters["newest"]
            ),
            "no dead letters",
        )
    )
    parts.append("<h2>Leases</h2>")
    stats = daemon["leases"] if daemon is not None else None
    if stats is not None:
        parts.append(
            f'<p class="meta">this replica holds {e(stats["held"])} · renewals '
            f"{e(stats['renewals'])} · lost {e(stats['lost'])} · last renewal "
            f"{e(stats['last_renewal'])}"
            + (f" · last error {e(stats['last_error'])}" if stats["last_error"] else "")
            + "</p>"
        )
    parts.append(
        _table(
            ("lease", "owner", "epoch", "expires in"),
            (
                (
                    _td(lease["name"]),
                    _td(lease["owner"] + (" (this replica)" if lease["mine"] else "")),
                    _num(lease["epoch"]),
                    _td(duration(lease["expires_in_seconds"]), "n"),
                )
                for lease in summary["leases"]
            ),
            "no lease is held",
        )
    )
    title = "syncd status" + (f" — {len(summary['failing'])} failing" if summary["failing"] else "")
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)}</title><style>{CSS}</style></head>"
        f"<body><h1>syncd status</h1>{''.join(parts)}</body></html>\n"
    )


def _seconds(value: float | None) -> str | None:
    if value is None:
        return None
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _driver_cells(dataset: str, row: dict[str, Any]) -> list[str]:
    run = row["last_run"]
    failing = row["last_finished"] if row["failing"] else None
    reason = (failing or {}).get("reason") or (run or {}).get("reason")
    status = _status(run["status"] if run else None)
    if row["running"] and not (run and run["status"] == "running"):
        status += ' <span class="s run">running</span>'
    if failing and run and run["id"] != failing["id"]:
        status += f" (last finished: {_status(failing['status'])})"
    schedule = row["schedule"]
    next_run = row["next_due"]
    return [
        _td(dataset),
        _td(row["name"]),
        f"<td>{status}</td>",
        _td(counts_text(run["counts"]) if run else None, "nw"),
        _td(
            f"{run['finished_at']} ({duration(row['age_seconds'])} ago)"
            if run and run["finished_at"]
            else None
        ),
        _td(f"{next_run} ({schedule})" if next_run else schedule),
        _td(reason, "reason"),
    ]


# -- the route -------------------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.get("/")
async def status_page(request: web.Request) -> web.Response:
    from syncd.api.catalog_routes import context

    ctx = context(request)
    daemon = ctx.daemon
    state = daemon.state if daemon is not None else None
    lease_stats = daemon.leases.stats if daemon is not None else None
    summary = await ctx.call(lambda c: status_summary(c, state, lease_stats))
    return web.Response(
        text=render_page(summary),
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-store"},
    )
