"""Retrying dead letters on SQLite and PostgreSQL: every source's stored payload is parsed
again into the same events, applied with the letter removed in the same transaction; what
still fails (or cannot be parsed from the payload alone) stays, untouched."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syncd.catalog import Catalog
from syncd.catalog.sql import _SqlWriteTx
from syncd.config import Config, parse_config
from syncd.errors import CatalogUnavailable
from syncd.events.apply import EventApplier
from syncd.events.aws import events_of, parse_lambda_event, parse_sqs_body
from syncd.events.azure import parse_blob_trigger, parse_event_grid_batch
from syncd.events.gcp import (
    parse_background_event,
    parse_binary_cloud_event,
    parse_cloud_event,
    parse_pubsub_message,
    parse_push_envelope,
    parse_structured_cloud_event,
)
from syncd.events.replay import reparse, retry_dead_letter
from syncd.events.types import Message

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
CONFIG = """\
integrations:
  - {name: aws, provider: s3}
  - {name: gcp, provider: gcs}
  - {name: az, provider: azure, account_name: devstoreaccount1}
drivers:
  - {name: s3in, integration: aws, bucket: amzn-s3-demo-bucket}
  - {name: s3eb, integration: aws, bucket: amzn-s3-demo-bucket1}
  - {name: gcsin, integration: gcp, bucket: my-bucket}
  - {name: azin, integration: az, bucket: test-container}
datasets:
  - {name: ds, drivers: [s3in, s3eb, gcsin, azin]}
