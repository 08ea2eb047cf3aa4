"""`syncd run` with each event source on its real peer: changes arrive by notification, not by
listing again; poison messages are dead-lettered and acknowledged; the backfill agrees."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from syncd.catalog import open_catalog
from tests.daemon.conftest import Daemons, live_keys, wait_until
from tests.peers import (
    AZURITE_ACCOUNT,
    Peer,
    azurite_connection_string,
    azurite_queue,
    fake_gcs_notifying,
    pubsub_emulator,
)
from tests.storage.throttle_proxy import Faults, throttling_proxy

#: Seconds an event may take from the bucket to the catalog in these tests (the benchmark
#: measures the real figure).
BOUND = 20.0


def s3_lists(faults: Faults, bucket: str) -> int:
    """ListObjects requests for `bucket` the proxy saw (path-style: GET /bucket?...)."""
    return sum(
        1
        for method, path in faults.requests
        if method == "GET" and path.split("?", 1)[0].rstrip("/") == f"/{bucket}"
    )


@pytest.fixture
def s3_proxy(moto_clean: Peer) -> Iterator[tuple[str, Faults]]:
    with throttling_proxy(moto_clean.url, every=0) as proxied:
        yield proxied


def s3_setup(moto: Peer, bucket: str, queue: str, notify: bool = True) -> tuple[Any, Any, str]:
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    sqs = boto3.client("sqs", endpoint_url=moto.url, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    if notify:
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        s3.put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}
                ]
            },
        )
    return s3, sqs, url


def s3_config(
    tmp_path: Path, endpoint: str, bucket: str, queue_url: str, **daemon: Any
) -> dict[str, Any]:
    return {
        "catalog": f"sqlite:///{tmp_path / 'catalog.db'}",
        "daemon": {"shutdown_grace": "10s", **daemon},
        "integrations": [
            {
                "name": "aws",
                "provider": "s3",
                "endpoint_url": endpoint,
                "region": "us-east-1",
                "access_key_id": "env:AWS_ACCESS_KEY_ID",
                "secret_access_key": "env:AWS_SECRET_ACCESS_KEY",
            }
        ],
        "drivers": [
            {
                "name": "inbox",
                "integration": "aws",
                "bucket": bucket,
                "source": {"kind": "sqs", "queue_url": queue_url, "wait": 1, "visibility": "5s"},
            }
        ],
        "datasets": [{"name": "inbox", "drivers": ["inbox"]}],
    }


def changed(counts: list[dict[str, int]]) -> list[tuple[int, int, int]]:
    """(added, updated, deleted) of each result of a backfill."""
    return [(c["added"], c["updated"], c["deleted"]) for c in counts]


def bucket_keys(s3: Any, bucket: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            out[item["Key"]] = item["ETag"].strip('"')
    return out


def test_s3_notifications_through_sqs_reach_the_catalog_without_listing(
    moto_clean: Peer, s3_proxy: tuple[str, Faults], daemons: Daemons, tmp_path: Path
) -> None:
    proxy, faults = s3_proxy
    bucket = f"b{uuid.uuid4().hex[:10]}"
    s3, sqs, queue_url = s3_setup(moto_clean, bucket, "inbox-events")
    s3.put_object(Bucket=bucket, Key="before/start.jpg", Body=b"0")
    config = daemons.write_config(s3_config(tmp_path, proxy, bucket, queue_url))
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    daemon = daemons.start(config)
    # The first start reconciles (the backfill slot nobody ran yet), then only listens.
    wait_until(lambda: "before/start.jpg" in live_keys(url, "inbox"), BOUND, "the backfill")
    wait_until(lambda: bool(daemon.events("sync finished")), BOUND, "the backfill to finish")
    lists_after_backfill = s3_lists(faults, bucket)
    assert lists_after_backfill >= 1

    keys = [f"new/{n:03d} name+{n}.jpg" for n in range(40)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys[:10]:
        s3.delete_object(Bucket=bucket, Key=key)
    s3.put_object(Bucket=bucket, Key=keys[20], Body=b"overwritten")
    expected = bucket_keys(s3, bucket)
    wait_until(
        lambda: live_keys(url, "inbox") == expected, BOUND, "the catalog to equal the bucket"
    )
    assert s3_lists(faults, bucket) == lists_after_backfill, "an event-driven driver listed again"

    assert daemon.stop() == 0
    # Everything it took was acknowledged after its commit: the queue is empty.
    left = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert left == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
    # With events flowing, the backfill finds nothing to do.
    assert changed(daemons.run_sync(config)) == [(0, 0, 0)]


def drain(sqs: Any, url: str, expected: int) -> list[str]:
    """Every body on the queue, deleting as it goes, until `expected` arrived."""
    bodies: list[str] = []
    while len(bodies) < expected:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for message in got.get("Messages", []):
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def send_all(sqs: Any, url: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [
            {"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies[start : start + 10])
        ]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)


def test_dropped_duplicated_and_shuffled_notifications_converge_at_the_backfill(
    moto_clean: Peer, daemons: Daemons, tmp_path: Path
) -> None:
    bucket = f"b{uuid.uuid4().hex[:10]}"
    s3, sqs, raw_url = s3_setup(moto_clean, bucket, "raw-events")
    feed_url = sqs.create_queue(QueueName="feed")["QueueUrl"]
    # moto's SQS slows with its depth: a few hundred notifications keep the test quick.
    keys = [f"scans/{n:04d}.dcm" for n in range(200)]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"v1")
    for key in keys[:20]:
        s3.put_object(Bucket=bucket, Key=key, Body=b"v2-longer")
    for key in keys[-20:]:
        s3.delete_object(Bucket=bucket, Key=key)
    bodies = [b for b in drain(sqs, raw_url, 241) if "Records" in b]
    assert len(bodies) == 240

    def key_of(body: str) -> str:
        return str(json.loads(body)["Records"][0]["s3"]["object"]["key"])

    rng = random.Random(15)
    rng.shuffle(bodies)
    # 1% lost, creations of objects nothing else mentions (so the loss shows); 1% twice.
    once = set(keys[20:-20])
    dropped = [b for b in bodies if key_of(b) in once][:3]
    kept = [b for b in bodies if b not in dropped]
    delivered = kept + kept[:3]
    rng.shuffle(delivered)
    send_all(sqs, feed_url, delivered)

    config = s3_config(tmp_path, moto_clean.url, bucket, feed_url)
    url = config["catalog"]
    path = daemons.write_config(config)
    # Events first (the backfill slot of the first start is claimed by a run before the feed).
    assert daemons.run_once(path) == 0
    expected = bucket_keys(s3, bucket)
    seen = live_keys(url, "inbox")
    # Exactly what was lost is missing; the duplicates and the disorder did no harm.
    assert {k: v for k, v in expected.items() if k not in seen} == {
        key_of(b): expected[key_of(b)] for b in dropped
    }
    assert all(seen[k] == expected[k] for k in seen)

    # The next backfill slot reconciles what the lost notifications did not say.
    config["drivers"][0]["schedule"] = {"every": "1s"}
    path = daemons.write_config(config)
    daemon = daemons.start(path)
    wait_until(lambda: bool(daemon.events("daemon started")), BOUND, "the daemon to start")
    wait_until(lambda: live_keys(url, "inbox") == expected, BOUND, "the backfill to converge")
    assert daemon.stop() == 0


def s3_record(bucket: str, key: str, n: int) -> dict[str, Any]:
    """One record of an S3 notification as AWS documents it, with its sequencer."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-23T08:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "syncd",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {
                "key": key,
                "size": 10 + n,
                "eTag": f"{n:032x}",
                "sequencer": f"{n:018X}",
            },
        },
    }


