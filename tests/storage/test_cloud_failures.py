"""What goes wrong with real clouds, reproduced on the emulators: refused credentials,
throttling and dropped connections, objects written by other tools, versioned buckets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from syncd.catalog import Catalog, RunStatus, open_catalog
from syncd.config import Driver, Integration
from syncd.errors import TransientError
from syncd.reconcile import reconcile
from syncd.storage import open_store
from syncd.storage.deadline import bounded
from syncd.storage.s3 import S3Store
from syncd.storage.types import Listed, ObjectInfo
from tests.conftest import objects
from tests.peers import AZURITE_ACCOUNT, AZURITE_KEY, Peer, moto_server
from tests.storage.conftest import azure_bucket, gcs_bucket, s3_bucket
from tests.storage.hanging_server import hanging_server
from tests.storage.throttle_proxy import throttling_proxy


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    return open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")


def s3_store(endpoint: str, bucket: str, versioned: bool = False) -> S3Store:
    integration = Integration(name="aws", provider="s3", endpoint_url=endpoint, region="us-east-1")
    driver = Driver(name="raw", integration="aws", bucket=bucket, versioned=versioned)
    store = open_store(driver, integration, Path())
    assert isinstance(store, S3Store)
    return store


def test_refused_credentials_fail_fast_name_the_permission_and_delete_nothing(
    catalog: Catalog, tmp_path: Path, moto: Peer
) -> None:
    # A moto server that checks credentials after its first four requests.
    os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = "4"
    try:
        strict = moto_server(tmp_path)
    finally:
        os.environ.pop("INITIAL_NO_AUTH_ACTION_COUNT")
    try:
        s3 = boto3.client("s3", endpoint_url=strict.url, region_name="us-east-1")
        s3.create_bucket(Bucket="guarded")
        s3.put_object(Bucket="guarded", Key="a.jpg", Body=b"1")
        s3.put_object(Bucket="guarded", Key="b.jpg", Body=b"2")
        driver = Driver(name="raw", integration="aws", bucket="guarded")
        store = s3_store(strict.url, "guarded")
        assert (
            reconcile(catalog, store, dataset="ds", driver=driver, provider="s3").counts.added == 2
        )

        refused = reconcile(catalog, store, dataset="ds", driver=driver, provider="s3")
    finally:
        strict.stop()
    assert refused.status is RunStatus.ABORTED
    reason = refused.reason or ""
    assert "driver raw" in reason and "s3://guarded" in reason and "s3:ListBucket" in reason
    assert "access denied" in reason
    assert [i.key for i in catalog.items("ds")] == ["a.jpg", "b.jpg"]


def test_wrong_azure_key_is_refused_and_nothing_is_deleted(
    catalog: Catalog, tmp_path: Path, azurite_peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = azure_bucket(azurite_peer, tmp_path, monkeypatch)
    store = bucket.open()
    store.put("a.jpg", b"1")  # type: ignore[attr-defined]
    driver = bucket.driver()
    reconcile(catalog, store, dataset="ds", driver=driver, provider="azure")
    good = os.environ["SYNCD_TEST_AZURE"]
    monkeypatch.setenv("SYNCD_TEST_AZURE", good.replace("AccountKey=Eby8", "AccountKey=Zzz8"))
    result = reconcile(catalog, bucket.open(), dataset="ds", driver=driver, provider="azure")
    assert result.status is RunStatus.ABORTED
    assert "authentication failed" in (result.reason or "") or "access denied" in (
        result.reason or ""
    )
    assert "Zzz8" not in (result.reason or "")
    assert [i.key for i in catalog.items("ds")] == ["a.jpg"]


def test_throttling_and_dropped_connections_are_survived(
    catalog: Catalog, tmp_path: Path, moto: Peer
) -> None:
    bucket = s3_bucket(moto, tmp_path)
    direct = s3_store(moto.url, bucket.bucket)
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    for n in range(600):
        s3.put_object(Bucket=bucket.bucket, Key=f"k/{n:05d}.jpg", Body=b"x")
    with throttling_proxy(moto.url, every=2) as (proxy, faults):
        store = s3_store(proxy, bucket.bucket)
        store.page_size = 50
        driver = Driver(name="raw", integration="aws", bucket=bucket.bucket)
        result = reconcile(catalog, store, dataset="ds", driver=driver, provider="s3")
    assert faults.injected >= 2
    assert result.status is RunStatus.SUCCEEDED and result.counts.added == 600
    assert [i.key for i in catalog.items("ds")] == [o.key for o in direct.list()]


def test_objects_written_by_s5cmd_and_the_aws_cli_are_seen(
    catalog: Catalog, tmp_path: Path, moto: Peer
) -> None:
    bucket = s3_bucket(moto, tmp_path)
    source = tmp_path / "upload"
    source.mkdir()
    (source / "one photo.jpg").write_bytes(b"1" * 10)
    (source / "two.png").write_bytes(b"2" * 20)
    env = {**os.environ, "AWS_REGION": "us-east-1"}
    s5cmd = Path(sys.executable).parent / "s5cmd"
    subprocess.run(
        [str(s5cmd), "--endpoint-url", moto.url, "cp", f"{source}/*", f"s3://{bucket.bucket}/s5/"],
        check=True,
        env=env,
        capture_output=True,
    )
    subprocess.run(
        [
            "aws",
            "--endpoint-url",
            moto.url,
            "s3",
            "cp",
            str(source / "two.png"),
            f"s3://{bucket.bucket}/cli/two+plus.png",
        ],
        check=True,
        env=env,
        capture_output=True,
    )
    store = s3_store(moto.url, bucket.bucket)
    driver = Driver(name="raw", integration="aws", bucket=bucket.bucket)
    reconcile(catalog, store, dataset="ds", driver=driver, provider="s3")
    assert {i.key: i.size for i in catalog.items("ds")} == {
        "cli/two+plus.png": 20,
        "s5/one photo.jpg": 10,
        "s5/two.png": 20,
    }


def test_versioned_bucket_keeps_the_live_version_id(
    catalog: Catalog, tmp_path: Path, moto: Peer
) -> None:
    bucket = s3_bucket(moto, tmp_path)
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    s3.put_bucket_versioning(Bucket=bucket.bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket.bucket, Key="a.jpg", Body=b"v1")
    latest = s3.put_object(Bucket=bucket.bucket, Key="a.jpg", Body=b"v2 longer")["VersionId"]
    s3.put_object(Bucket=bucket.bucket, Key="gone.jpg", Body=b"x")
    s3.delete_object(Bucket=bucket.bucket, Key="gone.jpg")
    store = s3_store(moto.url, bucket.bucket, versioned=True)
    driver = Driver(name="raw", integration="aws", bucket=bucket.bucket, versioned=True)
    reconcile(catalog, store, dataset="ds", driver=driver, provider="s3")
    (item,) = catalog.items("ds")
    assert (item.key, item.version, item.size) == ("a.jpg", latest, 9)


def test_syncd_sync_against_s3_from_a_config_file(tmp_path: Path, moto: Peer) -> None:
    bucket = s3_bucket(moto, tmp_path)
    s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1")
    for n in range(30):
        s3.put_object(Bucket=bucket.bucket, Key=f"scans/{n // 10}/{n:03d}.dcm", Body=b"d")
    (tmp_path / "syncd.yaml").write_text(
        f"""\