"""


def config() -> Config:
    return parse_config(CONFIG, "test.yaml", base_dir=Path.cwd())


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def letter(catalog: Catalog, message: Message, reason: str = "an older parser refused it") -> int:
    """`message` stored as a dead letter, as the applier stores one; its id."""
    with catalog.transaction() as tx:
        tx.dead_letter(message.source, reason, message.raw, message.id)
    return max(d.id for d in catalog.dead_letters())


def live(catalog: Catalog) -> dict[str, bool]:
    return {i.key: i.deleted for i in catalog.items("ds", include_deleted=True)}


def sqs() -> Message:
    return parse_lambda_event(fixture("aws-sqs-lambda.json"))[0]


def daemon_sqs() -> Message:
    record = fixture("aws-sqs-lambda.json")["Records"][2]
    return parse_sqs_body(record["messageId"], record["body"], "arn:q")


def lambda_direct() -> Message:
    return parse_lambda_event(fixture("aws-s3-direct.json"))[0]


def lambda_eventbridge() -> Message:
    return parse_lambda_event(fixture("aws-eventbridge-created.json"))[0]


def sns_http() -> Message:
    """What the ingest API stores for an SNS HTTP notification: the whole envelope."""
    envelope = fixture("aws-sns-lambda.json")["Records"][0]["Sns"]
    raw = json.dumps(envelope)
    message = Message(envelope["MessageId"], f"aws:sns:{envelope['TopicArn']}", raw)
    message.events = events_of(json.loads(raw), [])
    return message


def event_grid() -> Message:
    return parse_event_grid_batch(fixture("azure-eventgrid-batch.json"))[0]


def cloudevents_schema() -> Message:
    return parse_event_grid_batch(fixture("azure-cloudevents-batch.json"))[0]


def azure_queue() -> Message:
    """As the queue source stores one: the decoded text, all its events in one message."""
    text = json.dumps(fixture("azure-eventgrid-batch.json"))
    parts = parse_event_grid_batch(json.loads(text))
    return Message("q-1", "azure:queue:blob-events", text, [e for p in parts for e in p.events])


def blob_trigger() -> Message:
    return parse_blob_trigger("test-container/triggered/a.bin", 7)


def cloud_event() -> Message:
    return parse_structured_cloud_event(fixture("gcp-cloudevent-finalized.json"))


def binary_cloud_event() -> Message:
    document = fixture("gcp-cloudevent-finalized.json")
    headers = {f"ce-{k}": v for k, v in document.items() if k != "data"}
    return parse_binary_cloud_event(headers, json.dumps(document["data"]).encode())


def push() -> Message:
    return parse_push_envelope(fixture("gcp-pubsub-push-finalize.json"))


def pulled() -> Message:
    pushed = fixture("gcp-pubsub-push-finalize.json")["message"]
    data = base64.b64decode(pushed["data"])
    return parse_pubsub_message(
        "p-1", pushed["attributes"], data, "gcp:pubsub:projects/p/subscriptions/s"
    )


def pubsub_cloud_event() -> Message:
    document = fixture("gcp-pubsub-cloudevent.json")
    attributes = {k: v for k, v in document.items() if k != "data"}
    return parse_cloud_event(attributes, document["data"])


def gen1_pubsub() -> Message:
    document = fixture("gcp-gen1-pubsub.json")
    return parse_background_event(document["data"], document["context"])


SOURCES: dict[str, Callable[[], Message]] = {
    "aws:sqs (Lambda)": sqs,
    "aws:sqs (daemon)": daemon_sqs,
    "aws:lambda S3": lambda_direct,
    "aws:lambda EventBridge": lambda_eventbridge,
    "aws:sns (ingest API)": sns_http,
    "azure:eventgrid": event_grid,
    "azure:eventgrid CloudEvents": cloudevents_schema,
    "azure:queue": azure_queue,
    "azure:blobtrigger": blob_trigger,
    "gcp:cloudevent": cloud_event,
    "gcp:cloudevent binary": binary_cloud_event,
    "gcp:pubsub-push": push,
    "gcp:pubsub (daemon)": pulled,
    "gcp:pubsub-cloudevent": pubsub_cloud_event,
    "gcp:gen1-pubsub": gen1_pubsub,
}


def comparable(message: Message) -> list[Any]:
    # A blob trigger's event is timed when it is parsed.
    return [e if e.provider != "azure" or e.token else e.key for e in message.events]


@pytest.mark.parametrize("make", SOURCES.values(), ids=SOURCES.keys())
def test_every_source_parses_again_into_the_same_events(
    catalog: Catalog, make: Callable[[], Message]
) -> None:
    original = make()
    assert original.error is None and original.events, original
    ident = letter(catalog, original)
    stored = catalog.dead_letter_by_id(ident)
    assert stored is not None
    again = reparse(stored)
    assert (again.id, again.source, again.raw) == (original.id, original.source, original.raw)
    assert again.error is None
    assert comparable(again) == comparable(original)

    outcome = retry_dead_letter(catalog, config(), ident)
    assert outcome is not None and (outcome.id, outcome.applied_ok, outcome.reason) == (
        ident,
        True,
        None,
    )
    assert outcome.applied >= 1
    assert catalog.dead_letter_by_id(ident) is None
    assert {e.key for e in original.events} <= set(live(catalog))


def test_payloads_that_now_parse_in_another_form(catalog: Catalog) -> None:
    """A queue message stored as received (not base64, or base64 when the source did not
    decode it); a Pub/Sub message stored as JSON carries it (base64 data)."""
    text = json.dumps(fixture("azure-eventgrid-batch.json"))
    for payload in (text, base64.b64encode(text.encode()).decode()):
        ident = letter(
            catalog,
            Message("q-2", "azure:queue:blob-events", payload),
            "queue message is not base64",
        )
        outcome = retry_dead_letter(catalog, config(), ident)
        assert outcome is not None and outcome.applied_ok, outcome
    pushed = fixture("gcp-pubsub-push-finalize.json")["message"]
    ident = letter(
        catalog, Message("", "gcp:pubsub-push:projects/p/subscriptions/s", json.dumps(pushed))
    )
    outcome = retry_dead_letter(catalog, config(), ident)
    assert outcome is not None and outcome.applied_ok and outcome.applied == 1
    assert live(catalog) == {
        "new file+1.txt": False,
        "ünï/old.png": True,
        "images/photo+plus.jpg": False,
    }


def test_what_still_fails_stays_as_it_was(catalog: Catalog) -> None:
    cases = [
        (
            parse_lambda_event(fixture("aws-sqs-lambda.json"))[4],
            "still cannot be parsed: SQS body is not JSON",
        ),
        (
            Message(
                "e-1", "azure:eventgrid", json.dumps({"eventType": "Contoso.X", "subject": ""})
            ),
            "Contoso.X",
        ),
        (Message("b-1", "gcp:cloudevent", "not json at all"), "binary-mode CloudEvent"),
        (
            Message("g-1", "gcp:gen1", json.dumps(fixture("gcp-background-delete.json")["data"])),
            "context",
        ),
        (Message("w-1", "watch:inbox", ""), "folder-watcher"),
        (Message("x-1", "kafka:topic", "{}"), "no parser"),
        (Message("", "gcp:pubsub-push:s", json.dumps({"data": "%%%", "attributes": {}})), "base64"),
    ]
    before = []
    for message, _ in cases:
        ident = letter(catalog, message, "the first reason")
        before.append(catalog.dead_letter_by_id(ident))
    for (_, fragment), stored in zip(cases, before, strict=True):
        assert stored is not None
        outcome = retry_dead_letter(catalog, config(), stored.id)
        assert outcome is not None and not outcome.applied_ok and outcome.applied == 0
        assert outcome.reason is not None and fragment in outcome.reason, outcome
        assert catalog.dead_letter_by_id(stored.id) == stored  # not even an attempt counted
    assert retry_dead_letter(catalog, config(), 10**9) is None
    assert live(catalog) == {}


def test_the_letter_goes_only_with_its_commit(
    catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    ident = letter(catalog, sqs())

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a value the catalog refuses")

    with monkeypatch.context() as patched:
        patched.setattr(_SqlWriteTx, "write", refuse)
        outcome = retry_dead_letter(catalog, config(), ident)
        assert outcome is not None and not outcome.applied_ok
        assert outcome.reason is not None and "cannot be stored" in outcome.reason
        assert catalog.dead_letter_by_id(ident) is not None  # the discard rolled back too

        def unreachable(*args: Any, **kwargs: Any) -> Any:
            raise CatalogUnavailable("the database went away")

        patched.setattr(_SqlWriteTx, "write", unreachable)
        with pytest.raises(CatalogUnavailable):
            retry_dead_letter(catalog, config(), ident)
        assert catalog.dead_letter_by_id(ident) is not None
    assert live(catalog) == {}

    outcome = retry_dead_letter(catalog, config(), ident)
    assert outcome is not None and outcome.as_dict() == {
        "id": ident,
        "applied_ok": True,
        "applied": 1,
        "reason": None,
    }
    assert catalog.dead_letter_by_id(ident) is None


def test_a_late_retry_does_not_undo_newer_changes(catalog: Catalog) -> None:
    """The retried events keep their ordering tokens: older than what the item holds, they
    change nothing, and the letter is still settled."""
    created = parse_lambda_event(fixture("aws-eventbridge-created.json"))[0]
    deleted = parse_lambda_event(fixture("aws-eventbridge-deleted.json"))[0]
    ident = letter(catalog, created)
    EventApplier(catalog, config()).apply([deleted])
    outcome = retry_dead_letter(catalog, config(), ident)
    assert outcome is not None and outcome.applied_ok and outcome.applied == 0
    assert live(catalog) == {"scans/ct 01.dcm": True}
    assert catalog.dead_letter_by_id(ident) is None
