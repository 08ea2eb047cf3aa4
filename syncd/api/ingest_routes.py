"""POST /v1/events/{aws|gcp|azure}: bucket events pushed by the platforms, or forwarded by
syncd's functions, answered 2xx only once their changes are committed. OPTIONS: the
CloudEvents webhook handshake (Event Grid's CloudEvents schema).

What each cloud's endpoint reads:

- aws: SNS HTTP(S) deliveries (`Notification`, with an S3 notification or an EventBridge event
  in `Message`; raw message delivery too), signatures checked against the certificate SNS
  names; a `SubscriptionConfirmation` is confirmed by GETting its `SubscribeURL`; and S3
  notifications or EventBridge events posted as they are.
- gcp: Pub/Sub push bodies (`{"message", "subscription"}`; with `api.pubsub_audience` set, the
  push's OIDC token is verified) and CloudEvents, binary (`ce-` headers) or structured, one or
  a batch.
- azure: Event Grid deliveries in the Event Grid schema (the subscription-validation event is
  answered with its code) or the CloudEvents schema.
- any: `application/vnd.syncd.messages+json`, what a forwarding function sends
  (`syncd.events.forward`).

SSRF: the daemon fetches only HTTPS URLs on an SNS endpoint host (`sns.REGION.amazonaws.com`,
or `.amazonaws.com.cn`), never following a redirect, plus the hosts listed in
`$SYNCD_SNS_HOSTS` (comma-separated `host:port`, plain HTTP allowed: for tests and private
endpoints; the operator opts in). Google's certificates for Pub/Sub tokens come from a fixed
URL (`$SYNCD_PUBSUB_CERTS_URL` replaces it, for tests).

A body that is no delivery at all (not JSON, or none of the shapes above) is a 400 naming
what is wrong. A delivery whose messages cannot all be understood has those dead-lettered and
the rest applied, and is answered 200, as the functions do. A catalog that cannot commit is a
503: the platform delivers again (a forwarded batch gets the ids that failed instead, when
some were committed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Annotated, Any, Literal

import structlog
from aiohttp import ClientError, ClientSession, ClientTimeout, web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from yarl import URL

from syncd.api.catalog_routes import context
from syncd.api.context import ApiContext
from syncd.api.problems import Problem
from syncd.catalog import Catalog
from syncd.config import Config
from syncd.errors import SyncdError
from syncd.events.apply import BatchResult, EventApplier, Route, Unsettled, apply_all
from syncd.events.aws import parse_aws_document
from syncd.events.azure import parse_event_grid_batch, validation_code
from syncd.events.forward import FORMAT_VERSION, MEDIA_TYPE
from syncd.events.gcp import (
    parse_binary_cloud_event,
    parse_push_envelope,
    parse_structured_cloud_event,
)
from syncd.events.payloads import CLOCK_SKEW, Key, Size, Text, describe, storable
from syncd.events.types import EventKind, Message, ObjectEvent
from syncd.logs import scrub
from syncd.storage import open_store
from syncd.storage.types import ObjectInfo, Store

log = structlog.get_logger("syncd.api")

routes = web.RouteTableDef()

CLOUDS = ("aws", "gcp", "azure")
PROVIDERS = {"aws": "s3", "gcp": "gcs", "azure": "azure"}
JSON_TYPES = frozenset(
    {
        "application/json",
        "text/plain",  # SNS posts JSON as text/plain
        "application/cloudevents+json",
        "application/cloudevents-batch+json",
        MEDIA_TYPE,
    }
)
#: Outbound fetches (SNS certificates and confirmations, Google's certificates).
FETCH_TIMEOUT = 10.0
MAX_FETCH = 256 * 1024
MAX_ID = 200


def _cloud(request: web.Request) -> str:
    cloud = request.match_info["cloud"]
    if cloud not in CLOUDS:
        raise Problem(404, f"no event ingest for {cloud[:40]!r}: use aws, gcp or azure")
    return cloud


@routes.options("/v1/events/{cloud}")
async def handshake(request: web.Request) -> web.Response:
    """CloudEvents webhook abuse protection: the sender asks whether it may deliver."""
    _cloud(request)
    origin = request.headers.get("WebHook-Request-Origin", "").strip()
    if not origin:
        raise Problem(
            400,
            "OPTIONS here is the CloudEvents webhook handshake: send WebHook-Request-Origin",
        )
    if len(origin) > 255 or not origin.isprintable():
        raise Problem(400, "header 'WebHook-Request-Origin': not a host name")
    return web.Response(
        status=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"}
    )


@routes.post("/v1/events/{cloud}")
async def ingest(request: web.Request) -> web.Response:
    cloud = _cloud(request)
    ctx = context(request)
    body = await request.read()
    declared = request.headers.get("Content-Type")
    media = request.content_type if declared else "application/json"
    binary = cloud == "gcp" and "ce-specversion" in request.headers
    if media not in JSON_TYPES and not binary:
        raise Problem(
            415, f"Content-Type {media[:80]!r}: expected JSON ({', '.join(sorted(JSON_TYPES))})"
        )
    if media == MEDIA_TYPE:
        return await _commit(ctx, forwarded_messages(cloud, _json(body)), partial=True)
    if cloud == "aws":
        outcome = await _aws(request, body)
        if isinstance(outcome, web.Response):
            return outcome
        messages = outcome
    elif cloud == "gcp":
        messages = await _gcp(request, ctx, media, body, binary)
    else:
        document = _json(body)
        code = validation_code(document)
        if code is not None:
            log.info("event grid subscription validated")
            return web.json_response({"validationResponse": code})
        messages = azure_messages(document)
    return await _commit(ctx, messages, partial=False)


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise Problem(400, "the body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise Problem(400, "the body nests too deeply") from None


def _ident(value: Any, fallback: bytes) -> str:
    """A message id: the delivery's own, else one derived from the body (a redelivery of the
    same body then counts an attempt on its one dead letter)."""
    if isinstance(value, str) and value:
        return value[:MAX_ID]
    return "sha256:" + hashlib.sha256(fallback).hexdigest()[:32]


# -- committing ---------------------------------------------------------------------------


_local = threading.local()


def _applier(catalog: Catalog, config: Config) -> EventApplier:
    """One applier per API thread (it caches dataset and driver ids), on that thread's
    catalog."""
    held: EventApplier | None = getattr(_local, "applier", None)
    if held is None or held.catalog is not catalog or getattr(_local, "config", None) is not config:
        held = _local.applier = EventApplier(catalog, config)
        _local.config = config
    return held


def _apply(catalog: Catalog, config: Config, messages: Sequence[Message]) -> BatchResult:
    return apply_all(_applier(catalog, config), messages)


def _summary(result: BatchResult) -> dict[str, Any]:
    return {
        "applied": result.applied,
        "ignored": result.ignored,
        "unrouted": result.unrouted,
        "dead_lettered": result.dead_lettered,
        "kept": result.kept,
        "failed": result.failed,
    }


async def _commit(ctx: ApiContext, messages: Sequence[Message], *, partial: bool) -> web.Response:
    """Apply and answer. `partial`: the sender reads `failed` (a forwarding function), so a
    batch of which some committed is a 200; otherwise any failure is a 503 for the whole
    delivery, which the platform sends again (applying twice changes nothing)."""
    try:
        result = await ctx.call(_apply, ctx.config, messages)
    except SyncdError as exc:
        # The catalog cannot be opened (or written at all): the platform delivers again.
        raise Problem(503, f"the events are not committed: {scrub(str(exc))}") from None
    if result.unsettled:
        _settle_later(ctx, result.unsettled)
    if result.failed and (not partial or len(result.failed) >= len(messages)):
        raise Problem(
            503,
            "the catalog could not commit these events; deliver them again",
            failed=result.failed,
        )
    return web.json_response(_summary(result))


_settling: set[asyncio.Future[Any]] = set()


def _settle_later(ctx: ApiContext, pending: list[Unsettled]) -> None:
    """Items marked to verify are settled with a stat after the answer (a slow store must not
    hold the platform's request); if this fails or the daemon stops, the next sync does it."""
    future = asyncio.ensure_future(ctx.call(_settle, ctx.config, pending))
    _settling.add(future)
    future.add_done_callback(_settled)


def _settled(future: asyncio.Future[Any]) -> None:
    _settling.discard(future)
    if not future.cancelled() and future.exception() is not None:
        log.warning("items left to verify", error=str(future.exception()))


def _settle(catalog: Catalog, config: Config, pending: list[Unsettled]) -> int:
    stores: dict[str, Store] = {}

    def stat(route: Route, key: str) -> ObjectInfo:
        store = stores.get(route.driver.name)
        if store is None:
            integration = config.integration(route.driver.integration)
            store = stores[route.driver.name] = open_store(
                route.driver, integration, config.base_dir
            )
        return store.stat(key)

    return _applier(catalog, config).settle(pending, stat)


# -- forwarded messages (syncd.events.forward) ------------------------------------------


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("is not a finite number")
    return value


def _not_future(value: float) -> float:
    if value > time.time() + CLOCK_SKEW:
        raise ValueError(f"{value} is more than {CLOCK_SKEW:.0f}s in the future")
    return value


Moment = Annotated[float, Field(ge=0), AfterValidator(_finite), AfterValidator(_not_future)]


class ForwardedEvent(BaseModel):
    """An `ObjectEvent` as `syncd.events.forward.event_json` writes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EventKind
    provider: Literal["s3", "gcs", "azure"]
    bucket: Key
    key: Key
    event_time: Moment
    token: Annotated[str, Field(min_length=1, max_length=128), AfterValidator(storable)] | None
    size: Size | None
    etag: Text | None
    version: Text | None
    content_type: Text | None
    event_id: Text | None
    cause: Text | None
    mtime: Moment | None

    def event(self) -> ObjectEvent:
        return ObjectEvent(**dict(self))


class ForwardedMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(max_length=1024)
    source: str = Field(min_length=1, max_length=1024)
    raw: str
    error: str | None
    events: list[dict[str, Any]]


class ForwardedBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    messages: list[ForwardedMessage]


def forwarded_messages(cloud: str, document: Any) -> list[Message]:
    """The messages of a forwarded batch. A batch not in the shape is a 400; an event that
    fails validation makes its message a dead letter (with its raw payload, so that a retry
    parses it afresh) while the rest is applied."""
    if isinstance(document, Mapping) and document.get("version") != FORMAT_VERSION:
        raise Problem(
            400,
            f"version {str(document.get('version'))[:20]}: this daemon reads forwarded "
            f"messages of version {FORMAT_VERSION}",
        )
    try:
        batch = ForwardedBatch.model_validate(document)
    except ValidationError as exc:
        raise Problem(400, f"forwarded messages: {describe(exc)}") from None
    out = []
    provider = PROVIDERS[cloud]
    for framed in batch.messages:
        message = Message(framed.id, framed.source, framed.raw, error=framed.error)
        errors = [framed.error] if framed.error else []
        for number, fields in enumerate(framed.events):
            try:
                event = ForwardedEvent.model_validate(fields).event()
            except ValidationError as exc:
                errors.append(f"forwarded event {number}: {describe(exc)}")
                continue
            if event.provider != provider:
                errors.append(
                    f"forwarded event {number}: provider {event.provider!r} is not {cloud}'s"
                )
                continue
            message.events.append(event)
        if errors:
            message.error = "; ".join(errors)[:2000]
        out.append(message)
    return out


# -- AWS ------------------------------------------------------------------------------------

SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
#: What SNS signs, per message type (AWS: "Verifying the signatures of Amazon SNS messages").
_SIGNED: dict[str, tuple[str, ...]] = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}
_SIGNED["UnsubscribeConfirmation"] = _SIGNED["SubscriptionConfirmation"]


def sns_hosts() -> frozenset[str]:
    """`host:port` entries of `$SYNCD_SNS_HOSTS`, lower case."""
    raw = os.environ.get("SYNCD_SNS_HOSTS", "")
    return frozenset(part.strip().lower() for part in raw.split(",") if part.strip())


def sns_url(text: Any, what: str) -> URL:
    """`text` as a URL the daemon may fetch for SNS, or a 400 naming why not."""
    if not isinstance(text, str) or not text:
        raise Problem(400, f"SNS message without {what}")
    if len(text) > 4096 or any(c <= " " or c > "~" for c in text):
        raise Problem(400, f"SNS {what} is not a URL (spaces or characters outside ASCII)")
    try:
        # Fetched exactly as given (SNS's URLs are already encoded).
        url = URL(text, encoded=True)
        port = url.port
    except ValueError:
        raise Problem(400, f"SNS {what} is not a URL") from None
    host = (url.host or "").lower()
    if url.user is not None or url.password is not None or not host:
        raise Problem(400, f"SNS {what} must name a host and no user")
    if url.scheme == "https" and _SNS_HOST.match(host) and port == 443:
        return url
    if url.scheme in ("http", "https") and f"{host}:{port}" in sns_hosts():
        return url
    raise Problem(
        400,
        f"SNS {what} is on {host[:100]!r}: the daemon fetches only from SNS endpoints "
        "(https://sns.REGION.amazonaws.com) and the hosts in $SYNCD_SNS_HOSTS",
    )


async def _fetch(url: URL, what: str) -> tuple[int, bytes]:
    """GET `url` (already allowed by `sns_url` or fixed), no redirects, a bounded body."""
    try:
        async with (
            ClientSession(timeout=ClientTimeout(total=FETCH_TIMEOUT)) as session,
            session.get(url, allow_redirects=False) as response,
        ):
            body = await response.content.read(MAX_FETCH + 1)
            if len(body) > MAX_FETCH:
                raise Problem(503, f"{what}: the answer is larger than {MAX_FETCH} bytes")
            return response.status, body
    except (ClientError, TimeoutError) as exc:
        raise Problem(503, f"{what}: cannot fetch it ({type(exc).__name__})") from None


class SnsCertificates:
    """Signing certificates by URL, fetched once each."""

    def __init__(self) -> None:
        #: URL -> (public key, end of the certificate's validity).
        self._keys: dict[str, tuple[Any, float]] = {}

    async def public_key(self, url: URL) -> Any:
        held = self._keys.get(str(url))
        if held is not None and time.time() <= held[1]:
            return held[0]
        from cryptography import x509

        status, body = await _fetch(url, "the SNS signing certificate")
        if status != 200:
            raise Problem(503, f"the SNS signing certificate: {url.host} answered {status}")
        try:
            certificate = x509.load_pem_x509_certificate(body)
        except ValueError:
            raise Problem(403, "the SNS signing certificate is not a PEM certificate") from None
        now = time.time()
        if not (
            certificate.not_valid_before_utc.timestamp()
            <= now
            <= certificate.not_valid_after_utc.timestamp()
        ):
            raise Problem(403, "the SNS signing certificate is not valid now")
        if len(self._keys) >= 32:
            self._keys.clear()
        key = certificate.public_key()
        self._keys[str(url)] = (key, certificate.not_valid_after_utc.timestamp())
        return key


_certificates = SnsCertificates()


def string_to_sign(document: Mapping[str, Any]) -> bytes:
    kind = str(document.get("Type"))
    parts = []
    for name in _SIGNED[kind]:
        value = document.get(name)
        if value is None and name == "Subject":
            continue
        if not isinstance(value, str):
            raise Problem(403, f"SNS {kind} without {name}: its signature cannot be checked")
        parts.append(f"{name}\n{value}\n")
    return "".join(parts).encode("utf-8")


async def verify_sns(document: Mapping[str, Any]) -> None:
    """The message's signature against the certificate SNS names, or a 403."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
    except ImportError:
        raise Problem(
            503, "checking SNS signatures needs the `cryptography` package on the daemon"
        ) from None
    version = document.get("SignatureVersion")
    algorithm: hashes.HashAlgorithm
    if version == "1":
        algorithm = hashes.SHA1()
    elif version == "2":
        algorithm = hashes.SHA256()
    else:
        raise Problem(403, f"SNS SignatureVersion {str(version)[:10]!r} is not 1 or 2")
    try:
        signature = base64.b64decode(str(document.get("Signature", "")), validate=True)
    except (binascii.Error, ValueError):
        raise Problem(403, "the SNS Signature is not base64") from None
    signed = string_to_sign(document)
    cert_url = sns_url(document.get("SigningCertURL"), "SigningCertURL")
    if not cert_url.path.endswith(".pem") or cert_url.query_string:
        raise Problem(400, "SNS SigningCertURL does not name a certificate (a .pem file)")
    key = await _certificates.public_key(cert_url)
    if not isinstance(key, rsa.RSAPublicKey):
        raise Problem(403, "the SNS signing certificate does not hold an RSA key")
    try:
        key.verify(signature, signed, padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise Problem(403, "the SNS message's signature does not verify") from None


async def confirm_subscription(document: Mapping[str, Any]) -> web.Response:
    topic = document.get("TopicArn")
    url = sns_url(document.get("SubscribeURL"), "SubscribeURL")
    query = url.query
    if query.get("Action") != "ConfirmSubscription" or query.get("TopicArn") != topic:
        raise Problem(400, "SNS SubscribeURL is not a ConfirmSubscription of this message's topic")
    status, _ = await _fetch(url, "confirming the SNS subscription")
    if status != 200:
        raise Problem(503, f"confirming the SNS subscription: {url.host} answered {status}")
    log.info("sns subscription confirmed", topic=topic)
    return web.json_response({"confirmed": topic})


def _is_sns(document: Any) -> bool:
    return (
        isinstance(document, Mapping)
        and document.get("Type") in SNS_TYPES
        and isinstance(document.get("TopicArn"), str)
    )


def _is_aws_document(document: Any) -> bool:
    return isinstance(document, Mapping) and (
        document.get("Event") == "s3:TestEvent"
        or ("detail-type" in document and "source" in document)
        or isinstance(document.get("Records"), list)
        or _is_sns(document)
    )


async def _aws(request: web.Request, body: bytes) -> list[Message] | web.Response:
    document = _json(body)
    text = body.decode("utf-8")
    if _is_sns(document):
        await verify_sns(document)
        kind = document["Type"]
        topic = str(document["TopicArn"])[:300]
        if kind == "SubscriptionConfirmation":
            return await confirm_subscription(document)
        if kind == "UnsubscribeConfirmation":
            log.info("sns subscription ended", topic=topic)
            return web.json_response({"unsubscribed": topic})
        return [
            parse_aws_document(
                _ident(document.get("MessageId"), body), f"aws:sns:{topic}", text, document
            )
        ]
    if not _is_aws_document(document):
        raise Problem(
            400,
            "not an AWS delivery: expected an SNS message, an S3 notification (Records) or an "
            "EventBridge event",
        )
    sns_type = request.headers.get("x-amz-sns-message-type")
    if sns_type == "Notification":
        # Raw message delivery: the body is the message itself, unsigned.
        topic = request.headers.get("x-amz-sns-topic-arn", "")[:300]
        ident = _ident(request.headers.get("x-amz-sns-message-id"), body)
        return [parse_aws_document(ident, f"aws:sns:{topic}", text, document)]
    ident = _ident(document.get("id") if "detail-type" in document else None, body)
    return [parse_aws_document(ident, "aws:http", text, document)]


# -- GCP ------------------------------------------------------------------------------------

#: (token, audience) -> the token's claims; raises `TokenRefused`.
PubsubVerifier = Callable[[str, str], Awaitable[Mapping[str, Any]]]
PUBSUB_VERIFIER: web.AppKey[PubsubVerifier] = web.AppKey("syncd_pubsub_verifier")
GOOGLE_CERTS = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")


class TokenRefused(Exception):
    """The OIDC token does not verify (the message says why)."""


class GoogleIdTokens:
    """Google-signed OIDC tokens, checked as `google.oauth2.id_token.verify_oauth2_token`
    checks them (a Google certificate's signature, expiry, audience, issuer), with the
    certificates cached for `ttl` seconds (and fetched again for a key id not seen yet).
    `certs_url`: where the certificates are (`$SYNCD_PUBSUB_CERTS_URL`, else Google's)."""

    def __init__(self, certs_url: str | None = None, ttl: float = 3600.0) -> None:
        self.certs_url = certs_url
        self.ttl = ttl
        self._certs: dict[str, str] | None = None
        self._fetched = 0.0

    async def __call__(self, token: str, audience: str) -> Mapping[str, Any]:
        from google.auth import jwt

        certs = await self.certificates()
        try:
            claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
                token, certs=certs, audience=audience, clock_skew_in_seconds=30
            )
        except (ValueError, TypeError) as exc:
            if "Certificate for key id" in str(exc) and time.time() - self._fetched > 60:
                self._certs = None  # rotated: read them again, once a minute at most
                return await self(token, audience)
            raise TokenRefused(str(exc)[:300]) from None
        if claims.get("iss") not in GOOGLE_ISSUERS:
            raise TokenRefused(f"issuer {str(claims.get('iss'))[:80]!r} is not Google's")
        return claims

    async def certificates(self) -> dict[str, str]:
        if self._certs is not None and time.time() - self._fetched < self.ttl:
            return self._certs
        url = URL(self.certs_url or os.environ.get("SYNCD_PUBSUB_CERTS_URL") or GOOGLE_CERTS)
        status, body = await _fetch(url, "Google's token certificates")
        try:
            certs = json.loads(body) if status == 200 else None
        except ValueError:
            certs = None
        if not isinstance(certs, dict) or not all(isinstance(v, str) for v in certs.values()):
            raise Problem(503, f"Google's token certificates: {url.host} answered {status}")
        self._certs, self._fetched = certs, time.time()
        return certs


_google_tokens = GoogleIdTokens()


async def verify_push(request: web.Request, audience: str) -> None:
    """The OIDC token of a Pub/Sub push (an authenticated push subscription), or 401/403."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(
            401,
            "a Pub/Sub push here needs its OIDC token (Authorization: Bearer ...): give the "
            "push subscription a service account and this audience",
        )
    verifier = request.app.get(PUBSUB_VERIFIER) or _google_tokens
    try:
        claims = await verifier(token.strip(), audience)
    except TokenRefused as exc:
        raise Problem(403, f"the Pub/Sub push token is refused: {exc}") from None
    log.debug("pubsub push token verified", email=claims.get("email"))


async def _gcp(
    request: web.Request, ctx: ApiContext, media: str, body: bytes, binary: bool
) -> list[Message]:
    if binary:
        return [parse_binary_cloud_event(dict(request.headers), body)]
    document = _json(body)
    if media == "application/cloudevents-batch+json":
        if not isinstance(document, list):
            raise Problem(400, "a CloudEvents batch is a JSON array")
        return [parse_structured_cloud_event(d) for d in document]
    if media == "application/cloudevents+json" or (
        isinstance(document, Mapping) and "specversion" in document
    ):
        return [parse_structured_cloud_event(document)]
    if isinstance(document, Mapping) and "message" in document:
        audience = ctx.config.api.pubsub_audience if ctx.config.api else None
        if audience:
            await verify_push(request, audience)
        return [parse_push_envelope(document)]
    raise Problem(
        400,
        'not a GCP delivery: expected a Pub/Sub push body ({"message": ...}) or a '
        "CloudEvent (ce- headers, or a JSON body with specversion)",
    )


# -- Azure ----------------------------------------------------------------------------------


def azure_messages(document: Any) -> list[Message]:
    events = [document] if isinstance(document, Mapping) else document
    if not isinstance(events, list) or (
        events
        and not any(isinstance(e, Mapping) and ("eventType" in e or "type" in e) for e in events)
    ):
        raise Problem(
            400,
            "not an Event Grid delivery: expected a JSON array of events (Event Grid or "
            "CloudEvents schema)",
        )
    return parse_event_grid_batch(events)
