"""`syncd dead-letters ls|retry|discard`: event payloads that could not be applied."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from syncd.catalog import open_catalog
from syncd.cli.context import EXIT_FAILURE, EXIT_OK, UsageError, catalog_of, config_of
from syncd.cli.render import emit_json, table
from syncd.views import dead_letter_view, iso

#: Characters of a payload a table shows.
PREVIEW = 80


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: write a whole number, at least 1")
    return value


def _unknown(letter_id: int) -> UsageError:
    return UsageError(f"no dead letter {letter_id} (see `syncd dead-letters ls`)")


def cmd_ls(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    try:
        letters = catalog.dead_letters(args.limit)
    finally:
        catalog.close()
    if args.json:
        emit_json([dead_letter_view(d) for d in letters])
        return EXIT_OK
    if not letters:
        print("no dead letters")
        return EXIT_OK
    table(
        None,
        ("id", "received", "source", "attempts", "reason", "payload"),
        (
            (d.id, iso(d.received_at), d.source, d.attempts, d.reason, _preview(d.payload))
            for d in letters
        ),
    )
    return EXIT_OK


def _preview(payload: str) -> str:
    flat = " ".join(payload.split())
    return flat if len(flat) <= PREVIEW else flat[: PREVIEW - 1] + "…"


def cmd_retry(args: argparse.Namespace) -> int:
    from syncd.events.replay import retry_dead_letter

    # Applying a payload routes its events to the config's drivers: the config is needed.
    config = config_of(args)
    catalog = open_catalog(args.catalog or config.catalog_url())
    try:
        outcome = retry_dead_letter(catalog, config, args.id)
    finally:
        catalog.close()
    if outcome is None:
        raise _unknown(args.id)
    if args.json:
        emit_json(outcome.as_dict())
    elif outcome.applied_ok:
        changes = f"{outcome.applied:,} change{'' if outcome.applied == 1 else 's'}"
        print(f"dead letter {args.id}: applied ({changes} written) and removed")
    else:
        print(
            f"dead letter {args.id}: still not applicable: {outcome.reason or 'no reason given'}",
            file=sys.stderr,
        )
    return EXIT_OK if outcome.applied_ok else EXIT_FAILURE


def cmd_discard(args: argparse.Namespace) -> int:
    catalog = catalog_of(args)
    try:
        removed = catalog.discard_dead_letter(args.id)
    finally:
        catalog.close()
    if not removed:
        raise _unknown(args.id)
    print(f"dead letter {args.id}: discarded")
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser(
        "dead-letters",
        help="event payloads that could not be applied: list, retry, discard",
    )
    actions = p.add_subparsers(dest="dead_letters_command", required=True, metavar="ACTION")
    ls = actions.add_parser("ls", help="dead letters, newest first")
    ls.add_argument("--limit", type=_positive, default=100, help="how many (default 100)")
    ls.add_argument("--json", action="store_true", help="one JSON array, payloads included")
    ls.set_defaults(func=cmd_ls)

    retry = actions.add_parser(
        "retry",
        help="apply a dead letter's payload again (after a fix); removed once it applies",
        description=(
            "Exit status: 0 when the payload applied (the dead letter is removed), 1 when "
            "it still cannot be applied (it stays), 2 for an unknown id."
        ),
    )
    retry.add_argument("id", type=int, help="the dead letter's id (see `dead-letters ls`)")
    retry.add_argument("--json", action="store_true", help="the outcome as one JSON object")
    retry.set_defaults(func=cmd_retry)

    discard = actions.add_parser(
        "discard",
        help="delete a dead letter without applying it",
        description="Exit status: 0 when removed, 2 for an unknown id.",
    )
    discard.add_argument("id", type=int, help="the dead letter's id (see `dead-letters ls`)")
    discard.set_defaults(func=cmd_discard)