def test_sigkill_mid_batch_loses_and_doubles_nothing(
    moto_clean: Peer, daemons: Daemons, tmp_path: Path
) -> None:
    bucket = f"b{uuid.uuid4().hex[:10]}"
    _, sqs, queue_url = s3_setup(moto_clean, bucket, "many", notify=False)
    # Ten records a message (the format's Records is a list): moto's SQS slows with depth.
    count = 2000
    bodies = [
        json.dumps({"Records": [s3_record(bucket, f"k/{n:05d}.jpg", n) for n in range(m, m + 10)]})
        for m in range(0, count, 10)
    ]
    send_all(sqs, queue_url, bodies)
    config = s3_config(tmp_path, moto_clean.url, bucket, queue_url)
    # No backfill during the test: only the queue writes.
    config["drivers"][0]["schedule"] = {"cron": "0 0 1 1 *"}
    url = config["catalog"]
    path = daemons.write_config(config)
    daemon = daemons.start(path)

    def committed() -> int:
        return len(live_keys(url, "inbox"))

    wait_until(lambda: committed() >= 300, 60, "a few hundred events applied", every=0.02)
    daemon.stop(signal.SIGKILL)
    assert committed() < count, "the daemon finished before it could be killed"

    again = daemons.start(path)
    # The messages the killed daemon held come back after their visibility timeout (5 s).
    wait_until(lambda: committed() == count, 90, "every event applied after the restart")
    assert again.stop() == 0
    catalog = open_catalog(url)
    try:
        per_key: dict[str, int] = {}
        for change in catalog.changes("inbox"):
            per_key[change.key] = per_key.get(change.key, 0) + 1
    finally:
        catalog.close()
    assert len(per_key) == count
    assert set(per_key.values()) == {1}, "a redelivered message changed an item again"


