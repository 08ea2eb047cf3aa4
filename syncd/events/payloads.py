"""The fields of the providers' event payloads that syncd reads, validated at the edge.

Each model names only what syncd uses and ignores the rest. Values are checked for what the
catalog can store, not only for their JSON type: a key with a NUL or a lone surrogate, a
size beyond 64 bits, an event time far in the future (it would pin the item against every
later change), a sequencer that is not hex, an MD5 that is not 16 bytes of base64 are all
refused here, so that a message fails alone, as a dead letter with the reason, instead of
failing every transaction it is retried in.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from syncd.events.timeparse import epoch

#: How far in the future an event time may be (the sender's clock running fast).
CLOCK_SKEW = 3600.0
#: Longer than any provider accepts (S3 and GCS: 1,024 bytes; Azure: 1,024 characters).
MAX_KEY_BYTES = 4096
#: Sizes are 64-bit signed integers in both catalogs.
MAX_SIZE = 2**63 - 1
MAX_TEXT = 1024


class PayloadError(ValueError):
    """The payload is not a notification syncd understands (the message says why)."""


def _whole(value: Any) -> Any:
    """JSON numbers and decimal strings (GCS sends int64 values as strings), never booleans
    or fractions."""
    if isinstance(value, bool):
        raise ValueError("expected a whole number, got a boolean")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(value)
    if isinstance(value, str):
        if not value.isascii() or not value.isdigit():
            raise ValueError(f"expected a whole number, got {value[:40]!r}")
        return int(value)
    return value


def storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode (a lone surrogate)") from None
    if len(encoded) > MAX_KEY_BYTES:
        raise ValueError(f"is {len(encoded)} bytes long (at most {MAX_KEY_BYTES})")
    return value


def _text(value: str) -> str:
    if len(value) > MAX_TEXT:
        raise ValueError(f"is {len(value)} characters long (at most {MAX_TEXT})")
    return storable(value)


def _event_time(value: Any) -> float:
    if value is None or value == "":
        raise ValueError("is missing")
    if not isinstance(value, str):
        raise ValueError(f"expected an RFC 3339 time, got {type(value).__name__}")
    try:
        moment = epoch(value)
    except ValueError:
        raise ValueError(f"is not an RFC 3339 time: {value[:40]!r}") from None
    if moment > time.time() + CLOCK_SKEW:
        raise ValueError(f"{value!r} is more than {CLOCK_SKEW:.0f}s in the future")
    return moment


def event_time(value: Any, what: str) -> float:
    """An RFC 3339 time given outside a model (a CloudEvent attribute, a context field)."""
    try:
        return _event_time(value)
    except ValueError as exc:
        raise PayloadError(f"{what} {exc}") from None


def _md5(value: str) -> str:
    try:
        digest = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64") from None
    if len(digest) != 16:
        raise ValueError(f"decodes to {len(digest)} bytes, not an MD5's 16")
    return digest.hex()


Whole = Annotated[int, BeforeValidator(_whole)]
Size = Annotated[int, BeforeValidator(_whole), Field(ge=0, le=MAX_SIZE)]
Generation = Annotated[int, BeforeValidator(_whole), Field(ge=0, lt=10**20)]
Key = Annotated[str, Field(min_length=1), AfterValidator(storable)]
Text = Annotated[str, AfterValidator(_text)]
Hex = Annotated[str, Field(pattern=r"^[0-9A-Fa-f]{1,64}$")]
EventTime = Annotated[float, BeforeValidator(_event_time)]
Md5Hex = Annotated[str, AfterValidator(_md5)]


class Payload(BaseModel):
    # Only what syncd reads is checked; providers add fields over time.
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


M = TypeVar("M", bound=Payload)


def read(model: type[M], data: Any, what: str) -> M:
    """`data` as `model`, or a PayloadError naming each field at fault."""
    if not isinstance(data, Mapping):
        raise PayloadError(f"{what} is not a JSON object (got {type(data).__name__})")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(f"{what}: {describe(exc)}") from None


def describe(exc: ValidationError, limit: int = 5) -> str:
    """pydantic's errors in a line: `s3.object.size: expected a whole number, got 'abc'`."""
    parts = []
    for error in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "(top)"
        if error["type"] == "missing" or error.get("input", ...) is None:
            message = "is missing"
        elif error["type"] == "string_unicode":
            message = "is not valid Unicode (a lone surrogate)"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


# -- AWS -------------------------------------------------------------------------------------


class S3Bucket(Payload):
    name: Key


class S3Object(Payload):
    key: Key
    size: Size | None = None
    eTag: Text | None = None
    versionId: Text | None = None
    sequencer: Hex | None = None


class S3Entity(Payload):
    bucket: S3Bucket
    object: S3Object


class S3Record(Payload):
    eventName: Text
    eventTime: EventTime
    s3: S3Entity
    responseElements: dict[str, Any] | None = None


class EventBridgeObject(Payload):
    key: Key
    size: Size | None = None
    # AWS documents `etag`; emulators checked against AWS also send `eTag`.
    etag: Text | None = Field(default=None, validation_alias=AliasChoices("etag", "eTag"))
    version_id: Text | None = Field(default=None, alias="version-id")
    sequencer: Hex | None = None


class EventBridgeDetail(Payload):
    bucket: S3Bucket
    object: EventBridgeObject
    deletion_type: Text | None = Field(default=None, alias="deletion-type")
    reason: Text | None = None


class EventBridgeEvent(Payload):
    id: Text | None = None
    detail_type: Text = Field(alias="detail-type")
    time: EventTime
    detail: EventBridgeDetail


# -- Google Cloud Storage ----------------------------------------------------------------


class GcsObject(Payload):
    """The Cloud Storage JSON API's object resource (the parts syncd keeps)."""

    bucket: Key
    name: Key
    generation: Generation | None = None
    metageneration: Generation | None = None
    size: Size | None = None
    md5Hash: Md5Hex | None = None
    etag: Text | None = None
    contentType: Text | None = None
    updated: EventTime | None = None


class GcsAttributes(Payload):
    """The attributes of a Cloud Storage Pub/Sub notification."""

    eventType: Text
    bucketId: Key | None = None
    objectId: Key | None = None
    objectGeneration: Generation | None = None
    overwrittenByGeneration: Generation | None = None
    eventTime: EventTime | None = None


class PubsubMessage(Payload):
    data: str = ""
    attributes: dict[str, str] = Field(default_factory=dict)
    messageId: Text | None = None
    message_id: Text | None = None

    def payload(self) -> bytes:
        try:
            return base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError):
            raise PayloadError("Pub/Sub message data is not base64") from None

    @property
    def id(self) -> str:
        return self.messageId or self.message_id or ""


# -- Azure -----------------------------------------------------------------------------------


class BlobEventData(Payload):
    contentLength: Size | None = None
    eTag: Text | None = None
    contentType: Text | None = None
    sequencer: Hex | None = None
    url: Text | None = None


class GridEvent(Payload):
    """An Event Grid event in either schema (`eventType`/`eventTime` or `type`/`time`)."""

    id: Text | None = None
    subject: Text = ""
    eventType: Text | None = None
    type: Text | None = None
    eventTime: EventTime | None = None
    time: EventTime | None = None
    data: BlobEventData | None = None