integrations:
  - name: aws
    provider: s3
    endpoint_url: {moto.url}
    region: us-east-1
    access_key_id: env:AWS_ACCESS_KEY_ID
    secret_access_key: env:AWS_SECRET_ACCESS_KEY
drivers:
  - {{name: scans, integration: aws, bucket: {bucket.bucket}, prefix: scans/, fan_out: 4}}
datasets:
  - {{name: ct, drivers: [scans]}}
"""
    )
    done = subprocess.run(
        [sys.executable, "-m", "syncd", "sync", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "SYNCD_CONFIG": "", "SYNCD_CATALOG_URL": ""},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["results"][0]
    assert result["counts"]["added"] == 30
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in done.stderr


def test_lean_listing_equals_boto3_listing(tmp_path: Path, moto: Peer) -> None:
    from tests.storage.test_store_contract import NASTY

    bucket = s3_bucket(moto, tmp_path)
    lean = s3_store(moto.url, bucket.bucket)
    assert lean.lister is not None
    for key in [*NASTY, "a", "b/", "tab\tkey", "amp&lt;", "ünï/cödé"]:
        lean.put(key, key.encode())
    plain = S3Store(bucket.bucket, lean.client, page_size=7)
    lean.page_size = 7
    assert list(lean.list()) == list(plain.list())
    assert list(lean.list("a", start_after="a-b")) == list(plain.list("a", start_after="a-b"))


def test_s3_role_is_assumed_through_sts(tmp_path: Path, moto: Peer) -> None:
    bucket = s3_bucket(moto, tmp_path)
    boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1").put_object(
        Bucket=bucket.bucket, Key="a.jpg", Body=b"1"
    )
    integration = Integration(
        name="aws",
        provider="s3",
        endpoint_url=moto.url,
        region="us-east-1",
        role_arn="arn:aws:iam::123456789012:role/syncd-reader",
    )
    store = open_store(
        Driver(name="raw", integration="aws", bucket=bucket.bucket), integration, tmp_path
    )
    assert [o.key for o in store.list()] == ["a.jpg"]


@pytest.mark.parametrize("credential", ["account_key", "sas_token"])
def test_azure_account_key_and_sas(
    tmp_path: Path, azurite_peer: Peer, monkeypatch: pytest.MonkeyPatch, credential: str
) -> None:
    import datetime

    from azure.storage.blob import AccountSasPermissions, ResourceTypes, generate_account_sas

    from tests.peers import AZURITE_ACCOUNT, AZURITE_KEY

    bucket = azure_bucket(azurite_peer, tmp_path, monkeypatch)
    bucket.open().put("k.png", b"123")  # type: ignore[attr-defined]
    if credential == "account_key":
        monkeypatch.setenv("SYNCD_TEST_SECRET", AZURITE_KEY)
    else:
        sas = generate_account_sas(
            AZURITE_ACCOUNT,
            AZURITE_KEY,
            ResourceTypes(container=True, object=True),
            AccountSasPermissions(read=True, list=True),
            datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1),
        )
        monkeypatch.setenv("SYNCD_TEST_SECRET", sas)
    integration = Integration.model_validate(
        {
            "name": "az",
            "provider": "azure",
            "account_name": AZURITE_ACCOUNT,
            "account_url": f"{azurite_peer.url}/{AZURITE_ACCOUNT}",
            credential: "env:SYNCD_TEST_SECRET",
        }
    )
    store = open_store(
        Driver(name="d", integration="az", bucket=bucket.bucket), integration, tmp_path
    )
    assert [(o.key, o.size) for o in objects(store.list())] == [("k.png", 3)]
    assert store.read_range("k.png", 1, 2) == b"23"


@pytest.mark.parametrize("kind", ["gcs", "azure"])
def test_gcs_and_azure_survive_throttling_and_resets(
    catalog: Catalog,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    request: pytest.FixtureRequest,
) -> None:
    if kind == "gcs":
        peer = request.getfixturevalue("gcs_peer")
        bucket = gcs_bucket(peer, tmp_path)
    else:
        peer = request.getfixturevalue("azurite_peer")
        bucket = azure_bucket(peer, tmp_path, monkeypatch)
    direct = bucket.open()
    for n in range(60):
        direct.put(f"t/{n:03d}.jpg", b"x")  # type: ignore[attr-defined]
    with throttling_proxy(peer.url, every=3) as (proxy, faults):
        if kind == "gcs":
            monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy)
        else:
            connection = os.environ["SYNCD_TEST_AZURE"].replace(peer.url, proxy)
            monkeypatch.setenv("SYNCD_TEST_AZURE", connection)
        store = bucket.open()
        # Azure's retry policy backs off from 1 s: fewer pages keep the test short.
        store.page_size = 10 if kind == "gcs" else 30  # type: ignore[attr-defined]
        result = reconcile(catalog, store, dataset="ds", driver=bucket.driver(), provider=kind)
        assert [(o.key, o.size) for o in objects(store.list("t/"))] == [
            (f"t/{n:03d}.jpg", 1) for n in range(60)
        ]
    assert faults.injected >= 1
    assert result.status is RunStatus.SUCCEEDED and result.counts.added == 60


@pytest.mark.parametrize("kind", ["s3", "gcs", "azure"])
def test_a_server_that_trickles_bytes_is_given_up_on_with_a_reason(
    kind: str, tmp_path: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No single read times out (a byte arrives every 0.2 s): each request's own deadline
    (three read timeouts) stops it, and the run says the server does not answer."""
    with hanging_server("trickle") as url:
        driver = Driver(name="d", integration="x", bucket="b", read_timeout=1)
        store = open_store(driver, _pointed_at(kind, url, monkeypatch), tmp_path)
        started = time.monotonic()
        result = reconcile(catalog, store, dataset="ds", driver=driver, provider=kind)
    assert time.monotonic() - started < 60
    assert result.status is RunStatus.ABORTED and result.error_kind == "transient"
    reason = result.reason or ""
    assert ("Read timeout" in reason) if kind == "s3" else ("no complete answer for 3s" in reason)


