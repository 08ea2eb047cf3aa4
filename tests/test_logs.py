"""Log lines never carry secrets."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from syncd import logs


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def test_secret_fields_and_signed_urls_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("info", json=True)
    log = structlog.get_logger("test")
    log.info(
        "connecting",
        account_key="c2VjcmV0a2V5",
        connection_string="DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc123==;",
        url="https://b.s3.amazonaws.com/k?X-Amz-Credential=x&X-Amz-Signature=deadbeef",
        key="images/cat.jpg",
    )
    line = json.loads(capsys.readouterr().err.strip())
    assert line["account_key"] == "***"
    assert line["connection_string"] == "***"
    assert "deadbeef" not in line["url"] and "X-Amz-Signature=***" in line["url"]
    assert line["key"] == "images/cat.jpg"


def test_scrub_masks_credentials_in_free_text() -> None:
    text = "failed: AccountKey=abc+/==;EndpointSuffix=x and ?sv=1&sig=Zm9v&se=2"
    assert logs.scrub(text) == "failed: AccountKey=***;EndpointSuffix=x and ?sv=1&sig=***&se=2"
