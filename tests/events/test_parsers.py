"""Every delivery path's documented payload parses to the expected ObjectEvents."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from syncd.events.aws import parse_lambda_event
from syncd.events.azure import parse_blob_trigger, parse_event_grid_batch, validation_code
from syncd.events.gcp import (
    parse_background_event,
    parse_binary_cloud_event,
    parse_push_envelope,
    parse_structured_cloud_event,
)
from syncd.events.types import EventKind, s3_token

FIXTURES = Path(__file__).parent.parent / "fixtures" / "events"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_s3_direct_records_decode_form_encoded_keys() -> None:
    (message,) = parse_lambda_event(load("aws-s3-direct.json"))
    assert message.error is None
    events = message.events
    assert [(e.kind, e.key) for e in events] == [
        (EventKind.CREATED, "photos/Happy Face +1.jpg"),
        # A versioned bucket's permanent delete of one version, and a delete marker.
        (EventKind.VERSION_DELETED, "photos/café old.jpg"),
        (EventKind.DELETED, "photos/marker.jpg"),
    ]
    first = events[0]
    assert (first.provider, first.bucket, first.size) == ("s3", "amzn-s3-demo-bucket", 1024)
    assert first.version == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert first.token == "0055AED6DCD90281E5".ljust(32, "0")
    assert first.event_time == 1795420800.0


def test_sequencers_compare_as_aws_documents() -> None:
    # A shorter sequencer is right-padded with zeros before a lexicographic comparison.
    assert s3_token("0055AED6DCD90281E5") < s3_token("0055AED6DCD90281E6")  # type: ignore[operator]
    assert s3_token("0055AED6DCD9028") < s3_token("0055AED6DCD90281")  # type: ignore[operator]
    assert s3_token("0055AED6DCD90281") == s3_token("0055AED6DCD9028100")


def test_s3_test_event_is_acknowledged_and_ignored() -> None:
    (message,) = parse_lambda_event(load("aws-s3-test-event.json"))
    assert message.error is None and message.events == []


def test_sns_to_lambda() -> None:
    (message,) = parse_lambda_event(load("aws-sns-lambda.json"))
    assert [(e.kind, e.key, e.size) for e in message.events] == [
        (EventKind.CREATED, "videos/clip 1.mp4", 5_000_000)
    ]


def test_sqs_records_are_separate_messages_and_a_poison_one_is_marked() -> None:
    messages = parse_lambda_event(load("aws-sqs-lambda.json"))
    assert [m.id[:2] for m in messages] == ["05", "2e", "3a", "4b", "5c"]
    assert [(e.kind, e.key) for e in messages[0].events] == [
        (EventKind.CREATED, "videos/clip 1.mp4")
    ]
    assert [(e.kind, e.key) for e in messages[1].events] == [
        (EventKind.CREATED, "videos/clip 1.mp4")
    ]
    assert [(e.kind, e.key) for e in messages[2].events] == [(EventKind.DELETED, "scans/ct 01.dcm")]
    assert messages[3].events == [] and messages[3].error is None
    assert messages[4].error is not None and "not JSON" in messages[4].error
    assert messages[4].raw == "this is not json"
    assert messages[0].source.endswith(":my-queue")


def test_eventbridge_direct() -> None:
    (created,) = parse_lambda_event(load("aws-eventbridge-created.json"))
    (event,) = created.events
    assert (event.kind, event.bucket, event.key, event.size) == (
        EventKind.CREATED,
        "amzn-s3-demo-bucket1",
        "scans/ct 01.dcm",
        5,
    )
    assert event.version == "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
    (deleted,) = parse_lambda_event(load("aws-eventbridge-deleted.json"))
    assert deleted.events[0].kind is EventKind.DELETED
    assert deleted.events[0].token > event.token  # type: ignore[operator]


def test_gcs_cloud_event_structured_and_binary() -> None:
    document = load("gcp-cloudevent-finalized.json")
    message = parse_structured_cloud_event(document)
    (event,) = message.events
    assert (event.kind, event.provider, event.bucket, event.key) == (
        EventKind.CREATED,
        "gcs",
        "my-bucket",
        "images/photo 1.jpg",
    )
    assert event.size == 3 and event.etag == "d41d8cd98f00b204e9800998ecf8427e"
    assert event.token == f"{1700000000000001:020d}.{1:020d}"
    assert event.version == "1700000000000001"
    headers = {f"ce-{k}": str(v) for k, v in document.items() if k != "data"}
    binary = parse_binary_cloud_event(headers, json.dumps(document["data"]).encode())
    assert binary.events == message.events


def test_gcs_delete_with_overwritten_by_generation_is_an_overwrite() -> None:
    message = parse_structured_cloud_event(load("gcp-cloudevent-deleted-overwrite.json"))
    assert message.error is None and message.events == []
    push = parse_push_envelope(load("gcp-pubsub-push-overwrite.json"))
    assert push.error is None and push.events == []


def test_gcs_pubsub_push_finalize() -> None:
    message = parse_push_envelope(load("gcp-pubsub-push-finalize.json"))
    (event,) = message.events
    assert (event.kind, event.key) == (EventKind.CREATED, "images/photo+plus.jpg")
    assert event.token == f"{1700000000000004:020d}.{2:020d}"
    assert message.id == "2070443601311541"


def test_gcs_gen1_background_delete_with_unicode() -> None:
    payload = load("gcp-background-delete.json")
    message = parse_background_event(payload["data"], payload["context"])
    (event,) = message.events
    assert (event.kind, event.key, event.size) == (EventKind.DELETED, "日本/写真.png", None)


def test_gcs_unknown_types_are_errors_for_the_dead_letter_table() -> None:
    bad = parse_push_envelope({"message": {"attributes": {"eventType": "NOPE"}, "data": ""}})
    assert bad.error is not None and "NOPE" in bad.error
    encoded = base64.b64encode(b"{}").decode()
    missing = parse_push_envelope(
        {"message": {"attributes": {"eventType": "OBJECT_FINALIZE"}, "data": encoded}}
    )
    assert missing.error is not None and "bucket: is missing" in missing.error


def test_azure_event_grid_and_cloudevents_schemas() -> None:
    messages = parse_event_grid_batch(load("azure-eventgrid-batch.json"))
    assert [(e.kind, e.bucket, e.key) for m in messages for e in m.events] == [
        (EventKind.CREATED, "test-container", "new file+1.txt"),
        (EventKind.DELETED, "test-container", "ünï/old.png"),
    ]
    created = messages[0].events[0]
    assert created.size == 524288 and created.etag == "0x8D4BCC2E4835CD0"
    assert created.token == "00000000000004420000000000028963"
    (cloud,) = parse_event_grid_batch(load("azure-cloudevents-batch.json"))
    assert cloud.events[0].key == created.key and cloud.events[0].token == created.token


def test_azure_validation_handshake_and_blob_trigger() -> None:
    assert validation_code(load("azure-eventgrid-validation.json")) == (
        "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    )
    assert validation_code(load("azure-eventgrid-batch.json")) is None
    message = parse_blob_trigger(
        "samples/scans/a b.dcm", 10, "https://acct.blob.core.windows.net/x"
    )
    (event,) = message.events
    assert (event.bucket, event.key, event.size) == ("samples", "scans/a b.dcm", 10)
    bad = parse_event_grid_batch([{"eventType": "Microsoft.Storage.BlobCreated", "subject": "/x"}])
    assert bad[0].error is not None and "does not name a blob" in bad[0].error


def test_eventbridge_keys_are_decoded_once_direct_and_through_sqs() -> None:
    document = load("aws-eventbridge-created.json")
    document["detail"]["object"]["key"] = "cat+photo+%281%29.jpg"
    (direct,) = parse_lambda_event(document)
    assert direct.events[0].key == "cat photo (1).jpg"
    wrapped = {
        "Records": [
            {
                "messageId": "1",
                "body": json.dumps(document),
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            }
        ]
    }
    (queued,) = parse_lambda_event(wrapped)
    assert queued.events[0].key == "cat photo (1).jpg"


def _eventbridge_deleted(**detail: Any) -> Any:
    document = load("aws-eventbridge-deleted.json")
    document["detail"].update(detail)
    return document


def test_eventbridge_deletion_types() -> None:
    obj = {"key": "k", "sequencer": "617f0837b476e463"}
    marker = _eventbridge_deleted(
        object={**obj, "version-id": "m1"}, **{"deletion-type": "Delete Marker Created"}
    )
    plain = _eventbridge_deleted(object=obj, **{"deletion-type": "Permanently Deleted"})
    version = _eventbridge_deleted(
        object={**obj, "version-id": "v1"}, **{"deletion-type": "Permanently Deleted"}
    )
    expired = _eventbridge_deleted(
        object={**obj, "version-id": "v1"},
        reason="Lifecycle Expiration",
        **{"deletion-type": "Permanently Deleted"},
    )
    kinds = [[e.kind for e in parse_lambda_event(d)[0].events] for d in (marker, plain, version)]
    assert kinds == [[EventKind.DELETED], [EventKind.DELETED], [EventKind.VERSION_DELETED]]
    (ignored,) = parse_lambda_event(expired)
    assert ignored.events == [] and ignored.error is None


def test_s3_lifecycle_and_other_event_names() -> None:
    (unversioned,) = parse_lambda_event(load("aws-s3-lifecycle-expiration.json"))
    assert [(e.kind, e.key) for e in unversioned.events] == [
        (EventKind.DELETED, "expiration/delete")
    ]
    document = load("aws-s3-lifecycle-expiration.json")
    record = document["Records"][0]
    record["s3"]["object"]["versionId"] = "old"  # a noncurrent version expired: no change
    assert parse_lambda_event(document)[0].events == []
    record["eventName"] = "LifecycleExpiration:DeleteMarkerCreated"
    assert [e.kind for e in parse_lambda_event(document)[0].events] == [EventKind.DELETED]
    for name in ("ObjectTagging:Put", "ObjectRestore:Completed", "LifecycleTransition"):
        record["eventName"] = name
        (message,) = parse_lambda_event(document)
        assert message.events == [] and message.error is None


def test_gcs_through_a_pubsub_triggered_function_gen2_and_gen1() -> None:
    cloud = parse_structured_cloud_event(load("gcp-pubsub-cloudevent.json"))
    (event,) = cloud.events
    assert (event.kind, event.bucket, event.key) == (
        EventKind.CREATED,
        "my-bucket",
        "images/photo+plus.jpg",
    )
    assert cloud.id == "2070443601311541"
    gen1 = load("gcp-gen1-pubsub.json")
    background = parse_background_event(gen1["data"], gen1["context"])
    assert background.events == cloud.events and background.id == cloud.id


def test_gcs_delete_and_archive_order_after_every_metadata_update() -> None:
    document = load("gcp-pubsub-push-finalize.json")
    for event_type in ("OBJECT_DELETE", "OBJECT_ARCHIVE"):
        document["message"]["attributes"]["eventType"] = event_type
        (event,) = parse_push_envelope(document).events
        assert event.kind is EventKind.DELETED
        assert event.token is not None and event.token > f"{1700000000000004:020d}.{2:020d}"


def test_azure_delete_of_a_version_or_snapshot_leaves_the_blob() -> None:
    batch = load("azure-eventgrid-batch.json")
    deleted = next(e for e in batch if e["eventType"] == "Microsoft.Storage.BlobDeleted")
    for query in ("?versionid=2026-11-23T08:00:00.0000000Z", "?snapshot=2026-11-23T08:00:00Z"):
        versioned = {**deleted, "data": {**deleted["data"], "url": deleted["data"]["url"] + query}}
        (message,) = parse_event_grid_batch([versioned])
        assert message.events == [] and message.error is None


def _s3(**obj: Any) -> Any:
    document = load("aws-s3-direct.json")
    record = document["Records"][0]
    record["s3"]["object"].update(obj)
    document["Records"] = [record]
    return document


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (_s3(size="abc"), "s3.object.size: expected a whole number"),
        (_s3(size=2**70), "s3.object.size"),
        (_s3(size=float("nan")), "s3.object.size"),
        (_s3(size=True), "s3.object.size: expected a whole number, got a boolean"),
        (_s3(eTag={"an": "object"}), "s3.object.eTag"),
        (_s3(key="bad%00key"), "NUL"),
        (_s3(key="lone\ud800"), "lone surrogate"),
        (_s3(key="%FF%FE"), "not UTF-8"),
        (_s3(sequencer="not-hex"), "s3.object.sequencer"),
    ],
)
def test_s3_fields_of_the_wrong_kind_are_dead_letter_reasons(document: Any, field: str) -> None:
    (message,) = parse_lambda_event(json.loads(json.dumps(document, allow_nan=True)))
    assert message.events == [] and message.error is not None and field in message.error


def test_event_times_are_bounded() -> None:
    for when, reason in (("yesterday", "not an RFC 3339 time"), ("9999-12-31T23:59:59Z", "future")):
        document = load("aws-s3-direct.json")
        document["Records"][0]["eventTime"] = when
        (message,) = parse_lambda_event(document)
        # The other two records of the same notification still apply.
        assert len(message.events) == 2
        assert message.error is not None and "record 0" in message.error and reason in message.error


def test_gcs_and_azure_fields_of_the_wrong_kind() -> None:
    push = load("gcp-pubsub-push-finalize.json")
    resource = json.loads(base64.b64decode(push["message"]["data"]))
    for change, reason in (
        ({"md5Hash": "abc"}, "md5Hash"),
        ({"size": "abc"}, "size: expected a whole number"),
        ({"generation": "-1"}, "generation"),
    ):
        bad = {**resource, **change}
        body = {
            **push,
            "message": {
                **push["message"],
                "data": base64.b64encode(json.dumps(bad).encode()).decode(),
            },
        }
        message = parse_push_envelope(body)
        assert message.error is not None and reason in message.error, message.error
    garbage = {**push, "message": {**push["message"], "data": "%%% not base64 %%%"}}
    assert "not base64" in (parse_push_envelope(garbage).error or "")
    binary = parse_binary_cloud_event({"ce-id": "1", "ce-type": "x"}, b"\xff\xfe")
    assert binary.error is not None
    batch = load("azure-eventgrid-batch.json")
    (stringly,) = parse_event_grid_batch([{**batch[0], "data": "a string"}])
    assert stringly.error is not None and "data" in stringly.error
