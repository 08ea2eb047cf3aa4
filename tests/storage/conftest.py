"""Stores on real peers: each `store_kind` gives a factory of fresh, empty buckets."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from syncd.config import Driver, Integration
from syncd.storage import open_store
from syncd.storage.memory import MemoryStore
from syncd.storage.types import Store
from tests.peers import Peer, azurite_connection_string


@dataclass
class Bucket:
    """A fresh bucket on one provider, with the config that reaches it."""

    kind: str
    integration: Integration
    bucket: str
    base_dir: Path
    store: Any = None

    def driver(self, **fields: Any) -> Driver:
        return Driver(
            name=fields.pop("name", "d"),
            integration=self.integration.name,
            bucket=self.bucket,
            **fields,
        )

    def open(self, **fields: Any) -> Store:
        if self.kind == "memory":
            return self.store  # type: ignore[no-any-return]
        return open_store(self.driver(**fields), self.integration, self.base_dir)


def _name() -> str:
    return f"b{uuid.uuid4().hex[:12]}"


def s3_bucket(moto: Peer, tmp_path: Path, **integration: Any) -> Bucket:
    import boto3

    name = _name()
    boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1").create_bucket(Bucket=name)
    fields = {
        "name": "aws",
        "provider": "s3",
        "endpoint_url": moto.url,
        "region": "us-east-1",
        "access_key_id": "env:AWS_ACCESS_KEY_ID",
        "secret_access_key": "env:AWS_SECRET_ACCESS_KEY",
        **integration,
    }
    return Bucket("s3", Integration.model_validate(fields), name, tmp_path)


def gcs_bucket(peer: Peer, tmp_path: Path) -> Bucket:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    name = _name()
    client = storage.Client(project="test", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    client.create_bucket(name)
    key_file = tmp_path / "service-account.json"
    key_file.write_text(json.dumps(service_account_info()))
    integration = Integration.model_validate(
        {
            "name": "gcp",
            "provider": "gcs",
            "project": "test",
            "credentials_file": f"file:{key_file}",
        }
    )
    return Bucket("gcs", integration, name, tmp_path)


def service_account_info() -> dict[str, str]:
    """A service-account key made here: the emulator does not check signatures, but the SDK
    needs a real RSA key to produce a V4 signed URL."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "local-test-key",
        "private_key": pem,
        "client_email": "syncd-test@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def azure_bucket(peer: Peer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    from azure.storage.blob import BlobServiceClient

    name = _name()
    connection = azurite_connection_string(peer)
    BlobServiceClient.from_connection_string(connection).create_container(name)
    monkeypatch.setenv("SYNCD_TEST_AZURE", connection)
    integration = Integration.model_validate(
        {"name": "az", "provider": "azure", "connection_string": "env:SYNCD_TEST_AZURE"}
    )
    return Bucket("azure", integration, name, tmp_path)


STORE_KINDS = ["memory", "local", "s3", "gcs", "azure"]


@pytest.fixture(params=STORE_KINDS)
def new_bucket(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], Bucket]:
    """A factory of fresh buckets on the provider this test instance runs against."""
    kind = request.param

    def make() -> Bucket:
        if kind == "memory":
            bucket = Bucket("memory", Integration(name="mem", provider="local"), "mem", tmp_path)
            bucket.store = MemoryStore()
            return bucket
        if kind == "local":
            folder = tmp_path / _name()
            folder.mkdir()
            return Bucket(
                "local", Integration(name="disk", provider="local"), str(folder), tmp_path
            )
        if kind == "s3":
            return s3_bucket(request.getfixturevalue("moto"), tmp_path)
        if kind == "gcs":
            return gcs_bucket(request.getfixturevalue("gcs_peer"), tmp_path)
        return azure_bucket(request.getfixturevalue("azurite_peer"), tmp_path, monkeypatch)

    return make
