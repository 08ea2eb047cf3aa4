"""POST /v1/events/{cloud} on a real `syncd run`: each platform's documented payloads and
handshakes (SNS signatures and subscription confirmation against a local stand-in for AWS,
Pub/Sub push OIDC tokens signed by a local key, Event Grid validation and the CloudEvents
OPTIONS handshake), forwarded messages, dead letters, and a catalog that cannot commit."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml
from aiohttp import ClientSession, test_utils
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt
from google.auth import jwt as google_jwt

from syncd.api.app import build_app
from syncd.api.context import ApiContext
from syncd.api.ingest_routes import PUBSUB_VERIFIER, TokenRefused
from syncd.config import parse_config
from syncd.events.aws import parse_lambda_event
from syncd.events.forward import encode_body, message_json
from tests.api.conftest import Answer, Api
from tests.peers import AWS_TEST_ENV, free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "events"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
#: The cloud drivers' stores point at a closed port: their scheduled reconciles fail at once
#: (and so delete nothing) instead of reaching for the internet.
CLOSED = "http://127.0.0.1:1"
CLOUD_ENV = {
    **AWS_TEST_ENV,
    "STORAGE_EMULATOR_HOST": CLOSED,
    "SYNCD_TEST_AZ": (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};BlobEndpoint={CLOSED}/devstoreaccount1"
    ),
}
TOPIC = "arn:aws:sns:us-west-2:123456789012:MyTopic"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def cloud_routes(config: dict[str, Any]) -> None:
    """Dataset `events`: one driver per bucket of the fixtures, on each cloud."""
    config["integrations"] += [
        {"name": "aws", "provider": "s3", "endpoint_url": CLOSED, "region": "us-east-1"},
        {"name": "gcp", "provider": "gcs", "project": "test"},
        {"name": "az", "provider": "azure", "connection_string": "env:SYNCD_TEST_AZ"},
    ]
    config["drivers"] += [
        {"name": "s3in", "integration": "aws", "bucket": "amzn-s3-demo-bucket"},
        {"name": "s3eb", "integration": "aws", "bucket": "amzn-s3-demo-bucket1"},
        {"name": "gcsin", "integration": "gcp", "bucket": "my-bucket"},
        {"name": "azin", "integration": "az", "bucket": "test-container"},
    ]
    config["datasets"].append({"name": "events", "drivers": ["s3in", "s3eb", "gcsin", "azin"]})


def start_cloud_api(
    start_api: Callable[..., Api], env: dict[str, str] | None = None, **kw: Any
) -> Api:
    return start_api(env={**CLOUD_ENV, **(env or {})}, edit=cloud_routes, **kw)


def items(api: Api, **options: Any) -> dict[str, dict[str, Any]]:
    answer = api.get("/v1/datasets/events/items?include_deleted=true&limit=1000", **options)
    assert answer.status == 200, answer.body
    return {f"{i['driver']}/{i['key']}": i for i in answer.json()["items"]}


def live(api: Api, **options: Any) -> set[str]:
    return {name for name, item in items(api, **options).items() if not item["deleted"]}


def dead_letters(api: Api, **options: Any) -> list[dict[str, Any]]:
    answer = api.get("/v1/dead-letters", **options)
    assert answer.status == 200
    letters: list[dict[str, Any]] = answer.json()["dead_letters"]
    return letters


def problem(answer: Answer, status: int, fragment: str) -> None:
    assert answer.status == status, (answer.status, answer.body[:500])
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    detail = answer.json()["detail"]
    assert fragment in detail, detail


# -- a local stand-in for AWS's and Google's endpoints -------------------------------------


@dataclass
class Keys:
    """An RSA key and its self-signed certificate, as SNS and Google publish theirs."""

    key: rsa.RSAPrivateKey
    pem: bytes
    certificate: str

    @classmethod
    def make(cls, name: str) -> Keys:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256())
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        text = certificate.public_bytes(serialization.Encoding.PEM).decode()
        return cls(key, pem, text)


@dataclass
class Stand:
    """An HTTP server on a free loopback port: `/cert.pem` (the SNS signing certificate),
    `/certs` (Google's token certificates, by key id), `/confirm` (SNS's ConfirmSubscription).
    `seen` holds the path of every request."""

    port: int
    sns: Keys
    google: Keys
    seen: list[str] = field(default_factory=list)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path: str, host: str | None = None) -> str:
        return f"http://{host or self.host}{path}"


@pytest.fixture
def stand() -> Iterator[Stand]:
    port = free_port()
    peer = Stand(port, Keys.make("sns.us-west-2.amazonaws.com"), Keys.make("google"))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            peer.seen.append(self.path)
            if self.path == "/cert.pem":
                self._answer(200, peer.sns.certificate.encode())
            elif self.path == "/certs":
                self._answer(200, json.dumps({"k1": peer.google.certificate}).encode())
            elif self.path.startswith("/confirm?"):
                self._answer(200, b"<ConfirmSubscriptionResponse/>")
            else:
                self._answer(404, b"no")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield peer
    server.shutdown()
    server.server_close()


#: What SNS signs, per message type, as AWS documents it (in byte order of the names).
SIGNED = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": [
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ],
}
SIGNED["UnsubscribeConfirmation"] = SIGNED["SubscriptionConfirmation"]


def signed(
    document: dict[str, Any], keys: Keys, cert_url: str, version: str = "1"
) -> dict[str, Any]:
    out = {**document, "SignatureVersion": version, "SigningCertURL": cert_url}
    text = "".join(f"{k}\n{out[k]}\n" for k in SIGNED[out["Type"]] if k in out)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = keys.key.sign(text.encode(), padding.PKCS1v15(), algorithm)
    out["Signature"] = base64.b64encode(signature).decode()
    return out


def sns_notification(message: Any, ident: str) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": ident,
        "TopicArn": TOPIC,
        "Subject": "Amazon S3 Notification",
        "Message": json.dumps(message),
        "Timestamp": "2026-11-23T08:00:01.000Z",
        "UnsubscribeURL": "https://sns.us-west-2.amazonaws.com/?Action=Unsubscribe",
    }


def sns_confirmation(subscribe_url: str, kind: str = "SubscriptionConfirmation") -> dict[str, Any]:
    return {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a7",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the "
        "subscription, visit the SubscribeURL included in this message.",
        "SubscribeURL": subscribe_url,
        "Timestamp": "2026-11-23T08:00:00.751Z",
    }


def sns_post(api: Api, document: dict[str, Any], **options: Any) -> Answer:
    """As SNS posts: JSON as text/plain, the type in a header."""
    headers = {
        "Content-Type": "text/plain; charset=UTF-8",
        "x-amz-sns-message-type": document["Type"],
        "x-amz-sns-message-id": document["MessageId"],
        "x-amz-sns-topic-arn": document["TopicArn"],
    }
    return api.post("/v1/events/aws", raw=json.dumps(document).encode(), headers=headers, **options)


def confirm_url(stand: Stand, host: str | None = None) -> str:
    query = f"Action=ConfirmSubscription&TopicArn={quote(TOPIC, safe='')}&Token=2336412f37"
    return stand.url(f"/confirm?{query}", host)


# -- AWS ------------------------------------------------------------------------------------


def test_sns_subscription_is_confirmed_only_at_an_allowed_host(
    start_api: Callable[..., Api], stand: Stand
) -> None:
    api = start_cloud_api(start_api, env={"SYNCD_SNS_HOSTS": stand.host})
    cert = stand.url("/cert.pem")

    confirmed = sns_post(api, signed(sns_confirmation(confirm_url(stand)), stand.sns, cert))
    assert confirmed.status == 200, confirmed.body
    assert confirmed.json() == {"confirmed": TOPIC}
    assert [p for p in stand.seen if p.startswith("/confirm?")] == [
        confirm_url(stand).split(stand.host, 1)[1]
    ]

    # The same server under a name that is not allowed, a metadata endpoint, a URL that is
    # not a ConfirmSubscription: refused, and never fetched.
    stand.seen.clear()
    for url, fragment in [
        (confirm_url(stand, host=f"localhost:{stand.port}"), "'localhost'"),
        ("http://169.254.169.254/latest/meta-data/?Action=ConfirmSubscription", "169.254.169.254"),
        (stand.url(f"/confirm?Action=Unsubscribe&TopicArn={TOPIC}"), "ConfirmSubscription"),
    ]:
        refused = sns_post(api, signed(sns_confirmation(url), stand.sns, cert))
        problem(refused, 400, fragment)
    assert not [p for p in stand.seen if p.startswith("/confirm")]

    # A forged confirmation (signed by another key) is refused before anything is fetched.
    forged = signed(sns_confirmation(confirm_url(stand)), Keys.make("forger"), cert)
    problem(sns_post(api, forged), 403, "signature")
    assert not [p for p in stand.seen if p.startswith("/confirm")]

    gone = sns_post(
        api,
        signed(sns_confirmation(confirm_url(stand), "UnsubscribeConfirmation"), stand.sns, cert),
    )
    assert gone.status == 200 and gone.json() == {"unsubscribed": TOPIC}
    assert not [p for p in stand.seen if p.startswith("/confirm")]


def test_sns_notifications_s3_and_eventbridge_documents(
    start_api: Callable[..., Api], stand: Stand
) -> None:
    api = start_cloud_api(start_api, env={"SYNCD_SNS_HOSTS": stand.host})
    cert = stand.url("/cert.pem")
    direct = fixture("aws-s3-direct.json")

    # SNS (both signature versions) wrapping an S3 notification.
    created = {"Records": direct["Records"][:1]}
    answer = sns_post(api, signed(sns_notification(created, "n-1"), stand.sns, cert, "2"))
    assert answer.status == 200, answer.body
    assert answer.json()["applied"] == 1 and answer.json()["failed"] == []
    assert live(api) == {"s3in/photos/Happy Face +1.jpg"}
    again = sns_post(api, signed(sns_notification(created, "n-1"), stand.sns, cert, "1"))
    assert again.status == 200 and again.json()["applied"] == 0  # a redelivery changes nothing
    assert stand.seen.count("/cert.pem") == 1  # the certificate is fetched once

    # Tampered with after signing; a certificate from a host that is not allowed.
    tampered = signed(sns_notification(direct, "n-2"), stand.sns, cert)
    tampered["Message"] = json.dumps({"Records": direct["Records"][2:]})
    problem(sns_post(api, tampered), 403, "does not verify")
    elsewhere = signed(sns_notification(direct, "n-3"), stand.sns, "https://example.com/cert.pem")
    problem(sns_post(api, elsewhere), 400, "SigningCertURL")
    assert live(api) == {"s3in/photos/Happy Face +1.jpg"}

    # Raw message delivery: the body is the message, the SNS headers say what it is.
    raw = fixture("aws-eventbridge-created.json")
    answer = api.post(
        "/v1/events/aws",
        raw,
        headers={
            "Content-Type": "text/plain; charset=UTF-8",
            "x-amz-sns-message-type": "Notification",
            "x-amz-sns-message-id": "raw-1",
            "x-amz-sns-topic-arn": TOPIC,
        },
    )
    assert answer.status == 200 and answer.json()["applied"] == 1

    # Documents posted as they are: all of an S3 notification, the S3 test event.
    answer = api.post("/v1/events/aws", direct)
    assert answer.status == 200, answer.body
    assert api.post("/v1/events/aws", fixture("aws-s3-test-event.json")).json()["applied"] == 0
    state = items(api)
    assert state["s3in/photos/Happy Face +1.jpg"]["deleted"] is False
    assert state["s3in/photos/café old.jpg"]["deleted"] is True
    assert state["s3in/photos/marker.jpg"]["deleted"] is True
    assert state["s3eb/scans/ct 01.dcm"]["deleted"] is False
    assert api.post("/v1/events/aws", fixture("aws-eventbridge-deleted.json")).status == 200
    assert items(api)["s3eb/scans/ct 01.dcm"]["deleted"] is True


def test_aws_bad_input_400_or_dead_lettered(start_api: Callable[..., Api]) -> None:
    api = start_cloud_api(start_api)
    problem(api.post("/v1/events/aws", raw=b"{not json"), 400, "not JSON")
    problem(api.post("/v1/events/aws", {"hello": "world"}), 400, "not an AWS delivery")
    problem(api.post("/v1/events/aws", raw=b"\xff\xfe"), 400, "UTF-8")
    problem(
        api.post("/v1/events/aws", raw=b"<xml/>", headers={"Content-Type": "application/xml"}),
        415,
        "application/xml",
    )
    problem(api.post("/v1/events/elsewhere", {}), 404, "elsewhere")
    assert dead_letters(api) == []

    # One good record, one whose time is not a time: the good one is applied, the message
    # dead-lettered with the field at fault, and the platform answered 200.
    good, bad = fixture("aws-s3-direct.json")["Records"][:2]
    bad = {**bad, "eventTime": "yesterday"}
    answer = api.post("/v1/events/aws", {"Records": [good, bad]})
    assert answer.status == 200, answer.body
    assert answer.json()["applied"] == 1 and answer.json()["dead_lettered"] == 1
    (letter,) = dead_letters(api)
    assert letter["source"] == "aws:http" and "eventTime" in letter["reason"]
    assert json.loads(letter["payload"]) == {"Records": [good, bad]}
    # A redelivery of the same body counts an attempt on the same letter.
    api.post("/v1/events/aws", {"Records": [good, bad]})
    (letter,) = dead_letters(api)
    assert letter["attempts"] == 2
    assert live(api) == {"s3in/photos/Happy Face +1.jpg"}


# -- GCP ------------------------------------------------------------------------------------


def test_gcp_push_envelopes_and_cloudevents(start_api: Callable[..., Api]) -> None:
    api = start_cloud_api(start_api)
    answer = api.post("/v1/events/gcp", fixture("gcp-pubsub-push-finalize.json"))
    assert answer.status == 200, answer.body
    assert answer.json()["applied"] == 1
    assert live(api) == {"gcsin/images/photo+plus.jpg"}
    # An OBJECT_DELETE that carries overwrittenByGeneration is an overwrite: nothing changes.
    overwrite = api.post("/v1/events/gcp", fixture("gcp-pubsub-push-overwrite.json"))
    assert overwrite.status == 200 and overwrite.json()["applied"] == 0

    # Structured mode, one event and a batch.
    finalized = fixture("gcp-cloudevent-finalized.json")
    answer = api.post(
        "/v1/events/gcp", finalized, headers={"Content-Type": "application/cloudevents+json"}
    )
    assert answer.status == 200 and answer.json()["applied"] == 1
    batch = api.post(
        "/v1/events/gcp",
        [fixture("gcp-cloudevent-deleted-overwrite.json"), fixture("gcp-pubsub-cloudevent.json")],
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert batch.status == 200 and batch.json()["failed"] == []

    # Binary mode: the attributes in ce- headers, the object resource as the body.
    resource = {
        **finalized["data"],
        "name": "images/binary.jpg",
        "generation": "1700000000000009",
    }
    headers = {
        "Content-Type": "application/json",
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.storage.object.v1.finalized",
        "ce-source": "//storage.googleapis.com/projects/_/buckets/my-bucket",
        "ce-id": "binary-1",
        "ce-time": "2026-11-23T08:00:05Z",
    }
    answer = api.post("/v1/events/gcp", resource, headers=headers)
    assert answer.status == 200 and answer.json()["applied"] == 1
    assert live(api) == {
        "gcsin/images/photo+plus.jpg",
        "gcsin/images/photo 1.jpg",
        "gcsin/images/binary.jpg",
    }

    # A push whose data is not base64: dead-lettered, the push acknowledged.
    broken = fixture("gcp-pubsub-push-finalize.json")
    broken["message"] = {**broken["message"], "data": "%%%", "messageId": "broken-1"}
    answer = api.post("/v1/events/gcp", broken)
    assert answer.status == 200 and answer.json()["dead_lettered"] == 1
    (letter,) = dead_letters(api)
    assert letter["source"].startswith("gcp:pubsub-push:") and "base64" in letter["reason"]

    problem(api.post("/v1/events/gcp", {"kind": "storage#object"}), 400, "not a GCP delivery")
    problem(
        api.post(
            "/v1/events/gcp", {}, headers={"Content-Type": "application/cloudevents-batch+json"}
        ),
        400,
        "array",
    )


def id_token(keys: Keys, audience: str, kid: str = "k1", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": "https://accounts.google.com",
        "aud": audience,
        "iat": now,
        "exp": now + 300,
        "sub": "1234567890",
        "email": "push@project.iam.gserviceaccount.com",
        "email_verified": True,
        **claims,
    }
    signer = crypt.RSASigner.from_string(keys.pem, key_id=kid)  # type: ignore[no-untyped-call]
    token: bytes = google_jwt.encode(signer, payload)  # type: ignore[no-untyped-call]
    return token.decode()


def test_pubsub_push_oidc_token_is_verified(start_api: Callable[..., Api], stand: Stand) -> None:
    audience = "https://syncd.example.com/v1/events/gcp"
    api = start_cloud_api(
        start_api,
        env={"SYNCD_PUBSUB_CERTS_URL": stand.url("/certs")},
        api={"pubsub_audience": audience},
    )
    push = fixture("gcp-pubsub-push-finalize.json")

    def post(token: str | None) -> Answer:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return api.post("/v1/events/gcp", push, headers=headers)

    problem(post(None), 401, "OIDC token")
    problem(post(id_token(stand.google, "https://elsewhere.example.com")), 403, "audience")
    problem(post(id_token(Keys.make("forger"), audience)), 403, "signature")
    problem(post(id_token(stand.google, audience, kid="k9")), 403, "k9")
    problem(post(id_token(stand.google, audience, iss="https://evil.example.com")), 403, "issuer")
    expired = id_token(
        stand.google, audience, iat=int(time.time()) - 4000, exp=int(time.time()) - 3000
    )
    problem(post(expired), 403, "expired")
    problem(post("not.a.jwt"), 403, "refused")
    assert live(api) == set()

    accepted = post(id_token(stand.google, audience))
    assert accepted.status == 200, accepted.body
    assert live(api) == {"gcsin/images/photo+plus.jpg"}
    assert stand.seen.count("/certs") == 1  # cached


def test_an_injected_pubsub_verifier_decides(tmp_path: Path) -> None:
    """In process: whoever builds the app may put its own token verifier in it."""
    config = parse_config(
        yaml.safe_dump(
            {
                "api": {"pubsub_audience": "aud-1"},
                "integrations": [{"name": "gcp", "provider": "gcs", "project": "test"}],
                "drivers": [{"name": "gcsin", "integration": "gcp", "bucket": "my-bucket"}],
                "datasets": [{"name": "events", "drivers": ["gcsin"]}],
            }
        ),
        "test.yaml",
        base_dir=tmp_path,
    )
    seen: list[tuple[str, str]] = []

    async def verifier(token: str, audience: str) -> dict[str, Any]:
        seen.append((token, audience))
        if token != "good":
            raise TokenRefused("not the token this test signed")
        return {"email": "push@example.com"}

    async def main() -> list[int]:
        ctx = ApiContext(config, f"sqlite:///{tmp_path / 'catalog.db'}")
        app = build_app(ctx)
        app[PUBSUB_VERIFIER] = verifier
        statuses = []
        try:
            async with test_utils.TestServer(app) as server, ClientSession() as session:
                for token in ("bad", "good"):
                    async with session.post(
                        server.make_url("/v1/events/gcp"),
                        json=fixture("gcp-pubsub-push-finalize.json"),
                        headers={"Authorization": f"Bearer {token}"},
                    ) as answer:
                        statuses.append(answer.status)
        finally:
            ctx.close()
        return statuses

    assert asyncio.run(main()) == [403, 200]
    assert seen == [("bad", "aud-1"), ("good", "aud-1")]


# -- Azure ----------------------------------------------------------------------------------


def test_event_grid_validation_options_handshake_and_both_schemas(
    start_api: Callable[..., Api],
) -> None:
    api = start_cloud_api(start_api)
    validation = fixture("azure-eventgrid-validation.json")
    answer = api.post("/v1/events/azure", validation)
    assert answer.status == 200
    assert answer.json() == {"validationResponse": validation[0]["data"]["validationCode"]}

    shake = api.request(
        "OPTIONS", "/v1/events/azure", headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
    )
    assert shake.status == 200
    assert shake.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    problem(api.request("OPTIONS", "/v1/events/azure"), 400, "WebHook-Request-Origin")

    answer = api.post("/v1/events/azure", fixture("azure-eventgrid-batch.json"))
    assert answer.status == 200, answer.body
    state = items(api)
    assert state["azin/new file+1.txt"]["deleted"] is False
    assert state["azin/new file+1.txt"]["size"] == 524288
    assert state["azin/ünï/old.png"]["deleted"] is True

    cloudevents = fixture("azure-cloudevents-batch.json")
    cloudevents[0]["subject"] = "/blobServices/default/containers/test-container/blobs/ce.txt"
    unknown = {**cloudevents[0], "id": "x-1", "type": "Contoso.Items.ItemReceived"}
    answer = api.post(
        "/v1/events/azure",
        [cloudevents[0], unknown],
        headers={"Content-Type": "application/cloudevents-batch+json"},
    )
    assert answer.status == 200, answer.body
    assert answer.json()["applied"] == 1 and answer.json()["dead_lettered"] == 1
    assert "azin/ce.txt" in live(api)
    (letter,) = dead_letters(api)
    assert letter["source"] == "azure:eventgrid" and "Contoso" in letter["reason"]

    problem(api.post("/v1/events/azure", [1, 2, 3]), 400, "Event Grid")
    problem(api.post("/v1/events/azure", "text"), 400, "Event Grid")


# -- forwarded messages, tokens -------------------------------------------------------------


FORWARDED = {"Content-Type": "application/vnd.syncd.messages+json"}


def forwarded(event: Any) -> bytes:
    return encode_body([json.dumps(message_json(m)) for m in parse_lambda_event(event)])


def test_forwarded_messages_with_tokens(start_api: Callable[..., Api]) -> None:
    api = start_cloud_api(
        start_api,
        env={"READ_TOKEN": "r-secret", "WRITE_TOKEN": "w-secret"},
        api={
            "tokens": [
                {"name": "reader", "token": "env:READ_TOKEN", "scopes": ["read"]},
                {"name": "writer", "token": "env:WRITE_TOKEN", "scopes": ["write"]},
            ]
        },
    )
    body = forwarded(fixture("aws-sqs-lambda.json"))
    assert api.post("/v1/events/aws", raw=body, headers=FORWARDED).status == 401
    refused = api.post("/v1/events/aws", raw=body, headers=FORWARDED, token="r-secret")
    problem(refused, 403, "write")

    answer = api.post("/v1/events/aws", raw=body, headers=FORWARDED, token="w-secret")
    assert answer.status == 200, answer.body
    summary = answer.json()
    assert summary["failed"] == [] and summary["dead_lettered"] == 1
    assert live(api, token="r-secret") == {"s3in/videos/clip 1.mp4"}
    assert items(api, token="r-secret")["s3eb/scans/ct 01.dcm"]["deleted"] is True
    (letter,) = dead_letters(api, token="r-secret")
    assert letter["source"] == "aws:sqs:arn:aws:sqs:us-east-2:123456789012:my-queue"
    assert letter["payload"] == "this is not json"
    assert letter["message_id"] == "5c1424d4-f796-459a-8184-9c92662be6dd"

    # A platform that cannot send a header passes the token in the query.
    created = {"Records": fixture("aws-s3-direct.json")["Records"][:1]}
    query = api.post("/v1/events/aws?token=w-secret", created)
    assert query.status == 200 and query.json()["applied"] == 1

    # The envelope is checked: a version this daemon does not read, a missing field.
    document = json.loads(body)
    changes: list[tuple[dict[str, Any], str]] = [
        ({"version": 2}, "version 2"),
        ({"messages": [{"id": "x"}]}, "source"),
        ({"messages": "none"}, "messages"),
    ]
    for change, fragment in changes:
        bad = api.post(
            "/v1/events/aws",
            raw=json.dumps({**document, **change}).encode(),
            headers=FORWARDED,
            token="w-secret",
        )
        problem(bad, 400, fragment)

    # An event the daemon refuses (a NUL in the key, a GCS event on the AWS path) makes its
    # message a dead letter with its raw payload; the rest is applied.
    message = document["messages"][0]
    nul = {**message, "id": "nul-1", "events": [{**message["events"][0], "key": "a\u0000b"}]}
    gcs = {**message, "id": "gcs-1", "events": [{**message["events"][0], "provider": "gcs"}]}
    fine = {**message, "id": "fine-1", "events": [{**message["events"][0], "key": "ok.mp4"}]}
    answer = api.post(
        "/v1/events/aws",
        raw=json.dumps({"version": 1, "messages": [nul, gcs, fine]}).encode(),
        headers=FORWARDED,
        token="w-secret",
    )
    assert answer.status == 200, answer.body
    assert answer.json()["dead_lettered"] == 2 and answer.json()["applied"] == 1
    letters = {d["message_id"]: d for d in dead_letters(api, token="r-secret")}
    assert "NUL" in letters["nul-1"]["reason"] and "'gcs'" in letters["gcs-1"]["reason"]
    assert "s3in/ok.mp4" in live(api, token="r-secret")

    # Its payload parses on the daemon: a retry applies it and removes the letter.
    retried = api.post(f"/v1/dead-letters/{letters['nul-1']['id']}/retry", token="w-secret")
    assert retried.status == 200, retried.body
    assert retried.json() == {
        "id": letters["nul-1"]["id"],
        "applied_ok": True,
        "applied": 0,  # the same change as the first message's: nothing new
        "reason": None,
    }
    assert "nul-1" not in {d["message_id"] for d in dead_letters(api, token="r-secret")}
    assert "w-secret" not in api.daemon.log.read_text()


# -- a catalog that cannot commit -------------------------------------------------------------


class CuttableProxy:
    """A TCP proxy to PostgreSQL that the test can cut: every connection closed, new ones
    refused."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.cut_off = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut_off:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self.cut_off = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() of the other thread
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_a_catalog_that_cannot_commit_is_a_503(
    start_api: Callable[..., Api], postgres_url: str
) -> None:
    proxy = CuttableProxy(("127.0.0.1", 5432))
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    try:
        api = start_cloud_api(start_api, catalog=url)
        assert api.post("/v1/events/aws", fixture("aws-eventbridge-created.json")).status == 200
        proxy.cut()
        native = api.post("/v1/events/aws", fixture("aws-eventbridge-deleted.json"))
        problem(native, 503, "deliver them again")
        body = forwarded(fixture("aws-sqs-lambda.json"))
        answer = api.post("/v1/events/aws", raw=body, headers=FORWARDED)
        problem(answer, 503, "deliver them again")
        assert len(answer.json()["failed"]) == 5
        assert api.daemon.alive()
    finally:
        proxy.cut()
