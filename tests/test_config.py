"""Config: located errors, secrets as references only, env overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import Config, MaxDelete, load_config, parse_config
from syncd.errors import ConfigError

GOOD = """\
catalog: sqlite:///state/catalog.db
integrations:
  - name: disk
    provider: local
  - name: aws
    provider: s3
    access_key_id: env:AWS_KEY
    secret_access_key: file:secrets/aws
drivers:
  - name: scans
    integration: disk
    bucket: ./scans
    max_delete: 10%
  - name: raw
    integration: aws
    bucket: my-bucket
    prefix: /raw/
    max_delete: 250
datasets:
  - name: ct
    drivers: [scans, raw]
"""


def test_a_good_config_loads_with_defaults(tmp_path: Path) -> None:
    config = parse_config(GOOD, "syncd.yaml", base_dir=tmp_path)
    scans, raw = config.drivers
    assert scans.max_delete == MaxDelete(fraction=0.1)
    assert raw.max_delete == MaxDelete(count=250)
    assert raw.prefix == "raw/"
    assert scans.allow_external_delete is True
    assert ".*" in scans.skip and "*.part" in scans.skip
    assert config.catalog_url() == f"sqlite:///{tmp_path / 'state' / 'catalog.db'}"
    assert [(d.name, r.name) for d, r in config.pairs()] == [("ct", "scans"), ("ct", "raw")]


def test_secret_references_resolve_only_on_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = parse_config(GOOD, "syncd.yaml", base_dir=tmp_path)
    aws = config.integration("aws")
    assert aws.access_key_id == "env:AWS_KEY"
    with pytest.raises(ConfigError, match="AWS_KEY is not set"):
        aws.access_key_id.resolve()
    monkeypatch.setenv("AWS_KEY", "AKIA123")
    assert aws.access_key_id.resolve() == "AKIA123"
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "aws").write_text("s3cr3t\n")
    assert aws.secret_access_key is not None
    assert aws.secret_access_key.resolve(tmp_path) == "s3cr3t"
    assert "AKIA123" not in repr(config) and "s3cr3t" not in repr(config)


def test_a_literal_secret_is_refused_with_its_location() -> None:
    text = GOOD.replace("env:AWS_KEY", "AKIAIOSFODNN7EXAMPLE")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "syncd.yaml")
    message = str(caught.value)
    assert "syncd.yaml:7:20: integrations[1].access_key_id" in message
    assert "env:NAME or file:PATH" in message
    assert "AKIAIOSFODNN7EXAMPLE" not in message


def test_every_error_is_reported_with_file_line_and_field() -> None:
    text = """\
integrations:
  - name: disk
    provider: floppy
drivers:
  - name: a
    integration: disk
  - name: b
    integration: disk
    bucket: x
    max_delete: lots
    fan_out: 0
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml")
    lines = str(caught.value).splitlines()
    assert any(line.startswith("cfg.yaml:3:15: integrations[0].provider:") for line in lines)
    assert any(line.startswith("cfg.yaml:5:5: drivers[0].bucket: Field required") for line in lines)
    assert any(
        line.startswith("cfg.yaml:10:17: drivers[1].max_delete:") and "'lots'" in line
        for line in lines
    )
    assert any(line.startswith("cfg.yaml:11:14: drivers[1].fan_out:") for line in lines)
    assert len(lines) == 4


def test_cross_references_are_located() -> None:
    text = """\
integrations:
  - {name: disk, provider: local}
drivers:
  - {name: a, integration: disk, bucket: x}
  - {name: b, integration: nas, bucket: y}
datasets:
  - {name: d, drivers: [a, c]}
  - {name: d, drivers: [b]}
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml")
    message = str(caught.value)
    assert (
        "cfg.yaml:5:28: drivers[1].integration: unknown integration 'nas' (known: disk)" in message
    )
    assert "cfg.yaml:7:28: datasets[0].drivers[1]: unknown driver 'c'" in message
    assert "cfg.yaml:8:12: datasets[1].name: duplicate dataset name 'd'" in message


def test_bad_yaml_gives_line_and_column() -> None:
    with pytest.raises(ConfigError, match=r"^cfg.yaml:3:\d+: invalid YAML"):
        parse_config("drivers:\n  - name: a\n  bucket: [unclosed\n", "cfg.yaml")


def test_catalog_url_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_CATALOG_URL", "postgresql://u@db/x?schema=s")
    assert Config(base_dir=tmp_path).catalog_url() == "postgresql://u@db/x?schema=s"


def test_config_file_from_env_and_missing_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text(GOOD)
    monkeypatch.setenv("SYNCD_CONFIG", str(path))
    assert [d.name for d in load_config().drivers] == ["scans", "raw"]
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_config(str(tmp_path / "nope.yaml"))


def test_max_delete_limits() -> None:
    assert MaxDelete.model_validate("50%").exceeded(6, 10) is not None
    assert MaxDelete.model_validate("50%").exceeded(5, 10) is None
    assert MaxDelete.model_validate(3).exceeded(4, 1000) is not None
    assert MaxDelete.model_validate({"count": 3, "fraction": 0.9}).exceeded(3, 4) is None


def test_environment_variables_fill_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
catalog: ${CATALOG:-sqlite:///default.db}
integrations:
  - {name: disk, provider: local}
drivers:
  - {name: scans, integration: disk, bucket: "${SCAN_ROOT}/ct", prefix: "cost$$"}
datasets:
  - {name: ct, drivers: [scans]}
"""
    monkeypatch.setenv("SCAN_ROOT", "/mnt/data")
    config = parse_config(text, "cfg.yaml", base_dir=tmp_path)
    assert config.drivers[0].bucket == "/mnt/data/ct"
    assert config.drivers[0].prefix == "cost$"
    assert config.catalog == "sqlite:///default.db"

    monkeypatch.delenv("SCAN_ROOT")
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "cfg.yaml")
    assert "cfg.yaml:5:46: drivers[0].bucket: environment variable SCAN_ROOT is not set" in str(
        caught.value
    )


def test_a_secret_from_the_environment_must_still_be_a_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEY", "AKIAIOSFODNN7EXAMPLE")
    text = GOOD.replace("env:AWS_KEY", "${KEY}")
    with pytest.raises(ConfigError, match="secrets are references"):
        parse_config(text, "syncd.yaml")