def test_azure_event_grid_queue_and_a_poison_message(
    azurite_peer: Peer, daemons: Daemons, tmp_path: Path
) -> None:
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    queue_peer = azurite_queue(tmp_path)
    try:
        connection = azurite_connection_string(azurite_peer, queue_peer)
        container = f"c{uuid.uuid4().hex[:10]}"
        blobs = BlobServiceClient.from_connection_string(connection).create_container(container)
        queue = QueueClient.from_connection_string(connection, "blob-events")
        queue.create_queue()
        os.environ["SYNCD_TEST_AZURE"] = connection
        config: dict[str, Any] = {
            "catalog": f"sqlite:///{tmp_path / 'catalog.db'}",
            "integrations": [
                {"name": "az", "provider": "azure", "connection_string": "env:SYNCD_TEST_AZURE"}
            ],
            "drivers": [
                {
                    "name": "slides",
                    "integration": "az",
                    "bucket": container,
                    "source": {"kind": "azure-queue", "queue": "blob-events", "wait": 0.2},
                }
            ],
            "datasets": [{"name": "slides", "drivers": ["slides"]}],
        }
        path = daemons.write_config(config)
        url = config["catalog"]
        daemon = daemons.start(path)
        wait_until(lambda: bool(daemon.events("sync finished")), BOUND, "the first backfill")

        def event_grid(kind: str, name: str, sequencer: int) -> str:
            props = blobs.get_blob_client(name).get_blob_properties() if kind == "Created" else None
            data: dict[str, Any] = {
                "api": "PutBlob" if props else "DeleteBlob",
                "blobType": "BlockBlob",
                "url": f"http://127.0.0.1:{azurite_peer.port}/{AZURITE_ACCOUNT}/{container}/{name}",
                "sequencer": f"{sequencer:032X}",
            }
            if props is not None:
                data.update(eTag=props.etag, contentLength=props.size, contentType="image/png")
            event = {
                "topic": f"/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/{AZURITE_ACCOUNT}",
                "subject": f"/blobServices/default/containers/{container}/blobs/{name}",
                "eventType": f"Microsoft.Storage.Blob{kind}",
                "eventTime": "2026-11-23T08:00:00.3398787Z",
                "id": str(uuid.uuid4()),
                "data": data,
                "dataVersion": "",
                "metadataVersion": "1",
            }
            # Event Grid's Storage Queue destination writes one event per message, base64.
            return base64.b64encode(json.dumps(event).encode()).decode()

        names = [f"slide {n:02d}.png" for n in range(12)]
        for n, name in enumerate(names):
            blobs.upload_blob(name, f"pixels {n}".encode())
            queue.send_message(event_grid("Created", name, 2 * n + 1))
        queue.send_message("this is not base64!")
        blobs.delete_blob(names[0])
        queue.send_message(event_grid("Deleted", names[0], 100))

        expected = set(names[1:])
        wait_until(lambda: set(live_keys(url, "slides")) == expected, BOUND, "blobs in the catalog")
        catalog = open_catalog(url)
        try:
            wait_until(
                lambda: bool(catalog.dead_letters()), BOUND, "the poison message dead-lettered"
            )
            letters = catalog.dead_letters()
        finally:
            catalog.close()
        assert len(letters) == 1 and "base64" in letters[0].reason
        assert letters[0].source == "azure:queue:blob-events"
        assert daemon.stop() == 0
        # Acknowledged, the poison message included: nothing comes back.
        assert queue.get_queue_properties().approximate_message_count == 0
        assert changed(daemons.run_sync(path)) == [(0, 0, 0)]
    finally:
        os.environ.pop("SYNCD_TEST_AZURE", None)
        queue_peer.stop()


def test_gcs_notifications_through_a_pubsub_pull_subscription(
    daemons: Daemons, tmp_path: Path
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import pubsub_v1, storage

    pubsub = pubsub_emulator(tmp_path)
    gcs = fake_gcs_notifying(pubsub, "test", "bucket-events", tmp_path)
    env = {"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{pubsub.port}", "STORAGE_EMULATOR_HOST": gcs.url}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        pubsub_v1.PublisherClient().create_topic(name="projects/test/topics/bucket-events")
        pubsub_v1.SubscriberClient().create_subscription(
            name="projects/test/subscriptions/syncd",
            topic="projects/test/topics/bucket-events",
        )
        client = storage.Client(project="test", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        bucket = client.create_bucket(f"b{uuid.uuid4().hex[:10]}")
        config: dict[str, Any] = {
            "catalog": f"sqlite:///{tmp_path / 'catalog.db'}",
            "integrations": [{"name": "gcp", "provider": "gcs", "project": "test"}],
            "drivers": [
                {
                    "name": "volumes",
                    "integration": "gcp",
                    "bucket": bucket.name,
                    "source": {
                        "kind": "pubsub",
                        "subscription": "projects/test/subscriptions/syncd",
                        "wait": 1,
                    },
                }
            ],
            "datasets": [{"name": "volumes", "drivers": ["volumes"]}],
        }
        path = daemons.write_config(config)
        url = config["catalog"]
        daemon = daemons.start(path, env=env)
        wait_until(lambda: bool(daemon.events("sync finished")), BOUND, "the first backfill")
        names = [f"ct/{n:02d}.nii.gz" for n in range(15)]
        for name in names:
            bucket.blob(name).upload_from_string(name.encode())
        bucket.blob(names[3]).upload_from_string(b"a new generation")
        bucket.blob(names[0]).delete()
        expected = {b.name: None for b in client.list_blobs(bucket.name)}
        wait_until(
            lambda: set(live_keys(url, "volumes")) == set(expected), BOUND, "objects in the catalog"
        )
        assert daemon.stop() == 0
        assert changed(daemons.run_sync(path, env=env)) == [(0, 0, 0)]
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        gcs.stop()
        pubsub.stop()
