"""`syncd manifest DATASET --format F`: a dataset's import manifest."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from syncd.cli.context import EXIT_OK, UsageError, known_dataset, project_of
from syncd.manifest.build import FORMATS, ManifestError


def cmd_manifest(args: argparse.Namespace) -> int:
    with project_of(args) as project:
        known_dataset(project.catalog, args.dataset)
        try:
            summary = project.manifest(
                args.dataset,
                args.format,
                args.out,
                prefix=args.prefix,
                probe=args.probe,
                signed_ttl=args.signed_urls,
                changed_since=args.changed_since,
                progress=_progress() if sys.stderr.isatty() else None,
            )
        except ManifestError as exc:
            raise UsageError(str(exc)) from None
    print(json.dumps(summary, ensure_ascii=False), file=sys.stderr)
    return EXIT_OK


def _progress() -> Any:
    def show(count: int) -> None:
        print(f"\r{count:,} entries", end="", file=sys.stderr, flush=True)

    return show


def register(sub: Any) -> None:
    p = sub.add_parser("manifest", help="write an import manifest for a dataset")
    p.add_argument("dataset", help="the dataset's name")
    p.add_argument("--format", required=True, choices=FORMATS, help="the manifest's format")
    p.add_argument("--out", default="-", help="file path, or - for stdout (default)")
    p.add_argument("--prefix", default="", help="only items whose key starts with this")
    p.add_argument(
        "--probe",
        action="store_true",
        help="read headers (ranged reads): image sizes, DICOM series by SeriesInstanceUID, metadata",
    )
    p.add_argument("--signed-urls", type=int, metavar="TTL", help="signed URLs valid TTL seconds")
    p.add_argument(
        "--changed-since", type=int, metavar="N", help="only items changed after change N"
    )
    p.set_defaults(func=cmd_manifest)
