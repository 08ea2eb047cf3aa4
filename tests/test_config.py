"""Config: every problem in one pass, located and in plain words; secrets as references only;
the deep checks that keep `sync` from failing on what `config validate` accepted."""

from __future__ import annotations

import json
import time
import tracemalloc
from pathlib import Path

import pytest

from syncd.config import (
    Config,
    Integration,
    MaxDelete,
    SecretRef,
    check_config,
    check_driver,
    load_config,
    parse_config,
)
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

# A config with one integration and one driver around the field a test varies.
SMALL = """\
integrations:
  - {{name: disk, provider: local}}
drivers:
  - {{name: a, integration: disk, bucket: ./a, {field}}}
datasets:
  - {{name: d, drivers: [a]}}
"""


def errors(text: str, source: str = "cfg.yaml") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source)
    return str(caught.value).splitlines()


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


def test_a_secret_file_that_is_not_text_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "key").write_bytes(b"\xffsecret")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte offset 0\)"):
        SecretRef("file:key").resolve(tmp_path)


def test_a_literal_secret_is_refused_with_its_location() -> None:
    lines = errors(GOOD.replace("env:AWS_KEY", "AKIAIOSFODNN7EXAMPLE"), "syncd.yaml")
    assert lines == [
        "syncd.yaml:7:20: integrations[1].access_key_id: secrets are references, not values: "
        "write env:NAME or file:PATH"
    ]


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
    assert errors(text) == [
        "cfg.yaml:3:15: integrations[0].provider: 'floppy' is not one of: local, s3, gcs, azure",
        "cfg.yaml:5:5: drivers[0].bucket: required field 'bucket' is missing",
        "cfg.yaml:10:17: drivers[1].max_delete: cannot read 'lots': write '50%' or a whole number",
        "cfg.yaml:11:14: drivers[1].fan_out: must be at least 1, got 0",
    ]


def test_five_mistakes_of_every_kind_are_reported_in_one_pass_in_file_order() -> None:
    # Each of these used to hide the ones after it: field errors hid the cross-references,
    # an unset variable stopped everything, and a duplicate key went unnoticed.
    text = """\
integrations:
  - {name: disk, provider: local}
drivers:
  - name: scans
    integration: disk
    bucket: ./scans
    prefix: "${SYNCD_TEST_UNSET_ROOT}/ct"
    bucket: ./scans
  - name: raw
    integration: nas
    bucket: ./raw
    fan_out: many
datasets:
  - {name: ct, drivers: [scans, cine]}
"""
    assert errors(text) == [
        "cfg.yaml:7:13: drivers[0].prefix: environment variable SYNCD_TEST_UNSET_ROOT is not set",
        "cfg.yaml:8:5: drivers[0].bucket: duplicate key 'bucket' (first at line 6)",
        "cfg.yaml:10:18: drivers[1].integration: unknown integration 'nas' (known: disk)",
        "cfg.yaml:12:14: drivers[1].fan_out: expected a whole number, got 'many'",
        "cfg.yaml:14:33: datasets[0].drivers[1]: unknown driver 'cine' (known: raw, scans)",
    ]


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
    assert errors(text) == [
        "cfg.yaml:5:28: drivers[1].integration: unknown integration 'nas' (known: disk)",
        "cfg.yaml:7:28: datasets[0].drivers[1]: unknown driver 'c' (known: a, b)",
        "cfg.yaml:8:12: datasets[1].name: duplicate dataset name 'd' (first used by datasets[0])",
    ]


def test_a_config_built_in_code_still_checks_its_references(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"drivers\[0\]\.integration: unknown integration"):
        Config.model_validate(
            {"drivers": [{"name": "a", "integration": "nas", "bucket": "b"}], "base_dir": tmp_path}
        )


