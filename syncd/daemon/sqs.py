"""Amazon SQS as a daemon source: S3 notifications (direct, SNS-enveloped, EventBridge)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from syncd.config import Integration, SqsSource
from syncd.daemon.consumer import Received
from syncd.events.aws import parse_sqs_body


class SqsQueue:
    def __init__(self, source: SqsSource, integration: Integration, base_dir: Path) -> None:
        from syncd.storage.s3 import session_for

        self.url = str(source.queue_url)
        self.name = f"sqs:{self.url.rsplit('/', 1)[-1]}"
        self.batch = source.batch
        self.visibility = int(source.visibility)
        session = session_for(integration, base_dir)
        self.client = session.client(
            "sqs",
            endpoint_url=integration.endpoint_url,
            region_name=integration.region or _region_of(self.url),
        )
        self.arn = self.client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def receive(self, wait: float) -> list[Received]:
        got = self.client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=self.batch,
            WaitTimeSeconds=int(wait),
            VisibilityTimeout=self.visibility,
        ).get("Messages", [])
        now = time.time()
        return [
            Received(
                parse_sqs_body(m["MessageId"], m["Body"], self.arn),
                m["ReceiptHandle"],
                now,
            )
            for m in got
        ]

    def ack(self, handles: Sequence[Any]) -> None:
        for start in range(0, len(handles), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": h}
                for n, h in enumerate(handles[start : start + 10])
            ]
            self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)

    def _visibility(self, handles: Sequence[Any], seconds: int) -> None:
        for start in range(0, len(handles), 10):
            entries = [
                {"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": seconds}
                for n, h in enumerate(handles[start : start + 10])
            ]
            self.client.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)

    def release(self, handles: Sequence[Any]) -> None:
        self._visibility(handles, 0)

    def extend(self, handles: Sequence[Any], seconds: float) -> list[Any]:
        self._visibility(handles, int(seconds))
        return list(handles)


def _region_of(url: str) -> str:
    # https://sqs.REGION.amazonaws.com/ACCOUNT/NAME
    host = url.split("/")[2]
    parts = host.split(".")
    return parts[1] if len(parts) > 3 and parts[0] == "sqs" else "us-east-1"
