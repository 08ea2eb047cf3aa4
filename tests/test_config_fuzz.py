"""Fuzzing the config reader: whatever the file holds, the answer is a Config or one
ConfigError whose every line is located; and a config it accepts is one a run can use."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncd.config import Config, check_config, load_config, parse_config
from syncd.errors import ConfigError
from syncd.storage import key_filter

SOURCE = "fuzz.yaml"
UNSET = "SYNCD_FUZZ_NEVER_SET"
POSITION = re.compile(r":(\d+):(\d+): \S")

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_located(lines: list[str], source: str = SOURCE) -> None:
    """Every line is `SOURCE:LINE:COLUMN: ...` (or `SOURCE: ...`), in file order."""
    positions = []
    for line in lines:
        found = POSITION.match(line, len(source)) if line.startswith(source) else None
        assert found or line.startswith(f"{source}: "), line
        positions.append((int(found[1]), int(found[2])) if found else (0, 0))
    assert positions == sorted(positions), "the lines are not in file order"


# Pieces of YAML, and of what breaks it, that arbitrary text rarely reaches alone.
WORDS = "drivers integrations datasets name bucket 0x_ 2024-13-45 1e3 .inf ~ --- ... ? | >"
SYNTAX = [":", ": ", " ", "\n", "  ", "- ", "[", "]", "{", "}", ",", "'", '"', "#", "é", "😀"]
TAGS = ["&a ", "*a", "<<: ", "!!int ", "!!timestamp ", "!!binary ", "!!set ", "!foo ", "%YAML 1.1"]
ODD = ["\\0", "\\x1b", "\t", "\r", "\x85", "\u2028", "\ufeff", "\x00", "\x7f", "$$", "${X}"]
PIECES = st.sampled_from([*WORDS.split(), *SYNTAX, *TAGS, *ODD, f"${{{UNSET}}}"])
TEXTS = st.one_of(st.text(), st.lists(PIECES, max_size=40).map("".join))


@FAST
@given(TEXTS)
def test_any_text_gives_a_config_or_a_located_config_error(text: str) -> None:
    try:
        parse_config(text, SOURCE)
    except ConfigError as exc:
        assert_located(str(exc).splitlines())


@FAST
@given(
    st.one_of(
        st.binary(),
        TEXTS.map(lambda text: text.encode("utf-8", "surrogatepass")),
        st.tuples(TEXTS, st.binary(max_size=4), TEXTS).map(
            lambda parts: parts[0].encode("utf-8", "surrogatepass") + parts[1] + parts[2].encode()
        ),
    )
)
def test_any_bytes_give_a_config_or_a_located_config_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.getbasetemp() / SOURCE
    path.write_bytes(data)
    try:
        load_config(str(path))
    except ConfigError as exc:
        assert_located(str(exc).splitlines(), str(path))


@dataclass
class Doc:
    """A config written piece by piece, with the locations of the mistakes put in it."""

    lines: list[str] = field(default_factory=list)
    #: What parse_config must report.
    mistakes: list[str] = field(default_factory=list)
    #: What only check_config can tell (the config parses).
    unusable: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


@dataclass
class Maker:
    """Draws each value valid or not; an invalid draw records where it must be reported."""

    draw: st.DrawFn
    doc: Doc
    #: A mistake is made one time in `odds` (never when 0): documents range from clean to
    #: riddled.
    odds: int

    def slip(self) -> bool:
        return self.odds > 0 and self.draw(st.integers(1, self.odds)) == 1

    def mistake(self, loc: str) -> None:
        self.doc.mistakes.append(loc)

    def pick(self, loc: str, good: list[Any], bad: list[Any]) -> Any:
        if self.slip():
            self.mistake(loc)
            return self.draw(st.sampled_from(bad))
        return self.draw(st.sampled_from(good))

    def maybe(
        self, pairs: list[tuple[str, Any]], loc: str, key: str, good: list[Any], bad: list[Any]
    ) -> None:
        """Half the time, add the optional field `key`."""
        if self.draw(st.booleans()):
            pairs.append((key, self.pick(f"{loc}.{key}", good, bad)))

    def reference(self, loc: str, known: list[Any], unknown: str) -> str:
        names = [name for name in known if isinstance(name, str)]
        if not names:
            self.mistake(loc)
            return unknown
        return str(self.pick(loc, names, [unknown]))

    def mapping(self, loc: str, pairs: list[tuple[str, Any]]) -> str:
        """A flow mapping; maybe with an unknown field or a key written twice."""
        pairs = list(pairs)
        if self.slip():
            pairs.append(("bukcet", "x"))
            self.mistake(f"{loc}.bukcet")
        if pairs and self.slip():
            key, value = self.draw(st.sampled_from(pairs))
            pairs.append((key, value))
            self.mistake(f"{loc}.{key}")
        return "{" + ", ".join(f"{key}: {json.dumps(value)}" for key, value in pairs) + "}"


# Longer than any good name, so an unknown reference never names something by chance.
GOOD_NAMES = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,8}", fullmatch=True)
BAD_NAMES = ["", "-x", "a b", "x" * 64, 5, None, "é"]
URLS = ["http://localhost:9000", "https://s3.example.com", "http://[::1]:9000", "http://10.0.0.1/"]
BAD_URLS = ["localhost:9000", "ftp://h", "http://", "http://h:99999", "http://u:p@h", "http://a_b"]
REGIONS = ["us-east-1", "auto", "garage", "eu-west-4"]
BAD_REGIONS = ["us_east", "123", "-x", "", "a b", 7]
# `FOLDER/**` excludes are compiled a second time, without the `/**`, to prune folders.
GLOBS = ["*.jpg", "scans/**/*.dcm", "[abc]*", "[!x]?", "a[", "**", "tmp/**", "/[ab]x/**"]
BAD_GLOBS = ["[z-a]", "[]", "[!]", "", "[\\]", 3, "[z-a]/**", "[]/**"]
TEMPLATES = ["https://h/{bucket}/{key}", "{raw_key!s:>5}", "x{{y}}{driver}{region}", "plain"]
BAD_TEMPLATES = ["{bukcet}", "{}", "{0}", "{key", "key}", "{key:d}", "{key.upper}", "{key!x}"]
MAX_DELETES = ["10%", 250, "0%", 0.5, {"count": 3}]
BAD_MAX_DELETES = ["lots", "150%", -1, True]


def integration(make: Maker, index: int) -> tuple[str, Any]:
    loc = f"integrations[{index}]"
    name = make.pick(f"{loc}.name", [make.draw(GOOD_NAMES)], BAD_NAMES)
    provider = make.pick(f"{loc}.provider", ["local", "s3", "gcs", "azure"], ["floppy", 3])
    pairs: list[tuple[str, Any]] = [("name", name), ("provider", provider)]
    if provider == "s3":
        make.maybe(pairs, loc, "region", REGIONS, BAD_REGIONS)
        make.maybe(pairs, loc, "endpoint_url", URLS, BAD_URLS)
        if make.slip():
            pairs.append(("secret_access_key", "env:AWS_SECRET"))
            make.mistake(f"{loc}.secret_access_key")
        elif make.draw(st.booleans()):
            secret = make.pick(f"{loc}.access_key_id", ["env:AWS_KEY"], ["AKIAEXAMPLE", 5])
            pairs += [("access_key_id", secret), ("secret_access_key", "file:secrets/aws")]
    elif provider == "azure":
        if make.slip():
            make.doc.unusable.append(f"{loc}.provider")
        else:
            pairs.append(("account_url", make.pick(f"{loc}.account_url", URLS, BAD_URLS)))
            pairs.append(("sas_token", "env:AZ_SAS"))
    elif provider == "gcs":
        secret = make.pick(f"{loc}.credentials_file", ["file:k.json", "env:GCS_KEY"], ["{}"])
        pairs.append(("credentials_file", secret))
    return make.mapping(loc, pairs), name


def driver(make: Maker, index: int, integrations: list[Any]) -> tuple[str, Any]:
    loc = f"drivers[{index}]"
    name = make.pick(f"{loc}.name", [make.draw(GOOD_NAMES)], BAD_NAMES)
    uses = make.reference(f"{loc}.integration", integrations, "unknown-integration")
    pairs: list[tuple[str, Any]] = [("name", name), ("integration", uses)]
    if make.slip():
        make.mistake(f"{loc}.bucket")
    else:
        bad_buckets = ["", 5, None, f"${{{UNSET}}}"]
        pairs.append(("bucket", make.pick(f"{loc}.bucket", ["./b", "my-bucket"], bad_buckets)))
    for key in ("include", "exclude"):
        if make.draw(st.booleans()):
            count = make.draw(st.integers(0, 3))
            pairs.append((key, [make.pick(f"{loc}.{key}", GLOBS, BAD_GLOBS) for _ in range(count)]))
    make.maybe(pairs, loc, "max_delete", MAX_DELETES, BAD_MAX_DELETES)
    make.maybe(pairs, loc, "fan_out", [1, 8, 64], [0, 65, "x", 1.5])
    make.maybe(pairs, loc, "region", REGIONS, BAD_REGIONS)
    make.maybe(pairs, loc, "content_hash", ["none", "md5", "sha256"], ["crc"])
    return make.mapping(loc, pairs), name


def dataset(make: Maker, index: int, drivers: list[Any]) -> tuple[str, Any]:
    loc = f"datasets[{index}]"
    name = make.pick(f"{loc}.name", [make.draw(GOOD_NAMES)], BAD_NAMES)
    count = make.draw(st.integers(0 if make.slip() else 1, 3))
    if count == 0:
        make.mistake(f"{loc}.drivers")
    uses = [make.reference(f"{loc}.drivers[{n}]", drivers, "unknown-driver") for n in range(count)]
    return make.mapping(loc, [("name", name), ("drivers", uses)]), name


def section(make: Maker, title: str, build: Callable[[int], tuple[str, Any]]) -> list[Any]:
    """A section of up to three entries; a name used twice is a mistake where it comes again."""
    make.doc.lines.append(f"{title}:")
    names: list[Any] = []
    for index in range(make.draw(st.integers(0, 3))):
        text, name = build(index)
        make.doc.lines.append(f"  - {text}")
        if isinstance(name, str) and name in names:
            make.mistake(f"{title}[{index}].name")
        names.append(name)
    if not names:
        make.doc.lines[-1] += " []"
    return names


@st.composite
def configs(draw: st.DrawFn) -> Doc:
    doc = Doc()
    make = Maker(draw, doc, draw(st.sampled_from([0, 0, 30, 8])))
    catalog = make.pick("catalog", ["sqlite:///c.db", "postgresql://u@h/db"], ["mysql://h", "x"])
    doc.lines.append(f"catalog: {json.dumps(catalog)}")
    if draw(st.booleans()):
        template = make.pick("manifest.url_template", TEMPLATES, BAD_TEMPLATES)
        doc.lines.append(f"manifest: {make.mapping('manifest', [('url_template', template)])}")
    integrations = section(make, "integrations", lambda n: integration(make, n))
    drivers = section(make, "drivers", lambda n: driver(make, n, integrations))
    section(make, "datasets", lambda n: dataset(make, n, drivers))
    return doc


@FAST
@given(configs())
def test_structured_configs_report_every_mistake_and_accept_the_rest(doc: Doc) -> None:
    assert UNSET not in os.environ
    try:
        config = parse_config(doc.text(), SOURCE)
    except ConfigError as exc:
        message = str(exc)
        assert_located(message.splitlines())
        assert doc.mistakes, f"a valid config was refused:\n{doc.text()}\n{message}"
        for loc in doc.mistakes:
            assert re.search(rf": {re.escape(loc)}[:.\[]", message), (
                f"{loc} missing:\n{doc.text()}\n{message}"
            )
        return
    assert not doc.mistakes, f"mistakes {doc.mistakes} were accepted:\n{doc.text()}"
    usable(config)


def usable(config: Config) -> None:
    """What a run does with a config first must work for any config that was accepted."""
    for found in config.drivers:
        key_filter(found)
        config.integration(found.integration)
    template = config.manifest.url_template
    if template is not None:
        template.format(bucket="b", key="k%20", raw_key="k ", region="r", driver="d")
    list(config.pairs())


@FAST
@given(configs())
def test_an_accepted_config_passes_check_config_without_secrets(doc: Doc) -> None:
    try:
        config = parse_config(doc.text(), SOURCE, base_dir=Path("/nonexistent"))
    except ConfigError:
        return
    lines = check_config(config, resolve_secrets=False)
    assert_located(lines)
    assert [line.split(": ")[1] for line in lines] == doc.unusable
