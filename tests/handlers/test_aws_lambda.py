"""The Lambda handler end to end on moto: S3 → SQS notifications on a real moto server,
received and handed over as Lambda's SQS event, deleted only after commit."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from syncd.catalog import Catalog, open_catalog
from syncd.catalog.sqlite import SqliteCatalog
from tests.handlers.conftest import ROUTES, fresh, json_lines
from tests.peers import Peer


def lambda_event(queue_arn: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Lambda's SQS event shape, built from what ReceiveMessage returned."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
            for m in messages
        ]
    }


def receive_all(sqs: Any, url: str, expected: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 20
    while len(got) < expected and time.monotonic() < deadline:
        batch = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=30
        )
        got += batch.get("Messages", [])
    return got


def test_s3_to_sqs_to_lambda_updates_the_catalog_and_poison_is_dead_lettered(
    wired: tuple[Catalog, pytest.MonkeyPatch], moto_clean: Peer
) -> None:
    catalog, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="s3", bucket="uploads"))
    s3 = boto3.client("s3", endpoint_url=moto_clean.url, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto_clean.url, region_name="us-east-1")
    queue = sqs.create_queue(QueueName="uploads-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    s3.create_bucket(Bucket="uploads")
    s3.put_bucket_notification_configuration(
        Bucket="uploads",
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
            ]
        },
    )
    s3.put_object(Bucket="uploads", Key="scans/a b+c.dcm", Body=b"1234")
    s3.put_object(Bucket="uploads", Key="scans/gone.dcm", Body=b"x")
    s3.delete_object(Bucket="uploads", Key="scans/gone.dcm")
    sqs.send_message(QueueUrl=queue, MessageBody="{not json")

    messages = receive_all(sqs, queue, 5)  # the s3:TestEvent, 3 changes, the poison one
    assert len(messages) == 5
    handler = fresh("handlers.aws_lambda")
    response = handler.handler(lambda_event(arn, messages), None)
    assert response == {"batchItemFailures": []}
    # Acknowledge only now, after the commit the handler returned from.
    for m in messages:
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])

    items = {i.key: i for i in catalog.items("inbox", include_deleted=True)}
    assert items["scans/a b+c.dcm"].size == 4 and not items["scans/a b+c.dcm"].deleted
    assert items["scans/gone.dcm"].deleted
    (letter,) = catalog.dead_letters()
    assert letter.payload == "{not json" and "not JSON" in letter.reason
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages") is None

    again = handler.handler(lambda_event(arn, messages), None)  # a redelivery
    assert again == {"batchItemFailures": []}
    assert len(list(catalog.changes("inbox"))) == 2


def test_a_failed_commit_reports_every_message_for_redelivery(
    wired: tuple[Catalog, pytest.MonkeyPatch],
) -> None:
    _, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="s3", bucket="uploads"))
    handler = fresh("handlers.aws_lambda")
    body = json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "eventTime": "2026-11-23T08:00:00Z",
                    "s3": {"bucket": {"name": "uploads"}, "object": {"key": "k", "size": 1}},
                }
            ]
        }
    )
    event = {
        "Records": [
            {
                "messageId": "m1",
                "body": body,
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            }
        ]
    }
    handler.handler(event, None)
    # The database goes away mid-flight, and reconnecting fails too.
    catalog = handler._sink.applier.catalog
    if isinstance(catalog, SqliteCatalog):
        catalog.close()
        Path(catalog.path).unlink()
        Path(catalog.path).mkdir()
    else:
        catalog._conninfo = "postgresql://postgres@127.0.0.1:9/test"
        catalog.close()
    assert handler.handler(event, None) == {"batchItemFailures": [{"itemIdentifier": "m1"}]}


def test_catalog_url_from_a_secrets_manager_secret(
    wired: tuple[Catalog, pytest.MonkeyPatch], moto_clean: Peer, catalog_url: str
) -> None:
    catalog, env = wired
    secrets = boto3.client("secretsmanager", endpoint_url=moto_clean.url, region_name="us-east-1")
    arn = secrets.create_secret(Name="syncd/catalog", SecretString=catalog_url)["ARN"]
    env.delenv("SYNCD_CATALOG_URL")
    env.setenv("SYNCD_CATALOG_URL_SECRET", arn)
    env.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_clean.url)
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="s3", bucket="uploads"))
    handler = fresh("handlers.aws_lambda")
    document = json.loads(
        (
            Path(__file__).parents[1] / "fixtures" / "events" / "aws-eventbridge-created.json"
        ).read_text()
    )
    document["detail"]["bucket"]["name"] = "uploads"
    assert handler.handler(document, None)["applied"] == 1
    assert [i.key for i in catalog.items("inbox")] == ["scans/ct 01.dcm"]


class LambdaContext:
    """The attributes of Lambda's context object that the handler reads."""

    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    function_name = "syncd-events"