def test_unknown_fields_suggest_the_close_name_or_list_the_known_ones() -> None:
    assert errors(SMALL.format(field="bukcet: x")) == [
        "cfg.yaml:4:47: drivers[0].bukcet: unknown field 'bukcet' (did you mean 'bucket'?)"
    ]
    assert errors("colour: blue\n") == [
        "cfg.yaml:1:1: colour: unknown field 'colour' (known fields: catalog, daemon, api, webhooks, targets, manifest, "
        "integrations, drivers, datasets)"
    ]
    # base_dir is the file's folder, set by the caller, never by the file.
    assert errors("base_dir: /etc\n")[0].startswith(
        "cfg.yaml:1:1: base_dir: unknown field 'base_dir'"
    )


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("fan_out: 1.5", "drivers[0].fan_out: expected a whole number, got 1.5"),
        ("fan_out: 65", "drivers[0].fan_out: must be at most 64, got 65"),
        ("versioned: maybe", "drivers[0].versioned: expected true or false, got 'maybe'"),
        ("prefix: 2024", "drivers[0].prefix: expected text, got 2024 (put it in quotes)"),
        ("prefix: [a]", "drivers[0].prefix: expected text, got a list"),
        ("include: '*.jpg'", "drivers[0].include: expected a list, got '*.jpg'"),
        ("max_delete: 150%", "drivers[0].max_delete: cannot read '150%': write a percentage"),
        ("max_delete: -3", "drivers[0].max_delete.count: must be at least 0, got -3"),
        ("content_hash: crc", "drivers[0].content_hash: 'crc' is not one of: none, md5, sha256"),
        ("max_delete: [1]", "drivers[0].max_delete: expected a mapping, got a list"),
    ],
)
def test_wrong_values_are_said_in_plain_words(field: str, message: str) -> None:
    (line,) = errors(SMALL.format(field=field))
    assert line.split(": ", 1)[1].startswith(message), line
    assert "Input should" not in line and "pydantic" not in line


def test_names_say_what_they_may_contain_and_lists_what_they_need() -> None:
    text = """\
integrations:
  - {name: "my disk", provider: local}
datasets:
  - {name: d, drivers: []}
"""
    assert errors(text) == [
        "cfg.yaml:2:12: integrations[0].name: a name is 1 to 63 letters, digits, '_', '.' or "
        "'-', and starts with a letter or digit; got 'my disk'",
        "cfg.yaml:4:24: datasets[0].drivers: must list at least one driver",
    ]


def test_no_message_carries_pydantic_wording_or_urls() -> None:
    text = SMALL.format(field="fan_out: x, bukcet: 1, content_hash: 3, max_delete: {count: -1}")
    message = "\n".join(errors(text))
    assert "errors.pydantic.dev" not in message and "For further information" not in message
    assert "Input should" not in message and "Field required" not in message


def test_duplicate_keys_are_located_at_the_second_occurrence() -> None:
    text = """\
catalog: sqlite:///a.db
integrations:
  - name: disk
    provider: local
    name: disk
drivers: []
catalog: sqlite:///b.db
manifest: {skip_duplicate_urls: true, skip_duplicate_urls: false}
"""
    assert errors(text) == [
        "cfg.yaml:5:5: integrations[0].name: duplicate key 'name' (first at line 3)",
        "cfg.yaml:7:1: catalog: duplicate key 'catalog' (first at line 1)",
        "cfg.yaml:8:39: manifest.skip_duplicate_urls: duplicate key 'skip_duplicate_urls' "
        "(first at line 8)",
    ]


def test_ordinary_anchors_aliases_and_merge_keys_keep_working(tmp_path: Path) -> None:
    text = """\
integrations:
  - {name: disk, provider: local}
drivers:
  - &base {name: a, integration: disk, bucket: ./a, include: &images ["*.jpg", "*.png"]}
  - <<: *base
    name: b
    bucket: ./b
  - {name: c, integration: disk, bucket: ./c, exclude: *images}
datasets:
  - {name: d, drivers: [a, b, c]}
"""
    config = parse_config(text, "cfg.yaml", base_dir=tmp_path)
    a, b, c = config.drivers
    assert (b.name, b.bucket, b.include) == ("b", "./b", ("*.jpg", "*.png"))
    assert c.exclude == a.include
    # A value shared through an alias or a merge is reported for each field it fills, at
    # the place it is written.
    broken = text.replace('"*.png"', '"[z-a]"')
    assert errors(broken) == [
        f"cfg.yaml:4:80: drivers[{n}].{field}[1]: invalid glob '[z-a]': bad character range z-a"
        for n, field in ((0, "include"), (1, "include"), (2, "exclude"))
    ]


