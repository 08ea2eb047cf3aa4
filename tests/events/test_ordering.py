"""Invariant 3 against the truth: generated histories of a bucket are turned into the
provider's own notification payloads, delivered in any order, duplicated, in any batching,
and the catalog must end as a listing of the bucket would show it.

An item whose state the events cannot tell is marked for verification; a stat of the
bucket settles it. Before settling, every item *not* so marked must already be right: the
applier may say "I don't know", never guess wrong.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.catalog import Catalog
from syncd.config import parse_config
from syncd.errors import NotFound
from syncd.events.apply import EventApplier, Unsettled
from syncd.events.aws import parse_lambda_event
from syncd.events.azure import parse_event_grid_batch
from syncd.events.gcp import parse_pubsub_message
from syncd.events.types import Message
from syncd.storage.types import ObjectInfo

KEYS = ["a.jpg", "dir/b b.png", "c+1.dcm"]
T0 = 1_795_000_000.0
_examples = itertools.count()

#: What a listing shows of one object: size, etag, version (None where not kept).
Shown = tuple[int, str | None, str | None]


@dataclass
class Version:
    id: str
    size: int
    etag: str
    marker: bool = False


@dataclass
class Bucket:
    """A bucket's history as the provider lives it, and the messages it sends."""

    provider: str
    versioned: bool
    seq: int = 0
    messages: list[Message] = field(default_factory=list)
    stacks: dict[str, list[Version]] = field(default_factory=dict)

    def tick(self) -> int:
        self.seq += 1
        return self.seq

    def shown(self) -> dict[str, Shown]:
        out: dict[str, Shown] = {}
        for key, stack in self.stacks.items():
            if stack and not stack[-1].marker:
                top = stack[-1]
                out[key] = (top.size, top.etag, top.id if self.keeps_versions else None)
        return out

    @property
    def keeps_versions(self) -> bool:
        return self.provider == "gcs" or (self.provider == "s3" and self.versioned)

    def stat(self, key: str) -> ObjectInfo:
        shown = self.shown().get(key)
        if shown is None:
            raise NotFound(key)
        return ObjectInfo(key, shown[0], T0, shown[1], shown[2])


class S3(Bucket):
    def _send(
        self,
        name: str,
        key: str,
        version: str | None,
        size: int | None = None,
        etag: str | None = None,
    ) -> None:
        seq = self.tick()
        obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "sequencer": f"{seq:016X}"}
        if version is not None:
            obj["versionId"] = version
        if size is not None:
            obj["size"] = size
            obj["eTag"] = etag
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": _iso(T0 + seq),
            "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": "media"}, "object": obj},
        }
        (message,) = parse_lambda_event({"Records": [record]})
        message.id = f"m{seq}"
        self.messages.append(message)

    def put(self, key: str, _: int) -> None:
        seq = self.seq + 1
        version = Version(f"v{seq}" if self.versioned else "null", seq, f"e{seq}")
        stack = self.stacks.setdefault(key, [])
        if not self.versioned:
            stack.clear()
        stack.append(version)
        self._send(
            "ObjectCreated:Put",
            key,
            version.id if self.versioned else None,
            version.size,
            version.etag,
        )

    def delete(self, key: str, _: int) -> None:
        stack = self.stacks.setdefault(key, [])
        if not self.versioned:
            if stack:
                stack.clear()
                self._send("ObjectRemoved:Delete", key, None)
            return
        marker = Version(f"m{self.seq + 1}", 0, "", marker=True)
        stack.append(marker)
        self._send("ObjectRemoved:DeleteMarkerCreated", key, marker.id)

    def remove_version(self, key: str, choice: int) -> None:
        """A permanent delete of one version (current or not, object or delete marker)."""
        stack = self.stacks.get(key)
        if not self.versioned or not stack:
            return self.delete(key, choice)
        gone = stack.pop(choice % len(stack))
        self._send("ObjectRemoved:Delete", key, gone.id)

    def expire_noncurrent(self, key: str, choice: int) -> None:
        """Lifecycle expiration of a noncurrent version: the listing does not change."""
        stack = self.stacks.get(key)
        if not self.versioned or not stack or len(stack) < 2:
            return None
        gone = stack.pop(choice % (len(stack) - 1))
        self._send("LifecycleExpiration:Delete", key, gone.id)

    operations = ("put", "delete", "remove_version", "expire_noncurrent")


