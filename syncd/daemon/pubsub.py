"""A Pub/Sub pull subscription as a daemon source: Cloud Storage notifications."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from syncd.config import PubsubSource
from syncd.daemon.consumer import Received
from syncd.events.gcp import parse_pubsub_message


class PubsubQueue:
    def __init__(self, source: PubsubSource) -> None:
        from google.cloud import pubsub_v1

        self.subscription = source.subscription
        self.name = f"pubsub:{source.subscription.rsplit('/', 1)[-1]}"
        self.batch = source.batch
        self.client = pubsub_v1.SubscriberClient()

    def receive(self, wait: float) -> list[Received]:
        from google.api_core import exceptions as gexc

        try:
            response = self.client.pull(
                request={"subscription": self.subscription, "max_messages": self.batch},
                timeout=max(wait, 1.0),
            )
        except gexc.DeadlineExceeded:
            return []
        now = time.time()
        return [
            Received(
                parse_pubsub_message(
                    m.message.message_id,
                    dict(m.message.attributes),
                    m.message.data,
                    source=f"gcp:pubsub:{self.subscription}",
                ),
                m.ack_id,
                now,
            )
            for m in response.received_messages
        ]

    def ack(self, handles: Sequence[Any]) -> None:
        self.client.acknowledge(
            request={"subscription": self.subscription, "ack_ids": list(handles)}
        )

    def _deadline(self, handles: Sequence[Any], seconds: int) -> None:
        self.client.modify_ack_deadline(
            request={
                "subscription": self.subscription,
                "ack_ids": list(handles),
                "ack_deadline_seconds": seconds,
            }
        )

    def release(self, handles: Sequence[Any]) -> None:
        self._deadline(handles, 0)

    def extend(self, handles: Sequence[Any], seconds: float) -> list[Any]:
        self._deadline(handles, int(seconds))
        return list(handles)