def _laughs(levels: int) -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels):
        refs = ", ".join([f"*l{level - 1}"] * 9)
        lines.append(f"l{level}: &l{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_is_refused_fast_and_small() -> None:
    text = _laughs(9)
    assert len(text) < 700
    tracemalloc.start()
    started = time.perf_counter()
    lines = errors(text)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert lines == ["cfg.yaml:6:10: the file expands YAML aliases beyond 100000 nodes"]
    assert elapsed < 0.5 and peak < 5_000_000


def test_recursive_aliases_and_deep_nesting_are_refused() -> None:
    assert errors("drivers: &a [*a]\n") == ["cfg.yaml:1:14: alias *a is used inside its own anchor"]
    assert errors("drivers: " + "[" * 150 + "]" * 150 + "\n") == [
        "cfg.yaml:1:109: nested deeper than 100 levels"
    ]


def test_broken_yaml_gives_line_and_column() -> None:
    assert errors("drivers:\n  - name: a\n  bucket: [unclosed\n") == [
        "cfg.yaml:3:3: invalid YAML: while parsing a block collection (from line 2): expected "
        "<block end>, but found '?'"
    ]
    assert errors("catalog: 'sqlite:///x\n\ndrivers: []\n") == [
        "cfg.yaml:4:1: invalid YAML: while scanning a quoted scalar (from line 1): found "
        "unexpected end of stream"
    ]


def test_values_yaml_takes_for_numbers_or_dates_but_are_not_are_located() -> None:
    assert errors("catalog: 0x_\n") == [
        "cfg.yaml:1:10: invalid YAML: '0x_' is not a whole number; quote it if it is text"
    ]
    assert errors("manifest: {client_metadata: {day: 2024-13-45}}\n") == [
        "cfg.yaml:1:35: invalid YAML: '2024-13-45' is not a date (month must be in 1..12); "
        "quote it if it is text"
    ]


def test_the_top_level_must_be_a_mapping() -> None:
    assert errors("- a\n- b\n") == ["cfg.yaml:1:1: the top level must be a mapping, not a list"]


def test_bytes_that_are_not_text_are_located(tmp_path: Path) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_bytes(
        b"catalog: sqlite:///x.db\n"
        b"drivers: [caf\xe9]\n"  # Latin-1, not UTF-8
        b"# a\x00b\x1bc\x7f\n"
        b"datasets: []\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    assert str(caught.value).splitlines() == [
        f"{path}:2:14: invalid UTF-8: byte 0xE9 at offset 37",
        f"{path}:3:4: a NUL byte (U+0000) is not allowed: the file must be UTF-8 text",
        f"{path}:3:6: control character U+001B is not allowed: the file must be UTF-8 text",
        f"{path}:3:8: control character U+007F is not allowed: the file must be UTF-8 text",
    ]


def test_a_binary_file_lists_its_first_few_bad_bytes(tmp_path: Path) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    lines = str(caught.value).splitlines()
    assert len(lines) == 11
    assert (
        lines[0] == f"{path}:1:1: a NUL byte (U+0000) is not allowed: the file must be UTF-8 text"
    )
    assert lines[-1].startswith(f"{path}:2:2: ") and "more such places" in lines[-1]


def test_parse_config_refuses_control_characters_in_text_and_in_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert errors("catalog: sqlite:///x\x00.db\n") == [
        "cfg.yaml:1:21: a NUL byte (U+0000) is not allowed: the file must be UTF-8 text"
    ]
    # An escape, or the environment, can still put one in a value.
    monkeypatch.setenv("SCAN_ROOT", "/mnt/\x1b[31m")
    text = SMALL.format(field='prefix: "a\\0b"').replace("./a", '"${SCAN_ROOT}"')
    assert errors(text) == [
        "cfg.yaml:4:42: drivers[0].bucket: contains control character U+001B, which a value "
        "cannot hold",
        "cfg.yaml:4:66: drivers[0].prefix: contains a NUL byte (U+0000), which a value cannot hold",
    ]


def test_globs_that_cannot_compile_are_located() -> None:
    field = 'include: ["*.jpg", "[z-a]"], exclude: ["[]"], skip: ["ok", ""]'
    assert errors(SMALL.format(field=field)) == [
        "cfg.yaml:4:66: drivers[0].include[1]: invalid glob '[z-a]': bad character range z-a",
        "cfg.yaml:4:86: drivers[0].exclude[0]: invalid glob '[]': a [...] set is empty or ends "
        "with a backslash",
        "cfg.yaml:4:106: drivers[0].skip[1]: an empty glob matches nothing",
    ]


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("https://h/{bukcet}/{key}", "unknown field {bukcet} (did you mean {bucket}?)"),
        ("https://h/{name}", "unknown field {name} (fields: bucket, key, raw_key, region, driver)"),
        ("https://h/{}", "positional fields such as {} are not allowed"),
        ("https://h/{0}", "positional fields such as {} are not allowed"),
        ("https://h/{key", "a '{' is not closed (write '{{' for a literal brace)"),
        ("https://h/key}", "a '}' has no '{' (write '}}' for a literal brace)"),
        ("https://h/{key:d}", "{key:d}: Unknown format code 'd' for object of type 'str'"),
        ("https://h/{key!x}", "{key!x}: the conversion must be !r, !s or !a"),
        ("https://h/{key.upper}", "{key.upper}: attribute and index lookups are not allowed"),
        ("https://h/{key:{bucket}}", "{key:{bucket}}: a format spec cannot hold fields"),
        ("https://h/{key:99999999}", "{key:99999999}: the width or precision is too large"),
    ],
)
def test_url_templates_are_checked(template: str, problem: str) -> None:
    (line,) = errors(f"manifest:\n  url_template: '{template}'\n")
    assert line.startswith(
        f"cfg.yaml:2:17: manifest.url_template: invalid template {template!r}: {problem}"
    ), line