class GCS(Bucket):
    """Generations: a live one per object at most; a versioned bucket archives the old one."""

    def _send(
        self,
        event_type: str,
        key: str,
        generation: int,
        metageneration: int,
        size: int,
        etag: str,
        **extra: str,
    ) -> None:
        seq = self.tick()
        resource = {
            "kind": "storage#object",
            "bucket": "media",
            "name": key,
            "generation": str(generation),
            "metageneration": str(metageneration),
            "size": str(size),
            "md5Hash": base64.b64encode(bytes.fromhex(etag)).decode(),
            "contentType": "image/png",
            "updated": _iso(T0 + seq),
        }
        attributes = {
            "eventType": event_type,
            "bucketId": "media",
            "objectId": key,
            "objectGeneration": str(generation),
            "eventTime": _iso(T0 + seq),
            "payloadFormat": "JSON_API_V1",
            **extra,
        }
        message = parse_pubsub_message(f"g{seq}", attributes, json.dumps(resource).encode())
        self.messages.append(message)

    def _live(self, key: str) -> Version | None:
        stack = self.stacks.get(key) or []
        return stack[-1] if stack and not stack[-1].marker else None

    def put(self, key: str, _: int) -> None:
        generation = 1_700_000_000_000_000 + (self.seq + 1) * 1000
        etag = f"{self.seq + 1:032x}"
        new = Version(str(generation), self.seq + 1, etag)
        old = self._live(key)
        stack = self.stacks.setdefault(key, [])
        if old is not None:
            gone = "OBJECT_ARCHIVE" if self.versioned else "OBJECT_DELETE"
            self._send(
                gone,
                key,
                int(old.id),
                1,
                old.size,
                old.etag,
                overwrittenByGeneration=str(generation),
            )
            if not self.versioned:
                stack.clear()
            else:
                stack.append(Version(f"archived-{old.id}", 0, "", marker=True))
        stack.append(new)
        self._send("OBJECT_FINALIZE", key, generation, 1, new.size, new.etag)

    def delete(self, key: str, _: int) -> None:
        old = self._live(key)
        if old is None:
            return
        self._send(
            "OBJECT_ARCHIVE" if self.versioned else "OBJECT_DELETE",
            key,
            int(old.id),
            1,
            old.size,
            old.etag,
        )
        self.stacks[key].append(Version(f"archived-{old.id}", 0, "", marker=True))

    def update_metadata(self, key: str, _: int) -> None:
        live = self._live(key)
        if live is not None:
            self._send("OBJECT_METADATA_UPDATE", key, int(live.id), 2, live.size, live.etag)

    def remove_noncurrent(self, key: str, choice: int) -> None:
        """A permanent delete of an archived generation: the live one is untouched."""
        stack = self.stacks.get(key) or []
        old = [v for v in stack if not v.marker and v is not self._live(key)]
        if not self.versioned or not old:
            return None
        gone = old[choice % len(old)]
        stack.remove(gone)
        self._send("OBJECT_DELETE", key, int(gone.id), 1, gone.size, gone.etag)

    operations = ("put", "delete", "update_metadata", "remove_noncurrent")


class Azure(Bucket):
    def _send(self, event_type: str, key: str, size: int | None, etag: str | None) -> None:
        seq = self.tick()
        data: dict[str, Any] = {
            "api": "PutBlob",
            "sequencer": f"{seq:032X}",
            "blobType": "BlockBlob",
        }
        if size is not None:
            data |= {"contentLength": size, "eTag": f'"{etag}"', "contentType": "image/png"}
        document = {
            "topic": "/subscriptions/s/resourceGroups/g/providers/Microsoft.Storage/storageAccounts/a",
            "subject": f"/blobServices/default/containers/media/blobs/{key}",
            "eventType": event_type,
            "eventTime": _iso(T0 + seq),
            "id": f"z{seq}",
            "data": data,
            "dataVersion": "",
            "metadataVersion": "1",
        }
        (message,) = parse_event_grid_batch([document])
        self.messages.append(message)

    def put(self, key: str, _: int) -> None:
        version = Version("", self.seq + 1, f"0x{self.seq + 1:X}")
        self.stacks[key] = [version]
        self._send("Microsoft.Storage.BlobCreated", key, version.size, version.etag)

    def delete(self, key: str, _: int) -> None:
        if self.stacks.get(key):
            self.stacks[key] = []
            self._send("Microsoft.Storage.BlobDeleted", key, None, None)

    operations = ("put", "delete")


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


