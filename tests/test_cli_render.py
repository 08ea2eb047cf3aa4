"""Terminal tables print user data literally."""

from __future__ import annotations

import pytest

from syncd.cli.render import table


def test_cells_that_look_like_markup_print_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    table("runs", ("key", "reason"), [("[bold]a.jpg[/bold]", "listing failed at [/x]")])
    out = capsys.readouterr().out
    assert "[bold]a.jpg[/bold]" in out and "[/x]" in out