def test_good_url_templates_pass() -> None:
    for template in ("https://{bucket}.s3.{region}.amazonaws.com/{key}", "{raw_key!s:>3}{{x}}"):
        config = parse_config(f"manifest:\n  url_template: '{template}'\n")
        assert config.manifest.url_template == template


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (
            "endpoint_url: localhost:9000",
            "expected an http:// or https:// URL, got 'localhost:9000'",
        ),
        ("endpoint_url: 'ftp://h'", "expected an http:// or https:// URL, got 'ftp://h'"),
        ("endpoint_url: 'http://'", "'http://' has no host name"),
        ("endpoint_url: 'http://h:99999'", "'http://h:99999' is not a URL: Port out of range"),
        ("endpoint_url: 'http://h:0'", "'http://h:0': the port must be from 1 to 65535"),
        ("endpoint_url: 'http://my_minio:9000'", "'my_minio' is not a host name"),
        ("endpoint_url: 'http://[v1.x]:9000'", "'v1.x' is not an IPv6 address"),
        ("endpoint_url: 'http://h /'", "contains a space or line break"),
        ("region: us_east_1", "'us_east_1' is not a region name"),
        ("region: '-auto'", "'-auto' is not a region name"),
        ("region: ''", "'' is not a region name"),
    ],
)
def test_driver_endpoints_and_regions_are_checked(field: str, message: str) -> None:
    (line,) = errors(SMALL.format(field=field))
    where = ("cfg.yaml:4:55: drivers[0].region: ", "cfg.yaml:4:61: drivers[0].endpoint_url: ")
    assert line.startswith(where) and message in line, line


def test_a_url_with_a_password_is_refused_without_repeating_it() -> None:
    text = "integrations:\n  - {name: m, provider: s3, endpoint_url: 'http://u:hunter2@h:9000'}\n"
    (line,) = errors(text)
    assert line.startswith("cfg.yaml:2:43: integrations[0].endpoint_url: must not hold a user")
    assert "hunter2" not in line