def test_logs_are_json_lines_bound_to_the_request(
    wired: tuple[Catalog, pytest.MonkeyPatch], capsys: pytest.CaptureFixture[str]
) -> None:
    _, env = wired
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="s3", bucket="uploads"))
    handler = fresh("handlers.aws_lambda")
    capsys.readouterr()
    event = {
        "Records": [
            {
                "messageId": "poison-1",
                "body": "{not json",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
            }
        ]
    }
    assert handler.handler(event, LambdaContext()) == {"batchItemFailures": []}
    lines = json_lines(capsys.readouterr().err)
    (dead,) = [line for line in lines if line["message"] == "message dead-lettered"]
    assert dead["request_id"] == LambdaContext.aws_request_id and dead["id"] == "poison-1"
    assert dead["level"] == "warning" and dead["severity"] == "WARNING"


def test_versioned_bucket_removal_of_the_current_version_is_settled_by_a_head(
    wired: tuple[Catalog, pytest.MonkeyPatch], moto_clean: Peer
) -> None:
    """Put v1, put v2, then remove v2 for good: v1 shows again. Delivered out of order, the
    removal cannot say what shows now; the handler asks the bucket (HEAD) and settles it."""
    catalog, env = wired
    s3 = boto3.client("s3", endpoint_url=moto_clean.url, region_name="us-east-1")
    s3.create_bucket(Bucket="versioned")
    s3.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    v1 = s3.put_object(Bucket="versioned", Key="scan 1.dcm", Body=b"1")
    v2 = s3.put_object(Bucket="versioned", Key="scan 1.dcm", Body=b"22")
    s3.delete_object(Bucket="versioned", Key="scan 1.dcm", VersionId=v2["VersionId"])
    env.setenv(
        "SYNCD_CONFIG_YAML",
        f"""
integrations:
  - {{name: cloud, provider: s3, endpoint_url: "{moto_clean.url}", region: us-east-1}}
drivers: [{{name: inbox, integration: cloud, bucket: versioned, versioned: true}}]
datasets: [{{name: inbox, drivers: [inbox]}}]
""",
    )

    def record(name: str, seq: int, version: str, put: dict[str, Any] | None = None) -> str:
        obj: dict[str, Any] = {
            "key": "scan+1.dcm",
            "versionId": version,
            "sequencer": f"{seq:016X}",
        }
        if put is not None:
            obj |= {"size": len(put["body"]), "eTag": put["ETag"].strip('"')}
        return json.dumps(
            {
                "Records": [
                    {
                        "eventVersion": "2.1",
                        "eventSource": "aws:s3",
                        "eventTime": f"2026-11-23T08:00:0{seq}.000Z",
                        "eventName": name,
                        "s3": {"bucket": {"name": "versioned"}, "object": obj},
                    }
                ]
            }
        )

    bodies = [
        record("ObjectCreated:Put", 1, v1["VersionId"], {**v1, "body": b"1"}),
        record("ObjectRemoved:Delete", 3, v2["VersionId"]),
        record("ObjectCreated:Put", 2, v2["VersionId"], {**v2, "body": b"22"}),
    ]
    handler = fresh("handlers.aws_lambda")
    for n, body in enumerate(bodies):
        event = {
            "Records": [
                {
                    "messageId": f"m{n}",
                    "body": body,
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
                }
            ]
        }
        assert handler.handler(event, None) == {"batchItemFailures": []}
    (item,) = catalog.items("inbox", include_deleted=True)
    assert (item.key, item.deleted, item.verify) == ("scan 1.dcm", False, False)
    assert (item.version, item.size) == (v1["VersionId"], 1)


def test_an_rds_style_secret_is_a_catalog_url_and_never_shown(
    wired: tuple[Catalog, pytest.MonkeyPatch],
    moto_clean: Peer,
    postgres_url: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """AWS's rotation templates store JSON; the handler builds the URL from it, and no error
    or log line shows the password."""
    from urllib.parse import urlsplit

    _, env = wired
    parts = urlsplit(postgres_url)
    secrets = boto3.client("secretsmanager", endpoint_url=moto_clean.url, region_name="us-east-1")
    value = {
        "engine": "postgres",
        "username": parts.username,
        "password": "p@ss:w/rd",
        "host": parts.hostname,
        "port": parts.port,
        "dbname": parts.path.lstrip("/"),
        "schema": postgres_url.split("schema=")[1],
    }
    arn = secrets.create_secret(Name="rds/syncd", SecretString=json.dumps(value))["ARN"]
    env.delenv("SYNCD_CATALOG_URL")
    env.setenv("SYNCD_CATALOG_URL_SECRET", arn)
    env.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", moto_clean.url)
    env.setenv("SYNCD_CONFIG_YAML", ROUTES.format(provider="s3", bucket="uploads"))
    handler = fresh("handlers.aws_lambda")
    document = json.loads(
        (
            Path(__file__).parents[1] / "fixtures" / "events" / "aws-eventbridge-created.json"
        ).read_text()
    )
    document["detail"]["bucket"]["name"] = "uploads"
    # trust auth: any password connects, and the one in the secret must have been used.
    assert handler.handler(document, None)["applied"] == 1
    catalog = open_catalog(postgres_url)
    assert [i.key for i in catalog.items("inbox")] == ["scans/ct 01.dcm"]
    catalog.close()

    value["host"] = "127.0.0.1"
    value["port"] = 9
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(value))
    handler = fresh("handlers.aws_lambda")
    with pytest.raises(Exception) as raised:
        handler.handler(document, None)
    assert "p@ss" not in str(raised.value) and "p%40ss" not in str(raised.value)
    assert "p@ss" not in capsys.readouterr().err