MODELS: dict[str, Callable[[], Bucket]] = {
    "s3": lambda: S3("s3", versioned=False),
    "s3-versioned": lambda: S3("s3", versioned=True),
    "gcs": lambda: GCS("gcs", versioned=False),
    "gcs-versioned": lambda: GCS("gcs", versioned=True),
    "azure": lambda: Azure("azure", versioned=False),
}


def applier_for(catalog: Catalog, provider: str, versioned: bool) -> tuple[EventApplier, str]:
    n = next(_examples)
    text = f"""
integrations: [{{name: cloud, provider: {provider}}}]
drivers: [{{name: r{n}, integration: cloud, bucket: media, versioned: {str(versioned).lower()}}}]
datasets: [{{name: d{n}, drivers: [r{n}]}}]
"""
    return EventApplier(catalog, parse_config(text, "test.yaml")), f"d{n}"


def catalog_state(catalog: Catalog, dataset: str) -> tuple[dict[str, Shown], set[str]]:
    shown: dict[str, Shown] = {}
    verify: set[str] = set()
    for item in catalog.items(dataset, include_deleted=True):
        if item.verify:
            verify.add(item.key)
        elif not item.deleted:
            shown[item.key] = (item.size, item.etag, item.version)
    return shown, verify


def deliver(applier: EventApplier, batches: Iterator[list[Message]]) -> list[Unsettled]:
    pending: list[Unsettled] = []
    for batch in batches:
        result = applier.apply(batch)
        assert result.failed == [] and result.dead_lettered == 0
        pending += result.unsettled
    return pending


def check(catalog: Catalog, bucket: Bucket, batches: Iterator[list[Message]]) -> None:
    applier, dataset = applier_for(catalog, bucket.provider, bucket.versioned)
    pending = deliver(applier, batches)
    truth = bucket.shown()
    shown, verify = catalog_state(catalog, dataset)
    # Not marked means right: what is shown and not to be verified is the truth...
    assert shown == {k: v for k, v in truth.items() if k not in verify}
    # ...and a stat settles everything marked.
    applier.settle(pending, lambda route, key: bucket.stat(key))
    assert catalog_state(catalog, dataset) == (truth, set())


history = st.lists(
    st.tuples(st.integers(0, 3), st.sampled_from(KEYS), st.integers(0, 7)),
    min_size=1,
    max_size=14,
)


def build(model: str, ops: list[tuple[int, str, int]]) -> Bucket:
    bucket = MODELS[model]()
    for op, key, choice in ops:
        name = type(bucket).operations[op % len(type(bucket).operations)]  # type: ignore[attr-defined]
        getattr(bucket, name)(key, choice)
    return bucket


@pytest.mark.parametrize("model", sorted(MODELS))
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=history, seed=st.integers(0, 2**16), duplicates=st.integers(0, 4), batch=st.integers(1, 6)
)
def test_any_delivery_of_a_history_ends_as_the_bucket_shows(
    catalog: Catalog,
    model: str,
    ops: list[tuple[int, str, int]],
    seed: int,
    duplicates: int,
    batch: int,
) -> None:
    bucket = build(model, ops)
    messages = bucket.messages
    rng = random.Random(seed)
    shuffled = messages + [rng.choice(messages) for _ in range(duplicates)] if messages else []
    rng.shuffle(shuffled)
    check(catalog, bucket, (shuffled[i : i + batch] for i in range(0, len(shuffled), batch)))


@pytest.mark.parametrize("model", sorted(MODELS))
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=history)
def test_in_order_delivery_ends_as_the_bucket_shows(
    catalog: Catalog, model: str, ops: list[tuple[int, str, int]]
) -> None:
    bucket = build(model, ops)
    check(catalog, bucket, ([m] for m in bucket.messages))