def test_azure_and_s3_settings_that_only_work_together() -> None:
    text = """\
integrations:
  - {name: a, provider: azure, account_url: "https://acct.blob.core.windows.net/"}
  - {name: b, provider: azure, account_url: "https//acct", account_key: env:K}
  - {name: c, provider: azure, account_name: My_Account}
  - {name: e, provider: s3, access_key_id: env:ID, role_arn: "arn:aws:iam::1:r"}
  - {name: f, provider: s3, session_token: env:T}
"""
    assert errors(text) == [
        "cfg.yaml:3:45: integrations[1].account_url: expected an http:// or https:// URL, got "
        "'https//acct'",
        "cfg.yaml:3:73: integrations[1].account_key: account_key needs account_name too",
        "cfg.yaml:4:46: integrations[2].account_name: 'My_Account' is not an Azure storage "
        "account name (3 to 24 lowercase letters and digits)",
        "cfg.yaml:5:44: integrations[3].access_key_id: access_key_id needs secret_access_key too",
        "cfg.yaml:5:62: integrations[3].role_arn: 'arn:aws:iam::1:r' is not a role ARN "
        "(arn:aws:iam::123456789012:role/NAME)",
        "cfg.yaml:6:44: integrations[4].session_token: session_token needs access_key_id and "
        "secret_access_key",
    ]


def test_an_azure_account_given_nowhere_stops_only_its_store() -> None:
    # Event handlers route Azure events without an account; a store cannot open without one.
    text = """\
integrations:
  - {name: az, provider: azure}
  - {name: disk, provider: local}
drivers:
  - {name: blobs, integration: az, bucket: c}
  - {name: files, integration: disk, bucket: ./f}
"""
    config = parse_config(text, "cfg.yaml")
    assert check_config(config, resolve_secrets=False) == [
        "cfg.yaml:2:26: integrations[0].provider: an azure store needs connection_string, "
        "account_name or account_url"
    ]
    assert check_driver(config, "files") == []


def test_the_catalog_url_is_checked_without_repeating_it() -> None:
    (line,) = errors("catalog: mysql://root:hunter2@db/x\n")
    assert line == "cfg.yaml:1:10: catalog: expected sqlite:///PATH or postgresql://USER@HOST/DB"


def test_region_and_endpoint_rules_are_the_ones_botocore_applies() -> None:
    boto3 = pytest.importorskip("boto3")
    session = boto3.session.Session(aws_access_key_id="a", aws_secret_access_key="b")

    def s3(region: str, endpoint: str) -> str:
        fields = f"region: {region}, endpoint_url: '{endpoint}'"
        return f"integrations: [{{name: s, provider: s3, {fields}}}]"

    for region, endpoint in [
        ("auto", "http://localhost:9000"),
        ("garage", "http://127.0.0.1:3900/"),
        ("eu-west-1", "https://s3.eu-west-1.amazonaws.com"),
        ("us-east-1", "http://[::1]:9000"),
    ]:
        parse_config(s3(region, endpoint))
        session.client("s3", region_name=region, endpoint_url=endpoint)
    for region, endpoint in [("us_east", "http://localhost:9000"), ("auto", "http://my_host")]:
        with pytest.raises(ConfigError):
            parse_config(s3(region, endpoint))
        with pytest.raises(ValueError):  # botocore's InvalidRegionError is one too
            session.client("s3", region_name=region, endpoint_url=endpoint)


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
    assert errors(text) == [
        "cfg.yaml:5:46: drivers[0].bucket: environment variable SCAN_ROOT is not set"
    ]


def test_a_secret_from_the_environment_must_still_be_a_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KEY", "AKIAIOSFODNN7EXAMPLE")
    text = GOOD.replace("env:AWS_KEY", "${KEY}")
    with pytest.raises(ConfigError, match="secrets are references"):
        parse_config(text, "syncd.yaml")


CLOUD = """\
integrations:
  - {name: aws, provider: s3, profile: labelling, access_key_id: env:SYNCD_T_ID,
     secret_access_key: file:aws-secret}
  - {name: gcp, provider: gcs, credentials_file: file:gcp.json}
  - {name: az, provider: azure, connection_string: env:SYNCD_T_AZ}
  - {name: disk, provider: local}
drivers:
  - {name: raw, integration: aws, bucket: raw}
  - {name: pics, integration: gcp, bucket: pics}
  - {name: blobs, integration: az, bucket: blobs}
  - {name: home, integration: disk, bucket: ~syncd-no-such-user/data}
datasets:
  - {name: d, drivers: [raw, pics, blobs, home]}
"""
KEY = "c2VjcmV0LWFjY291bnQta2V5"  # base64 of a made-up account key


