"""The normalized bucket event, and a delivered message that carries some of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class EventKind(StrEnum):
    CREATED = "created"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One object change, whatever delivered it.

    `token` orders changes of one object: S3 and Azure sequencers (upper-case hex,
    right-padded with zeros to 32 characters, so plain string order is AWS's documented
    comparison), GCS `GENERATION.METAGENERATION` (each zero-padded to 20 digits). None when
    the payload carries no token (then event time orders).
    """

    kind: EventKind
    provider: str
    bucket: str
    key: str
    event_time: float
    token: str | None = None
    size: int | None = None
    etag: str | None = None
    version: str | None = None
    content_type: str | None = None
    event_id: str | None = None


@dataclass(slots=True)
class Message:
    """One delivered unit (an SQS message, a Pub/Sub message, an HTTP request, an event
    of a batch) that the platform acknowledges or retries as a whole.

    A message that could not be understood has `error` set and keeps its raw payload for
    the dead-letter table. An acknowledged-but-ignored message (an S3 test event, a GCS
    delete that is really an overwrite) has no events and no error.
    """

    id: str
    source: str
    raw: str
    events: list[ObjectEvent] = field(default_factory=list)
    error: str | None = None


def s3_token(sequencer: str | None) -> str | None:
    """AWS: pad the shorter sequencer with zeros on the right, then compare as strings."""
    if not sequencer:
        return None
    return sequencer.upper().ljust(32, "0")


def gcs_token(generation: int | str | None, metageneration: int | str | None) -> str | None:
    if generation in (None, ""):
        return None
    return f"{int(generation):020d}.{int(metageneration or 1):020d}"


def azure_token(sequencer: str | None) -> str | None:
    if not sequencer:
        return None
    return sequencer.upper().rjust(32, "0")
