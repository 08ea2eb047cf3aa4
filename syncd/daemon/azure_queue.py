"""An Azure Storage queue as a daemon source: Event Grid's Storage Queue destination puts one
event per message, base64-encoded. Azure queues do not long-poll: an empty receive sleeps
`wait` before the next."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from syncd.config import AzureQueueSource, Integration
from syncd.daemon.consumer import Received
from syncd.events.azure import parse_event_grid_batch
from syncd.events.types import Message


class AzureQueue:
    def __init__(self, source: AzureQueueSource, integration: Integration, base_dir: Path) -> None:
        from azure.storage.queue import QueueClient

        self.name = f"azure-queue:{source.queue}"
        self.batch = source.batch
        self.visibility = int(source.visibility)
        self.base64 = source.base64
        if integration.connection_string:
            self.client = QueueClient.from_connection_string(
                integration.connection_string.resolve(base_dir), source.queue
            )
        else:
            account = (
                integration.account_url
                or f"https://{integration.account_name}.blob.core.windows.net"
            )
            queue_url = account.replace(".blob.", ".queue.")
            credential: Any
            if integration.account_key:
                credential = {
                    "account_name": integration.account_name,
                    "account_key": integration.account_key.resolve(base_dir),
                }
            elif integration.sas_token:
                credential = integration.sas_token.resolve(base_dir)
            else:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            self.client = QueueClient(queue_url, source.queue, credential=credential)

    def _message(self, queued: Any) -> Message:
        content = queued.content
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        ident = str(queued.id)
        source = f"azure:queue:{self.name.split(':', 1)[1]}"
        if self.base64:
            try:
                text = base64.b64decode(text, validate=True).decode("utf-8")
            except (binascii.Error, ValueError):
                return Message(ident, source, text, error="queue message is not base64")
        try:
            document = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return Message(ident, source, text, error="queue message is not JSON")
        parsed = parse_event_grid_batch(document if isinstance(document, list) else [document])
        message = Message(ident, source, text)
        message.events = [event for part in parsed for event in part.events]
        errors = [part.error for part in parsed if part.error]
        if errors or not parsed:
            message.error = "; ".join(errors) or "queue message holds no event"
        return message

    def receive(self, wait: float) -> list[Received]:
        got = list(
            self.client.receive_messages(
                messages_per_page=self.batch,
                visibility_timeout=self.visibility,
                max_messages=self.batch,
            )
        )
        if not got:
            time.sleep(wait)
            return []
        now = time.time()
        return [Received(self._message(m), m, now) for m in got]

    def ack(self, handles: Sequence[Any]) -> None:
        for queued in handles:
            self.client.delete_message(queued)

    def release(self, handles: Sequence[Any]) -> None:
        for queued in handles:
            self.client.update_message(queued, visibility_timeout=0)

    def extend(self, handles: Sequence[Any], seconds: float) -> list[Any]:
        # Each update gives the message a new pop receipt, which later calls must use.
        return [self.client.update_message(q, visibility_timeout=int(seconds)) for q in handles]