@pytest.fixture
def cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """CLOUD's environment: an AWS config that knows the profile `labeling` only."""
    (tmp_path / "aws-config").write_text("[profile labeling]\nregion = eu-west-1\n")
    (tmp_path / "aws-credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("SYNCD_T_ID", raising=False)
    monkeypatch.setenv("SYNCD_T_AZ", f"AccountName=acct;AccountKey={KEY};EndpointSuffix=x")
    (tmp_path / "gcp.json").write_text('{"type": "service_account", "private_key": "PRIVATE"')
    return parse_config(CLOUD, "syncd.yaml", base_dir=tmp_path)


def test_check_config_reports_what_the_environment_makes_wrong(cloud: Config) -> None:
    base = cloud.base_dir
    assert check_config(cloud) == [
        "syncd.yaml:2:40: integrations[0].profile: AWS profile 'labelling' is not in the AWS "
        "config files (known: labeling)",
        "syncd.yaml:2:66: integrations[0].access_key_id: secret reference env:SYNCD_T_ID: "
        "environment variable SYNCD_T_ID is not set",
        "syncd.yaml:3:25: integrations[0].secret_access_key: secret reference file:aws-secret: "
        f"cannot read {base / 'aws-secret'}: No such file or directory",
        "syncd.yaml:4:50: integrations[1].credentials_file: the secret from file:gcp.json is not "
        "JSON (Expecting ',' delimiter at line 1 column 53)",
        "syncd.yaml:11:45: drivers[3].bucket: cannot find the home directory ~syncd-no-such-user",
    ]
    assert "PRIVATE" not in "\n".join(check_config(cloud))


def test_check_config_without_secrets_reads_none(cloud: Config) -> None:
    assert [line.split(": ")[1] for line in check_config(cloud, resolve_secrets=False)] == [
        "integrations[0].profile",
        "drivers[3].bucket",
    ]


def test_check_driver_reports_its_driver_and_integration_only(cloud: Config) -> None:
    assert check_driver(cloud, "blobs") == []
    assert [line.split(": ")[1] for line in check_driver(cloud, "pics")] == [
        "integrations[1].credentials_file"
    ]
    with pytest.raises(ConfigError, match="unknown driver 'nope'"):
        check_driver(cloud, "nope")


@pytest.mark.parametrize(
    ("connection_string", "problem"),
    [
        ("AccountName=acct;junk", "is not Key=Value pairs separated by ';' (part 2 has no '=')"),
        ("BlobEndpoint=https://h/", "has no credential: it needs AccountName and AccountKey"),
        ("SharedAccessSignature=sv=1&sig=SECRETSIG", "has no endpoint: it needs BlobEndpoint"),
        (
            "BlobEndpoint=h;SharedAccessSignature=sig=SECRETSIG",
            "has a BlobEndpoint that is not an http(s) URL with a host",
        ),
        ("AccountName=acct;AccountKey=SECRET!", "has an AccountKey that is not base64"),
        ("", "is empty"),
        ("UseDevelopmentStorage=true", None),
        (f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={KEY}", None),
        ("BlobEndpoint=http://127.0.0.1:10000/a;SharedAccessSignature=sv=1&sig=SECRETSIG", None),
    ],
)
def test_azure_connection_strings_are_checked_without_quoting_them(
    cloud: Config, monkeypatch: pytest.MonkeyPatch, connection_string: str, problem: str | None
) -> None:
    monkeypatch.setenv("SYNCD_T_AZ", connection_string)
    lines = check_driver(cloud, "blobs")
    if problem is None:
        assert lines == []
        return
    (line,) = lines
    prefix = "syncd.yaml:5:52: integrations[2].connection_string: the secret from env:SYNCD_T_AZ "
    assert line.startswith(prefix + problem), line
    assert "SECRET" not in line


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("[1, 2", "is not JSON (Expecting ',' delimiter at line 1 column 6)"),
        ('{"type": "SECRET"}', 'is not a Google credentials key: its "type" must be '),
        ("[1]", 'is not a Google credentials key: its "type" must be '),
        (
            '{"type": "service_account"}',
            "is a service_account key without client_email, private_key",
        ),
        ('{"type": "authorized_user", "refresh_token": "SECRET"}', None),
    ],
)
def test_gcs_credentials_are_checked_without_quoting_them(
    cloud: Config, content: str, problem: str | None
) -> None:
    (cloud.base_dir / "gcp.json").write_text(content)
    lines = check_driver(cloud, "pics")
    if problem is None:
        assert lines == []
        return
    (line,) = lines
    prefix = "syncd.yaml:4:50: integrations[1].credentials_file: the secret from file:gcp.json "
    assert line.startswith(prefix + problem), line
    assert "SECRET" not in line