def test_a_silent_server_is_a_read_timeout_not_a_refused_connection(
    tmp_path: Path, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    with hanging_server("silent") as url:
        driver = Driver(name="d", integration="x", bucket="b", read_timeout=0.5)
        store = open_store(driver, _pointed_at("s3", url, monkeypatch), tmp_path)
        started = time.monotonic()
        result = reconcile(catalog, store, dataset="ds", driver=driver, provider="s3")
    assert time.monotonic() - started < 10  # two tries, not eight
    assert result.status is RunStatus.ABORTED
    assert "Read timeout" in (result.reason or "") and "connect" not in (result.reason or "")


def test_a_listing_that_runs_past_its_deadline_stops(catalog: Catalog) -> None:
    class Slow:
        name = "slow"
        sorted_listing = True
        skipped_by_store: tuple[str, ...] = ()

        def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[Listed]:
            for n in range(100_000):
                if n % 1024 == 0:
                    time.sleep(0.2)
                yield ObjectInfo(f"k{n:06d}", 1, 1.0)

    driver = Driver(name="d", integration="x", bucket="b", listing_deadline=1)
    result = reconcile(catalog, Slow(), dataset="ds", driver=driver, provider="s3")
    assert result.status is RunStatus.ABORTED
    assert "exceeded its deadline of 1s (listing_deadline)" in (result.reason or "")


def test_a_stalled_listing_says_so() -> None:
    def slow() -> Iterator[Listed]:
        yield ObjectInfo("a", 1, 1.0)
        time.sleep(5)
        yield ObjectInfo("b", 1, 1.0)

    listing = bounded(slow, stall=0.5, what="driver d")
    assert next(listing).key == "a"
    with pytest.raises(TransientError, match="no complete answer for 0s"):
        next(listing)


def _pointed_at(kind: str, url: str, monkeypatch: pytest.MonkeyPatch) -> Integration:
    if kind == "s3":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        return Integration.model_validate(
            {
                "name": "x",
                "provider": "s3",
                "endpoint_url": url,
                "region": "us-east-1",
                "access_key_id": "env:AWS_ACCESS_KEY_ID",
                "secret_access_key": "env:AWS_SECRET_ACCESS_KEY",
            }
        )
    if kind == "gcs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        return Integration(name="x", provider="gcs", project="test")
    monkeypatch.setenv(
        "SYNCD_TEST_TRICKLE",
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={url}/{AZURITE_ACCOUNT};",
    )
    return Integration.model_validate(
        {"name": "x", "provider": "azure", "connection_string": "env:SYNCD_TEST_TRICKLE"}
    )
