"""AWS Lambda entry point for S3 notifications (direct, SNS, SQS, EventBridge).

Configure with SYNCD_CATALOG_URL and SYNCD_CONFIG or SYNCD_CONFIG_YAML, or with SYNCD_INGEST_URL
and SYNCD_INGEST_TOKEN to forward to the daemon's ingest API instead. Behind SQS, enable
ReportBatchItemFailures: messages whose changes were not committed come back in
`batchItemFailures`; a message that cannot be parsed is stored as a dead letter and
acknowledged. For direct invocations a failure raises, so Lambda retries.
"""

from __future__ import annotations

from typing import Any

from syncd import logs
from syncd.events.aws import parse_lambda_event
from syncd.events.sink import Sink, open_sink

logs.configure(function=True)
_sink: Sink | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _sink
    logs.bind_request(request_id=getattr(context, "aws_request_id", None))
    _sink = _sink or open_sink("aws")
    messages = parse_lambda_event(event)
    result = _sink.handle(messages)
    if messages and messages[0].source.startswith("aws:sqs"):
        return {"batchItemFailures": [{"itemIdentifier": i} for i in result.failed]}
    if result.failed:
        raise RuntimeError(f"{len(result.failed)} messages not committed; retry")
    return {
        "applied": result.applied,
        "ignored": result.ignored,
        "dead_lettered": result.dead_lettered,
    }
