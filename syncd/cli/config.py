"""`syncd init` and `syncd config validate`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from syncd.cli.context import EXIT_OK, EXIT_USAGE, UsageError, config_of
from syncd.cli.render import emit_json
from syncd.config import check_config, config_path

EXAMPLE_CONFIG = """\
# syncd configuration. Secrets are never written here: use env:NAME, file:PATH, or leave
# them out to use the provider's default chain (instance role, ADC, managed identity).

# Where the catalog lives. SQLite for one machine; PostgreSQL to share it between processes
# and machines: postgresql://user@host:5432/db?schema=syncd  (SYNCD_CATALOG_URL overrides).
catalog: sqlite:///.syncd/catalog.db

# `syncd run`: the daemon. Replicas sharing a PostgreSQL catalog split the work between them.
daemon:
  workers: 2                     # reconciles at once
  lease_ttl: 60s                 # a replica that stops renewing loses its drivers after this
  backfill: 1d                   # drivers without a schedule are still reconciled this often
  shutdown_grace: 10s            # SIGTERM: in-flight work finishes or is released within this
  # replica: host-a              # its name in leases (default host:pid, or $SYNCD_REPLICA)

# The HTTP API `syncd run` serves (datasets, items, the change feed, sync triggers, metrics).
# api:
#   listen: 127.0.0.1:8080
#   tokens:
#     - {name: pipeline, token: env:SYNCD_API_TOKEN, scopes: [read, write]}

integrations:
  - name: disk
    provider: local
  # - name: aws
  #   provider: s3
  #   profile: labeling            # or access_key_id: env:AWS_ACCESS_KEY_ID ...
  # - name: gcp
  #   provider: gcs
  #   project: my-project
  # - name: azure
  #   provider: azure
  #   connection_string: env:AZURE_STORAGE_CONNECTION_STRING

drivers:
  - name: local-images
    integration: disk
    bucket: ./data                 # a folder for provider local; a bucket or container otherwise
    prefix: ""                     # only keys under this prefix
    include: []                    # globs, e.g. ["*.jpg", "scans/**/*.dcm"]
    exclude: []                    # "lost+found/**" also keeps the walk out of that folder
    # skip: [".*", "*.part", "*.tmp", "*~"]   # hidden and partial files (the default)
    allow_external_delete: true    # false: keep items whose objects disappear
    max_delete: 50%                # a sync deleting more than this stops (also a count: 1000)
    schedule: {every: 15m, jitter: 10%}   # when `syncd run` reconciles it; or {cron: "0 3 * * *"}
    # source: {kind: watch, settle: 2s}   # ingest files as they settle (polling: true for NFS)
    # Buckets send their notifications to a queue the daemon reads:
    # source: {kind: sqs, queue_url: https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE}
    # source: {kind: azure-queue, queue: blob-events}        # Event Grid → Storage Queue
    # source: {kind: pubsub, subscription: projects/P/subscriptions/S}

datasets:
  - name: images
    drivers: [local-images]
"""


def cmd_init(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if path.exists() and not args.force:
        raise UsageError(f"{path} exists; use --force to overwrite it")
    path.write_text(EXAMPLE_CONFIG, encoding="utf-8")
    print(f"wrote {path}: edit the driver's folder, then run `syncd sync`")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    config = config_of(args)
    source = config_path(args.config)
    problems = check_config(config)
    if problems:
        if args.json:
            emit_json({"valid": False, "config": str(source), "errors": problems})
        else:
            print("config error:\n" + "\n".join(problems), file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        emit_json({"valid": True, "config": str(source), "datasets": len(config.datasets)})
    else:
        print(
            f"{source}: valid ({len(config.integrations)} integrations, "
            f"{len(config.drivers)} drivers, {len(config.datasets)} datasets)"
        )
    return EXIT_OK


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="write a commented example syncd.yaml")
    p.add_argument("--path", default="syncd.yaml", help="where to write it (default: syncd.yaml)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("config", help="configuration tools")
    actions = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    v = actions.add_parser("validate", help="check the config; report every error at once")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=cmd_validate)
