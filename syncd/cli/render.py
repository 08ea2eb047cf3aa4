"""Output: JSON on stdout, tables for people, progress on a terminal's stderr.

Long listings never sit in memory: on a terminal a page is shown (and how many more there
are); elsewhere rows stream as tab-separated lines under one header line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from syncd.catalog.types import RunCounts

#: Rows a table shows on a terminal unless --limit or --all says otherwise.
PAGE = 100


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _literal(value: Any) -> Any:
    from rich.text import Text

    # Keys and reasons are user data: rich would read `[x]` in them as markup.
    return value if isinstance(value, Text) else Text(_cell(value))


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A small table, laid out by rich (it holds every row: use `rows_out` for long ones)."""
    from rich.console import Console
    from rich.table import Table

    grid = Table(title=title, show_edge=False, header_style="bold")
    for column in columns:
        grid.add_column(column, overflow="fold")
    for row in rows:
        grid.add_row(*(_literal(v) for v in row))
    Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200).print(grid)


def rows_out(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    more: Callable[[int], int | None] | None = None,
    paged: bool,
) -> None:
    """A long listing. `paged`: a terminal table of the rows given, then how many more
    there are (`more(shown)` counts them). Otherwise rows stream as tab-separated lines."""
    if paged:
        shown = list(rows)
        table(None, columns, shown)
        remaining = more(len(shown)) if more is not None else None
        if remaining:
            print(f"... {remaining:,} more (use --limit N or --all)", file=sys.stderr)
        return
    out = sys.stdout
    out.write("\t".join(columns) + "\n")
    for row in rows:
        out.write("\t".join(_cell(v).replace("\t", " ").replace("\n", " ") for v in row) + "\n")


@contextmanager
def progress(enabled: bool, label: str) -> Iterator[Callable[[RunCounts], None] | None]:
    """A spinner with running counts on stderr while a sync runs, when on a terminal."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        transient=True,
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task(label, detail="")

        def update(counts: RunCounts) -> None:
            bar.update(
                task,
                detail=(
                    f"listed {counts.listed:,}  +{counts.added:,} ~{counts.updated:,} "
                    f"-{counts.deleted:,}"
                ),
            )

        yield update