def test_a_complete_service_account_key_passes(cloud: Config) -> None:
    key = {"type": "service_account", "client_email": "a@b", "private_key": "k", "token_uri": "t"}
    (cloud.base_dir / "gcp.json").write_text(json.dumps(key))
    assert check_driver(cloud, "pics") == []


def test_a_config_made_in_code_has_unlocated_check_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYNCD_T_ID", raising=False)
    config = Config(
        integrations=(
            Integration(
                name="s",
                provider="s3",
                access_key_id=SecretRef("env:SYNCD_T_ID"),
                secret_access_key=SecretRef("env:SYNCD_T_ID"),
            ),
        )
    )
    assert check_config(config) == [
        "<config>: integrations[0].access_key_id: secret reference env:SYNCD_T_ID: environment "
        "variable SYNCD_T_ID is not set",
        "<config>: integrations[0].secret_access_key: secret reference env:SYNCD_T_ID: "
        "environment variable SYNCD_T_ID is not set",
    ]


TARGETS = """\
integrations:
  - {{name: disk, provider: local}}
drivers:
  - {{name: a, integration: disk, bucket: ./a}}
datasets:
  - {{name: d, drivers: [a]}}
targets:
{targets}
"""


def test_targets_are_checked_against_datasets_and_each_other() -> None:
    good = "  - {name: ls, kind: labelstudio, url: 'https://ls.example', token: env:T, project: 3, dataset: d}"
    config = parse_config(TARGETS.format(targets=good))
    assert config.target("ls").project == 3 and config.target("ls").batch == 1000
    with pytest.raises(ConfigError, match=r"unknown target 'nope' \(known: ls\)"):
        config.target("nope")
    assert errors(TARGETS.format(targets=good.replace("dataset: d", "dataset: x"))) == [
        "cfg.yaml:8:97: targets[0].dataset: unknown dataset 'x' (known: d)"
    ]
    assert errors(TARGETS.format(targets=f"{good}\n{good}"))[0].endswith(
        "targets[1].name: duplicate target name 'ls' (first used by targets[0])"
    )
    secret = errors(TARGETS.format(targets=good.replace("env:T", "abc123")))
    assert "secrets are references, not values" in secret[0] and "abc123" not in secret[0]
    assert "kind" in errors(TARGETS.format(targets=good.replace("labelstudio", "labelbox")))[0]


INVENTORY = """\
integrations:
  - {{name: disk, provider: local}}
  - {{name: aws, provider: s3}}
  - {{name: az, provider: azure, account_url: "https://acct.blob.core.windows.net"}}
drivers:
  - {{name: a, integration: {integration}, bucket: b, listing: inventory{block}}}
datasets:
  - {{name: d, drivers: [a]}}
"""


def test_inventory_listing_is_checked() -> None:
    good = ", inventory: {bucket: inv, prefix: 'inv/b/daily', margin: 30m}"
    config = parse_config(INVENTORY.format(integration="aws", block=good))
    inventory = config.driver("a").inventory
    assert inventory is not None and inventory.prefix == "inv/b/daily/"
    assert inventory.margin == 1800 and inventory.memory_limit == "512MB"
    assert "needs an `inventory:` block" in errors(INVENTORY.format(integration="aws", block=""))[0]
    assert errors(INVENTORY.format(integration="disk", block=good)) == [
        "cfg.yaml:6:54: drivers[0].listing: a local folder has no inventory reports"
    ]
    assert (
        "Azure Blob Inventory needs the rule's name"
        in (errors(INVENTORY.format(integration="az", block=good))[0])
    )
    bad_memory = good.replace("margin: 30m", "memory_limit: lots")
    assert "memory_limit" in errors(INVENTORY.format(integration="aws", block=bad_memory))[0]
