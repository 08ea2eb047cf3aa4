"""The normalized bucket event, and a delivered message that carries some of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class EventKind(StrEnum):
    #: A new live state: an upload, copy or overwrite (S3 ObjectCreated, GCS finalize or
    #: metadata update, Azure BlobCreated).
    CREATED = "created"
    #: The object is absent from listings afterwards: an unversioned delete, an S3 delete
    #: marker, a GCS delete or archive of the live generation, Azure BlobDeleted.
    DELETED = "deleted"
    #: An S3 version (`version`) was removed for good. If it was the current version an
    #: older one, whose state the event does not carry, shows again; otherwise nothing
    #: changes. The applier tells the two apart from what it saw of the key, or asks for a
    #: stat.
    VERSION_DELETED = "version_deleted"


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One object change, whatever delivered it.

    `token` orders changes of one object: S3 and Azure sequencers (upper-case hex,
    right-padded with zeros to 32 characters, so plain string order is AWS's documented
    comparison), GCS `GENERATION.METAGENERATION` (each zero-padded to 20 digits; a delete or
    archive of a generation carries the highest metageneration, since nothing happens to a
    generation after it). None when the payload carries no token (then event time orders).
    `cause` is the provider's own name for what happened (`ObjectRemoved:DeleteMarkerCreated`,
    `OBJECT_ARCHIVE`, ...), kept for logs.
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
    cause: str | None = None
    #: The object's modification time when it differs from the time of the change (a
    #: folder watcher sees a file copied with its old mtime now); None: `event_time`.
    mtime: float | None = None


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


#: The metageneration a delete or archive of a GCS generation is ordered at: after every
#: metadata update of that generation.
GCS_FINAL_METAGENERATION = 10**20 - 1


def gcs_token(generation: int | str | None, metageneration: int | str | None) -> str | None:
    if generation in (None, ""):
        return None
    return f"{int(generation):020d}.{int(metageneration or 1):020d}"


def azure_token(sequencer: str | None) -> str | None:
    if not sequencer:
        return None
    return sequencer.upper().rjust(32, "0")
