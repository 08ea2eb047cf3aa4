"""Configuration: integrations, drivers, datasets and the catalog URL, read from `syncd.yaml`.

Secrets never appear in the file: an integration names them by reference (`env:NAME`,
`file:PATH`) or relies on the provider's default credential chain.

Every problem of a file is reported at once, one line each, in file order:
`FILE:LINE:COLUMN: LOCATION: message` (`syncd.yaml:7:5: drivers[1].bucket: ...`), or
`FILE:LINE:COLUMN: message` for the file itself (bytes that are not text, broken YAML).
`parse_config` checks everything the file alone can tell; `check_config` and `check_driver`
check what needs the environment (secrets, AWS profiles), with the same locations.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import itertools
import json
import os
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, core_schema

from syncd.errors import ConfigError

CONFIG_ENV = "SYNCD_CONFIG"
CATALOG_ENV = "SYNCD_CATALOG_URL"
DEFAULT_CONFIG = "syncd.yaml"
DEFAULT_CATALOG = "sqlite:///.syncd/catalog.db"

Provider = Literal["local", "s3", "gcs", "azure"]
Loc = tuple[str | int, ...]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_NAME_RULE = "a name is 1 to 63 letters, digits, '_', '.' or '-', and starts with a letter or digit"
_SECRET = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$")


class SecretRef(str):
    """A reference to a secret (`env:NAME` or `file:PATH`); its value is read only on use."""

    def resolve(self, base_dir: Path | None = None) -> str:
        kind, _, target = self.partition(":")
        if kind == "env":
            value = os.environ.get(target)
            if value is None:
                raise ConfigError(
                    f"secret reference {self}: environment variable {target} is not set"
                )
            return value
        try:
            path = Path(target).expanduser()
        except RuntimeError:
            raise ConfigError(
                f"secret reference {self}: cannot find the home directory {target.split('/')[0]}"
            ) from None
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            return path.read_text(encoding="utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"secret reference {self}: {path} is not UTF-8 text (byte offset {exc.start})"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"secret reference {self}: cannot read {path}: {exc.strerror}"
            ) from exc
        except ValueError as exc:  # a path with a NUL in it
            raise ConfigError(f"secret reference {self}: cannot read {path}: {exc}") from None

    def __repr__(self) -> str:
        return f"SecretRef({str(self)!r})"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(cls, core_schema.str_schema())


def _secret(value: Any) -> SecretRef | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _SECRET.match(value):
        raise ValueError("secrets are references, not values: write env:NAME or file:PATH")
    return SecretRef(value)


Secret = Annotated[SecretRef | None, Field(default=None)]


def _glob(pattern: str) -> str:
    # Imported here: syncd.storage imports this module.
    from syncd.storage.filters import glob_to_regex

    if not pattern:
        raise ValueError("an empty glob matches nothing")
    try:
        glob_to_regex(pattern)
    except re.error as exc:
        # The regex's own words would be about the regex: a set that is empty (`[]`, `[!]`)
        # or ends in a backslash swallows the end-of-pattern anchor, "bad escape \Z".
        why = "a [...] set is empty or ends with a backslash" if "\\Z" in exc.msg else exc.msg
        raise ValueError(f"invalid glob {pattern!r}: {why}") from None
    return pattern


_HOST_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def _url_problem(value: str) -> str | None:
    """Why `value` is not an absolute http(s) URL with a host botocore and the Azure SDK accept."""
    authority = value.partition("://")[2].split("/", 1)[0]
    if "@" in authority:
        # Checked first, and the URL is not repeated: it holds a password.
        return "must not hold a user name or password (use the integration's secret references)"
    if any(char.isspace() for char in value):
        return f"{value!r} contains a space or line break"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        return f"{value!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"expected an http:// or https:// URL, got {value!r}"
    host = parts.hostname
    if not host:
        return f"{value!r} has no host name"
    if port == 0:
        return f"{value!r}: the port must be from 1 to 65535"
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"{value!r}: {host!r} is not an IPv6 address"
        return None
    labels = host.removesuffix(".").split(".")
    if len(host) > 255 or not all(_HOST_LABEL.match(label) for label in labels):
        return f"{value!r}: {host!r} is not a host name (letters, digits, '-' and '.')"
    return None


def _http_url(value: str) -> str:
    problem = _url_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# What botocore accepts as a region name (S3-compatible stores use names such as `auto` or
# `garage`); an underscore or an all-digit name stops the client from being built at all.
_REGION = re.compile(r"(?![0-9]+\Z)(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def _region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(
            f"{value!r} is not a region name: use letters, digits and '-' "
            "(not all digits, no '-' at either end), such as us-east-1 or auto"
        )
    return value


def _account_name(value: str) -> str:
    if not re.fullmatch(r"[a-z0-9]{3,24}", value):
        raise ValueError(
            f"{value!r} is not an Azure storage account name (3 to 24 lowercase letters and digits)"
        )
    return value


def _role_arn(value: str) -> str:
    # STS refuses an ARN shorter than 20 characters before sending anything.
    if not value.startswith("arn:") or value.count(":") < 5 or not 20 <= len(value) <= 2048:
        raise ValueError(f"{value!r} is not a role ARN (arn:aws:iam::123456789012:role/NAME)")
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, str | int | float):
        return value
    raise ValueError(f"expected text, a number or true/false, got {_show(value)}")


Glob = Annotated[str, AfterValidator(_glob)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
Region = Annotated[str, AfterValidator(_region)]
Scalar = Annotated[str | int | float | bool, BeforeValidator(_scalar)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Integration(_Model):
    """Named credentials for one provider."""

    name: str = Field(pattern=_NAME)
    provider: Provider
    # S3 and S3-compatible
    profile: str | None = None
    access_key_id: Secret = None
    secret_access_key: Secret = None
    session_token: Secret = None
    role_arn: Annotated[str, AfterValidator(_role_arn)] | None = None
    endpoint_url: HttpUrl | None = None
    region: Region | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # GCS
    project: str | None = None
    credentials_file: Secret = None
    # Azure
    account_name: Annotated[str, AfterValidator(_account_name)] | None = None
    account_url: HttpUrl | None = None
    connection_string: Secret = None
    account_key: Secret = None
    sas_token: Secret = None

    @field_validator(
        "access_key_id",
        "secret_access_key",
        "session_token",
        "credentials_file",
        "connection_string",
        "account_key",
        "sas_token",
        mode="before",
    )
    @classmethod
    def _is_reference(cls, value: Any) -> SecretRef | None:
        return _secret(value)


class MaxDelete(_Model):
    """Deletes allowed in one run: a fraction of the live items, a count, or both."""

    fraction: float | None = Field(default=None, ge=0, le=1)
    count: int | None = Field(default=None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("max_delete is a percentage ('50%'), a count (1000) or a mapping")
        if isinstance(value, int):
            return {"count": value}
        if isinstance(value, float):
            return {"fraction": value}
        if isinstance(value, str):
            text = value.strip()
            if text.endswith("%"):
                try:
                    percent = float(text[:-1])
                except ValueError:
                    percent = -1.0
                # Written as a comparison that nan fails too.
                if not 0 <= percent <= 100:
                    raise ValueError(f"cannot read {value!r}: write a percentage from 0% to 100%")
                return {"fraction": percent / 100}
            try:
                return {"count": int(text)}
            except ValueError:
                raise ValueError(f"cannot read {value!r}: write '50%' or a whole number") from None
        return value

    def exceeded(self, deletes: int, live: int) -> str | None:
        """The reason `deletes` breaks this limit, or None when allowed."""
        if self.count is not None and deletes > self.count:
            return f"{deletes} deletes exceed max_delete count {self.count}"
        if self.fraction is not None and live and deletes / live > self.fraction:
            return (
                f"{deletes} deletes of {live} live items ({deletes / live:.1%}) exceed "
                f"max_delete {self.fraction:.0%}"
            )
        return None


DEFAULT_SKIP = (".*", "*.part", "*.partial", "*.tmp", "*.crdownload", "*~")


def _duration(value: Any) -> float:
    # Imported here: the daemon's modules import this one.
    from syncd.daemon.schedule import parse_duration

    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 15m or 1d")
    return parse_duration(value)


#: Seconds, written as a number or as `90s`, `15m`, `2h`, `1d`.
Duration = Annotated[float, BeforeValidator(_duration), Field(gt=0)]
#: A duration that may be zero.
Delay = Annotated[float, BeforeValidator(_duration), Field(ge=0)]


def _schedule(value: Any) -> dict[str, Any]:
    from syncd.daemon.schedule import schedule_of

    if not isinstance(value, dict):
        raise ValueError("expected {every: 15m, jitter: 10%} or {cron: '*/15 * * * *'}")
    schedule_of(value)
    return value


class SqsSource(_Model):
    """An SQS queue of S3 notifications (direct, SNS-enveloped or EventBridge bodies)."""

    kind: Literal["sqs"]
    queue_url: HttpUrl
    #: Long-poll seconds per receive (SQS allows up to 20).
    wait: float = Field(default=20.0, ge=0, le=20)
    batch: int = Field(default=10, ge=1, le=10)
    #: How long a received message stays hidden; extended while its batch is applied.
    visibility: Duration = 60.0


class AzureQueueSource(_Model):
    """An Azure Storage queue fed by an Event Grid subscription (messages base64-encoded)."""

    kind: Literal["azure-queue"]
    queue: str = Field(min_length=3, max_length=63)
    #: The integration whose account holds the queue (default: the driver's).
    integration: str | None = None
    batch: int = Field(default=32, ge=1, le=32)
    visibility: Duration = 60.0
    #: Event Grid writes base64; a queue filled by hand may hold plain JSON.
    base64: bool = True
    wait: float = Field(default=5.0, ge=0, le=60)


class PubsubSource(_Model):
    """A Pub/Sub pull subscription of a bucket's notifications."""

    kind: Literal["pubsub"]
    subscription: str = Field(pattern=r"^projects/[^/]+/subscriptions/[^/]+$")
    batch: int = Field(default=100, ge=1, le=1000)
    ack_deadline: Duration = 60.0
    wait: float = Field(default=5.0, ge=0, le=60)


class WatchSource(_Model):
    """A local folder watched for changes (local drivers)."""

    kind: Literal["watch"]
    #: A file is ingested once its size and mtime hold still this long.
    settle: Duration = 2.0
    #: Poll instead of inotify (network filesystems).
    polling: bool = False
    poll_interval: Duration = 1.0


Source = Annotated[
    SqsSource | AzureQueueSource | PubsubSource | WatchSource, Field(discriminator="kind")
]


class Inventory(_Model):
    """Where a driver's inventory reports are delivered (read through its integration).

    S3 Inventory: `bucket` is the destination bucket and `prefix` the folder holding the
    dated report folders (`<destination prefix>/<source bucket>/<configuration id>/`).
    GCS inventory reports: the report config's destination bucket and path (the folder
    holding the `..._manifest.json` files). Azure Blob Inventory: the rule's destination
    container (`prefix` empty) and `rule`, the rule's name.
    """

    bucket: str = Field(min_length=1)
    prefix: str = ""
    #: Azure: the inventory rule whose runs to read.
    rule: str | None = None
    #: A report's rows apply only to items untouched since the report's time minus this
    #: (events that arrived after the report are newer than it).
    margin: Delay = 3600.0
    #: What DuckDB may hold in memory; the rest spills to a temporary folder.
    memory_limit: str = Field(
        default="512MB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$"
    )
    #: Keep a Parquet copy of the driver's catalog rows between merges (beside a SQLite
    #: catalog, or in the user's cache), patched from the change feed: a no-op merge then
    #: reads no catalog table. False: read the catalog in place every time.
    catalog_copy: bool = True

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.lstrip("/")
        return value if not value or value.endswith("/") else value + "/"


class Driver(_Model):
    """One bucket, container or folder (and optional prefix) through one integration."""

    name: str = Field(pattern=_NAME)
    integration: str
    bucket: str = Field(min_length=1, description="bucket, container, or folder path for local")
    prefix: str = ""
    region: Region | None = None
    endpoint_url: HttpUrl | None = None
    include: tuple[Glob, ...] = ()
    exclude: tuple[Glob, ...] = ()
    skip: tuple[Glob, ...] = Field(
        default=DEFAULT_SKIP,
        description="basename patterns never synced (hidden and partial files)",
    )
    follow_symlinks: bool = False
    #: With follow_symlinks, also follow links whose target is outside the folder.
    follow_symlinks_outside: bool = False
    content_hash: Literal["none", "md5", "sha256"] = "none"
    allow_external_delete: bool = True
    max_delete: MaxDelete = Field(default_factory=lambda: MaxDelete(fraction=0.5))
    fan_out: int = Field(default=1, ge=1, le=64, description="concurrent prefix listings")
    versioned: bool = False
    #: Seconds one request may wait for the server's next bytes before it is retried.
    read_timeout: float = Field(default=60.0, gt=0, le=3600)
    #: Seconds a whole listing may take (None: no limit). A billion-object bucket is better
    #: reconciled from its inventory than listed.
    listing_deadline: float | None = Field(default=86_400.0, gt=0)
    #: When `syncd run` reconciles this driver: {every: 15m, jitter: 10%} or {cron: "..."}.
    #: A driver with a `source` is reconciled at `daemon.backfill` when this is not set.
    schedule: Annotated[dict[str, Any], AfterValidator(_schedule)] | None = None
    #: Where `syncd run` receives this driver's changes as they happen.
    source: Source | None = None
    #: `inventory`: reconcile from the newest inventory report (zero LIST calls on the
    #: bucket) instead of listing it.
    listing: Literal["list", "inventory"] = "list"
    inventory: Inventory | None = None
    #: Key-range shards: the keys where each shard after the first begins, ascending. Each
    #: shard is reconciled as its own run (its own lease in `syncd run`), so replicas share
    #: a large driver.
    shards: tuple[str, ...] = Field(default=(), max_length=1023)

    @model_validator(mode="after")
    def _inventory(self) -> Driver:
        if self.listing == "inventory" and self.inventory is None:
            raise ValueError("listing: inventory needs an `inventory:` block (bucket, prefix)")
        return self

    @field_validator("shards")
    @classmethod
    def _shards(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, start in enumerate(value):
            if not start:
                raise ValueError(f"shards[{index}] is empty: the first shard already starts there")
            if index and start <= value[index - 1]:
                raise ValueError(
                    f"shards[{index}] {start!r} does not sort after {value[index - 1]!r}: "
                    "list the boundaries in ascending (UTF-8 byte) order, each once"
                )
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.lstrip("/")


class Dataset(_Model):
    """A named collection of items fed by one or more drivers."""

    name: str = Field(pattern=_NAME)
    drivers: tuple[str, ...] = Field(min_length=1)
    description: str = ""


_TEMPLATE_FIELDS = ("bucket", "key", "raw_key", "region", "driver")


def _template_problem(template: str) -> str | None:
    """Why `template.format(bucket=..., key=..., ...)` would fail for some item, or None."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        if "'}'" in str(exc) and "Single" in str(exc):
            return "a '}' has no '{' (write '}}' for a literal brace)"
        return "a '{' is not closed (write '{{' for a literal brace)"
    fields = ", ".join(_TEMPLATE_FIELDS)
    for _, field, written_spec, conversion in parts:
        if field is None:
            continue
        spec = written_spec or ""
        if field == "" or field.isdigit():
            return f"positional fields such as {{}} are not allowed: name one of {fields}"
        if field not in _TEMPLATE_FIELDS:
            if re.split(r"[.\[]", field, maxsplit=1)[0] in _TEMPLATE_FIELDS:
                return f"{{{field}}}: attribute and index lookups are not allowed"
            close = difflib.get_close_matches(field, _TEMPLATE_FIELDS, n=1)
            hint = f"did you mean {{{close[0]}}}?" if close else f"fields: {fields}"
            return f"unknown field {{{field}}} ({hint})"
        if conversion not in (None, "r", "s", "a"):
            return f"{{{field}!{conversion}}}: the conversion must be !r, !s or !a"
        if "{" in spec:
            return f"{{{field}:{spec}}}: a format spec cannot hold fields"
        # Every field is text, and whether a spec suits text does not depend on the text: one
        # trial decides. A huge width would allocate it, so it is refused first.
        if any(len(digits) > 4 for digits in re.findall(r"\d+", spec)):
            return f"{{{field}:{spec}}}: the width or precision is too large"
        try:
            format("", spec)
        except ValueError as exc:
            return f"{{{field}:{spec}}}: {exc}"
    return None


class ManifestSettings(_Model):
    """How `syncd manifest` groups items and forms their URLs."""

    #: Folder globs (relative to the driver's prefix) whose images form one image group each.
    image_groups: tuple[str, ...] = ()
    #: Folder globs whose images form one image sequence (a video made of frames) each.
    image_sequences: tuple[str, ...] = ()
    #: A regex with a named group `group` that names an item's group instead of its folder.
    group_pattern: str | None = None
    #: A URL per object instead of the store's public form: {bucket}, {key} (encoded),
    #: {raw_key}, {region}, {driver}.
    url_template: str | None = None
    #: An S3 Multi-Region Access Point alias: URLs become ALIAS.accesspoint.s3-global...
    s3_multi_region_alias: str | None = None
    #: Split output files after this many entries (0: one file).
    max_items_per_file: int = Field(default=0, ge=0)
    #: Split output files after about this many bytes (0: no limit).
    max_bytes_per_file: int = Field(default=0, ge=0)
    #: Static fields added to every entry's clientMetadata.
    client_metadata: dict[str, Scalar] = Field(default_factory=dict)
    skip_duplicate_urls: bool = True

    @field_validator("group_pattern")
    @classmethod
    def _pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compiled = re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
            if "group" not in compiled.groupindex:
                raise ValueError("needs a named group (?P<group>...)")
        return value

    @field_validator("url_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        problem = None if value is None else _template_problem(value)
        if problem is not None:
            raise ValueError(f"invalid template {value!r}: {problem}")
        return value


# parse_config checks cross-references on the raw data, alongside the field errors; this
# context tells the model not to check them a second time.
_CROSS_CHECKED = {"cross_checked": True}


class DaemonSettings(_Model):
    """How `syncd run` works: worker threads, leases, backfill, shutdown."""

    #: Reconciles that may run at once (threads).
    workers: int = Field(default=2, ge=1, le=64)
    #: A replica that stops renewing its lease loses it after this long.
    lease_ttl: Duration = 60.0
    #: How often event-driven drivers are still reconciled: notifications can be lost.
    backfill: Duration = 86_400.0
    #: SIGTERM/SIGINT: in-flight work is finished or released within this long.
    shutdown_grace: Duration = 10.0
    #: This replica's name in leases and slots (default: host:pid).
    replica: str | None = None


Scope = Literal["read", "write"]


class ApiToken(_Model):
    """A bearer token the API accepts, and what it may do (`write` implies `read`)."""

    name: str = Field(pattern=_NAME)
    token: Annotated[SecretRef, BeforeValidator(_secret)]
    scopes: tuple[Scope, ...] = ("read",)


class ApiSettings(_Model):
    """The HTTP API `syncd run` serves."""

    #: host:port; 127.0.0.1 unless you mean to expose it (then set tokens).
    listen: str = Field(default="127.0.0.1:8080", pattern=r"^[^\s:]+:\d{1,5}$")
    #: No token: every request is allowed from where `listen` is reachable.
    tokens: tuple[ApiToken, ...] = ()
    #: Origins allowed by CORS (none unless listed).
    cors_origins: tuple[str, ...] = ()
    #: Largest request body, bytes.
    max_body: int = Field(default=10 * 1024 * 1024, ge=1024, le=1024**3)
    #: Pub/Sub push: the audience its OIDC token must carry (None: not verified).
    pubsub_audience: str | None = None


WebhookEvent = Literal["sync.completed", "sync.aborted", "items.changed"]


class Webhook(_Model):
    """An HTTP endpoint told of run ends and changes, signed as Standard Webhooks are."""

    name: str = Field(pattern=_NAME)
    url: HttpUrl
    events: tuple[WebhookEvent, ...] = ("sync.completed", "sync.aborted", "items.changed")
    #: The signing secret: `whsec_` + base64, or any text (used as its UTF-8 bytes).
    secret: Annotated[SecretRef, BeforeValidator(_secret)]
    #: Only these datasets (empty: all).
    datasets: tuple[str, ...] = ()


class LabelStudioTarget(_Model):
    """A Label Studio project kept in step with a dataset by `syncd push`."""

    name: str = Field(pattern=_NAME)
    kind: Literal["labelstudio"]
    #: The server's base URL, e.g. https://labelstudio.example.com
    url: HttpUrl
    #: A personal access token (a JWT, refreshed as Label Studio's docs say) or a legacy token.
    token: Annotated[SecretRef, BeforeValidator(_secret)]
    project: int = Field(ge=1)
    dataset: str
    #: The task data key items go under (default: the label config's input that fits the
    #: item's media kind, or its only input).
    data_key: str | None = Field(default=None, min_length=1, max_length=200)
    #: Tasks imported per request.
    batch: int = Field(default=1000, ge=1, le=10_000)
    #: Seconds one request may take.
    timeout: Duration = 60.0
    #: How often `syncd run` checks the whole project against the dataset (tasks deleted by
    #: hand, a crash mid-push); `syncd push` checks it every time unless --no-verify.
    verify_every: Duration = 3600.0
    #: How often `syncd run` pushes when no commit woke it sooner.
    every: Duration = 60.0


Target = Annotated[LabelStudioTarget, Field(discriminator="kind")]


class Config(_Model):
    catalog: str = DEFAULT_CATALOG
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    #: Served by `syncd run` when set.
    api: ApiSettings | None = None
    webhooks: tuple[Webhook, ...] = ()
    #: Labeling projects `syncd push` keeps in step with datasets.
    targets: tuple[Target, ...] = ()
    manifest: ManifestSettings = Field(default_factory=ManifestSettings)
    integrations: tuple[Integration, ...] = ()
    drivers: tuple[Driver, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    #: Folder relative paths (local drivers, sqlite files, file: secrets) resolve against.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)
    # Where the config came from, for check_config's lines.
    _source: str = PrivateAttr(default="<config>")
    _positions: dict[Loc, tuple[int, int]] = PrivateAttr(default_factory=dict)

    @field_validator("catalog")
    @classmethod
    def _catalog(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            # Not repeated: a PostgreSQL URL may hold a password.
            raise ValueError("expected sqlite:///PATH or postgresql://USER@HOST/DB")
        return value

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> Config:
        if info.context == _CROSS_CHECKED:
            return self
        problems = _cross_checks(
            self.model_dump(include={"integrations", "drivers", "datasets", "targets"})
        )
        if problems:
            raise ConfigError("\n".join(f"{format_loc(loc)}: {msg}" for loc, msg in problems))
        return self

    def integration(self, name: str) -> Integration:
        return next(i for i in self.integrations if i.name == name)

    def target(self, name: str) -> LabelStudioTarget:
        for target in self.targets:
            if target.name == name:
                return target
        known = ", ".join(t.name for t in self.targets) or "none configured"
        raise ConfigError(f"unknown target {name!r} (known: {known})")

    def driver(self, name: str) -> Driver:
        for driver in self.drivers:
            if driver.name == name:
                return driver
        raise ConfigError(f"unknown driver {name!r}")

    def dataset(self, name: str) -> Dataset:
        for dataset in self.datasets:
            if dataset.name == name:
                return dataset
        raise ConfigError(f"unknown dataset {name!r}")

    def catalog_url(self) -> str:
        """The catalog URL, with a relative SQLite path resolved against `base_dir`."""
        url = os.environ.get(CATALOG_ENV) or self.catalog
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/"):
            path = url[len(prefix) :]
            if path != ":memory:":
                return prefix + str((self.base_dir / path).resolve())
        return url

    def pairs(
        self, dataset: str | None = None, driver: str | None = None
    ) -> Iterator[tuple[Dataset, Driver]]:
        """Every (dataset, driver) pair selected by the optional filters, in config order."""
        if dataset is not None:
            self.dataset(dataset)
        if driver is not None:
            self.driver(driver)
        for ds in self.datasets:
            if dataset is not None and ds.name != dataset:
                continue
            for name in ds.drivers:
                if driver is None or name == driver:
                    yield ds, self.driver(name)


def format_loc(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _entries(data: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    items = data.get(section)
    if not isinstance(items, list | tuple):
        return []
    return [(index, item) for index, item in enumerate(items) if isinstance(item, dict)]


def _cross_checks(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Problems between fields and entries: duplicate names, references to names that do not
    exist, settings that only work together. Works on raw data, so that entries with other
    problems are still checked."""
    problems: list[tuple[Loc, str]] = []
    names: dict[str, dict[str, int]] = {}
    for section, kind in (
        ("integrations", "integration"),
        ("drivers", "driver"),
        ("datasets", "dataset"),
    ):
        seen: dict[str, int] = {}
        for index, item in _entries(data, section):
            name = item.get("name")
            if not isinstance(name, str):
                continue
            if name in seen:
                problems.append(
                    (
                        (section, index, "name"),
                        f"duplicate {kind} name {name!r} (first used by {section}[{seen[name]}])",
                    )
                )
            else:
                seen[name] = index
        names[section] = seen
    known = ", ".join(sorted(names["integrations"])) or "none defined"
    for index, driver in _entries(data, "drivers"):
        integration = driver.get("integration")
        if isinstance(integration, str) and integration not in names["integrations"]:
            problems.append(
                (
                    ("drivers", index, "integration"),
                    f"unknown integration {integration!r} (known: {known})",
                )
            )
    providers = {
        item.get("name"): item.get("provider") for _, item in _entries(data, "integrations")
    }
    for index, driver in _entries(data, "drivers"):
        if driver.get("listing") != "inventory":
            continue
        provider = providers.get(driver.get("integration"))
        if provider == "local":
            problems.append(
                (("drivers", index, "listing"), "a local folder has no inventory reports")
            )
        inventory = driver.get("inventory")
        if provider == "azure" and isinstance(inventory, dict) and not inventory.get("rule"):
            problems.append(
                (
                    ("drivers", index, "inventory", "rule"),
                    "Azure Blob Inventory needs the rule's name (its runs are folders per rule)",
                )
            )
    known = ", ".join(sorted(names["drivers"])) or "none defined"
    for index, dataset in _entries(data, "datasets"):
        drivers = dataset.get("drivers")
        for position, name in enumerate(drivers if isinstance(drivers, list | tuple) else ()):
            if isinstance(name, str) and name not in names["drivers"]:
                problems.append(
                    (
                        ("datasets", index, "drivers", position),
                        f"unknown driver {name!r} (known: {known})",
                    )
                )
    for index, integration in _entries(data, "integrations"):
        problems.extend(
            ((("integrations", index, *loc), msg) for loc, msg in _pairing(integration))
        )
    known = ", ".join(sorted(names["datasets"])) or "none defined"
    first_use: dict[str, int] = {}
    for index, target in _entries(data, "targets"):
        wanted = target.get("dataset")
        if isinstance(wanted, str) and wanted not in names["datasets"]:
            problems.append(
                (("targets", index, "dataset"), f"unknown dataset {wanted!r} (known: {known})")
            )
        name = target.get("name")
        if isinstance(name, str):
            if name in first_use:
                problems.append(
                    (
                        ("targets", index, "name"),
                        f"duplicate target name {name!r} (first used by "
                        f"targets[{first_use[name]}])",
                    )
                )
            first_use.setdefault(name, index)
    return problems


def _pairing(integration: dict[str, Any]) -> list[tuple[Loc, str]]:
    """Settings of one integration that the store ignores or refuses unless given together."""
    given = {key for key, value in integration.items() if value is not None}
    provider = integration.get("provider")
    problems: list[tuple[Loc, str]] = []
    if provider == "s3":
        # One key without the other is silently dropped: the default chain would be used.
        for one, other in (
            ("access_key_id", "secret_access_key"),
            ("secret_access_key", "access_key_id"),
        ):
            if one in given and other not in given:
                problems.append(((one,), f"{one} needs {other} too"))
        if "session_token" in given and not {"access_key_id", "secret_access_key"} <= given:
            problems.append(
                (("session_token",), "session_token needs access_key_id and secret_access_key")
            )
    elif (
        provider == "azure"
        and "account_key" in given
        and not given & {"account_name", "connection_string"}
    ):
        problems.append((("account_key",), "account_key needs account_name too"))
    return problems


# What PyYAML reads as text (its reader's printable set): anything else is refused.
_NOT_TEXT = "[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
_NOT_TEXT_CHAR = re.compile(_NOT_TEXT)
# Bytes that were not UTF-8, kept by the surrogateescape decoding as U+DC80..U+DCFF.
_NOT_TEXT_OR_BYTES = re.compile(f"([\udc80-\udcff]+)|{_NOT_TEXT}")
_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_MAX_LISTED = 10


class _Problem(NamedTuple):
    #: The field at fault, or None for the file itself.
    loc: Loc | None
    message: str
    #: (line, column); None: found from `loc` when the lines are written.
    position: tuple[int, int] | None = None
    #: Located at the field's key rather than its value (an unknown field).
    at_key: bool = False


def _position(text: str, index: int) -> tuple[int, int]:
    """The (line, column) of `text[index]`, counted as PyYAML counts them."""
    line, start = 1, 0
    for match in _BREAK.finditer(text, 0, index):
        line, start = line + 1, match.end()
    # PyYAML does not count a byte-order mark as a column.
    return line, len(text[start:index].replace("\ufeff", "")) + 1


def _character(char: str) -> str:
    code = ord(char)
    if code == 0:
        return "a NUL byte (U+0000)"
    if code < 0x20 or 0x7F <= code < 0xA0:
        return f"control character U+{code:04X}"
    return f"character U+{code:04X}"


def _text_problems(text: str, *, undecoded: bool) -> list[_Problem]:
    """What in `text` is not text: characters YAML refuses and, when `undecoded` (decoded
    with surrogateescape), bytes that were not UTF-8. Only the first few are listed."""
    pattern = _NOT_TEXT_OR_BYTES if undecoded else _NOT_TEXT_CHAR
    matches = pattern.finditer(text)
    problems = []
    for match in itertools.islice(matches, _MAX_LISTED):
        if undecoded and match.group(1):
            offset = len(text[: match.start()].encode("utf-8", "surrogateescape"))
            raw = match.group().encode("utf-8", "surrogateescape")
            listed = " ".join(f"0x{byte:02X}" for byte in raw)
            message = (
                f"invalid UTF-8: {'bytes' if len(raw) > 1 else 'byte'} {listed} at offset {offset}"
            )
        else:
            message = f"{_character(match.group())} is not allowed: the file must be UTF-8 text"
        problems.append(_Problem(None, message, _position(text, match.start())))
    following = next(matches, None)
    if following is not None:
        more = 1 + sum(1 for _ in matches)
        problems.append(
            _Problem(
                None,
                f"{more} more such places from here on are not listed",
                _position(text, following.start()),
            )
        )
    return problems


# Aliases share what they point at, so a few hundred bytes of nested aliases can stand for
# billions of nodes once anything walks the document: the walk is refused before that. And
# composing, building and checking a document recurse once per level of nesting.
_MAX_NODES = 100_000
_MAX_DEPTH = 100


class _Refused(yaml.MarkedYAMLError):
    """A document refused before it is built: too large once its aliases expand, too deep."""


_TAG_WORDS = {"int": "a whole number", "float": "a number", "timestamp": "a date"}


class _Loader(yaml.SafeLoader):
    """yaml.safe_load's loader, bounded: in nodes once aliases are expanded, in depth, and
    with a located error (not a bare ValueError) for a value no constructor can build."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._nodes = 0
        self._depth = 0
        # id(node) → nodes it stands for with its aliases expanded, once it is composed.
        self._sizes: dict[int, int] = {}

    def _count(self, nodes: int, mark: yaml.Mark) -> None:
        self._nodes += nodes
        if self._nodes > _MAX_NODES:
            raise _Refused(
                None, None, f"the file expands YAML aliases beyond {_MAX_NODES} nodes", mark
            )

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: yaml.Mark = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            size = self._sizes.get(id(node))
            if size is None:
                raise _Refused(
                    None,
                    None,
                    f"alias *{event.anchor} is used inside its own anchor",
                    mark,
                )
            self._count(size, mark)
            return node
        if self._depth == _MAX_DEPTH:
            raise _Refused(None, None, f"nested deeper than {_MAX_DEPTH} levels", mark)
        before = self._nodes
        self._count(1, mark)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._sizes[id(node)] = self._nodes - before
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            # A value the resolver took for a number or date but is none (0x_, 2024-13-45);
            # under an explicit tag (`!!int`, `!!timestamp`) the constructors index into text
            # they never matched, so any error can come out.
            kind = node.tag.rpartition(":")[2]
            what = _TAG_WORDS.get(kind, f"a valid !!{kind}")
            # Only a date's reason says something to a reader ("month must be in 1..12").
            why = f" ({exc})" if kind == "timestamp" and isinstance(exc, ValueError) else ""
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"{_show(node.value)} is not {what}{why}; quote it if it is text",
                node.start_mark,
            ) from None


_MERGE = "tag:yaml.org,2002:merge"


def _start(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Layout:
    """Where each value and each mapping key of a YAML document starts, by its location;
    and the duplicate keys, which loading would silently drop."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.values: dict[Loc, tuple[int, int]] = {}
        self.keys: dict[Loc, tuple[int, int]] = {}
        self.duplicates: list[_Problem] = []
        self._checked: set[int] = set()
        if root is not None:
            self._visit(root, ())

    def _visit(self, node: yaml.Node, loc: Loc) -> None:
        self.values[loc] = _start(node)
        if isinstance(node, yaml.SequenceNode):
            for index, child in enumerate(node.value):
                self._visit(child, (*loc, index))
        elif isinstance(node, yaml.MappingNode):
            if id(node) not in self._checked:
                # An aliased mapping is checked once, where it is written.
                self._checked.add(id(node))
                self._check_duplicates(node, loc)
            for key, (key_node, value_node) in self._pairs(node).items():
                self.keys[(*loc, key)] = _start(key_node)
                self._visit(value_node, (*loc, key))

    def _pairs(self, node: yaml.MappingNode) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """The mapping's entries as loading makes them: later keys win, then merged ones."""
        pairs: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        merged: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else []
                merged.extend(sources or [value_node])
            elif isinstance(key_node, yaml.ScalarNode):
                pairs[key_node.value] = (key_node, value_node)
        for source in merged:
            if isinstance(source, yaml.MappingNode):
                for key, pair in self._pairs(source).items():
                    pairs.setdefault(key, pair)
        return pairs

    def _check_duplicates(self, node: yaml.MappingNode, loc: Loc) -> None:
        first: dict[str, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            if key in first:
                self.duplicates.append(
                    _Problem(
                        (*loc, key),
                        f"duplicate key {key!r} (first at line {first[key]})",
                        _start(key_node),
                    )
                )
            else:
                first[key] = key_node.start_mark.line + 1


def _where(
    problem: _Problem, values: dict[Loc, tuple[int, int]], keys: dict[Loc, tuple[int, int]]
) -> tuple[int, int] | None:
    if problem.position is not None or problem.loc is None:
        return problem.position
    if problem.at_key and problem.loc in keys:
        return keys[problem.loc]
    # A missing field is located at the mapping that lacks it.
    for length in range(len(problem.loc), -1, -1):
        found = values.get(problem.loc[:length])
        if found is not None:
            return found
    return None


def _render(
    source: str,
    problems: list[_Problem],
    values: dict[Loc, tuple[int, int]],
    keys: dict[Loc, tuple[int, int]] | None = None,
) -> list[str]:
    """One line per problem, in file order; the file-wide ones (no position) first."""
    located = [(_where(problem, values, keys or {}), problem) for problem in problems]
    located.sort(key=lambda pair: pair[0] or (0, 0))
    lines: list[str] = []
    for position, problem in located:
        where = f"{source}:{position[0]}:{position[1]}" if position else source
        field = f"{format_loc(problem.loc)}: " if problem.loc is not None else ""
        # One line each, whatever a message quotes.
        line = f"{where}: {field}{' '.join(problem.message.splitlines())}"
        if line not in lines:
            lines.append(line)
    return lines


def _failure(
    source: str,
    problems: list[_Problem],
    values: dict[Loc, tuple[int, int]] | None = None,
    keys: dict[Loc, tuple[int, int]] | None = None,
) -> ConfigError:
    return ConfigError("\n".join(_render(source, problems, values or {}, keys)))


def _show(value: Any) -> str:
    """A value from the file as the message quotes it."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple | set | frozenset):
        return "a list"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else repr(value[:57]) + "..."
    text = repr(value) if isinstance(value, int | float) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model whose fields are at `loc` (`("drivers", 1)` → Driver), if any."""
    model: type[BaseModel] = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return None
        model = inner
    return model


def _fields_at(loc: Loc) -> list[str]:
    model = _model_at(loc)
    if model is None:
        return []
    return [name for name, field in model.model_fields.items() if not field.exclude]


def _choices(loc: Loc) -> list[str]:
    model = _model_at(loc[:-1])
    field = model.model_fields.get(str(loc[-1])) if model is not None and loc else None
    pending = [field.annotation] if field is not None else []
    while pending:
        annotation = pending.pop()
        if get_origin(annotation) is Literal:
            return [str(choice) for choice in get_args(annotation)]
        pending.extend(get_args(annotation))
    return []


def _unknown_field(loc: Loc) -> str:
    name = str(loc[-1])
    known = _fields_at(loc[:-1])
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known fields: {', '.join(known)}"
    return f"unknown field {name!r} ({hint})"


_EXPECTED = {
    "string_type": "text",
    "string_unicode": "UTF-8 text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "int_parsing_size": "a whole number of a usual size",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}
_BOUNDS = {
    "greater_than_equal": ("ge", "at least"),
    "greater_than": ("gt", "more than"),
    "less_than_equal": ("le", "at most"),
    "less_than": ("lt", "less than"),
}


def _translate(error: ErrorDetails) -> _Problem:
    """A pydantic error in words a user of the file understands."""
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    context = error.get("ctx") or {}
    if kind == "extra_forbidden":
        return _Problem(loc, _unknown_field(loc), at_key=True)
    if kind == "invalid_key" or (loc and loc[-1] == "[key]"):
        # A mapping key that is not text: pydantic reports the key itself.
        loc = loc[:-1] if loc and loc[-1] == "[key]" else loc
        return _Problem(loc, f"names must be text, got {_show(value)}", at_key=True)
    field = str(loc[-1]) if loc else ""
    if kind == "missing":
        message = f"required field {field!r} is missing"
    elif kind == "literal_error":
        choices = ", ".join(_choices(loc)) or str(context.get("expected"))
        message = f"{_show(value)} is not one of: {choices}"
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {_show(value)}"
        if kind == "string_type" and isinstance(value, int | float):
            message += " (put it in quotes)"
    elif kind == "string_pattern_mismatch" and field == "name":
        message = f"{_NAME_RULE}; got {_show(value)}"
    elif kind == "string_too_short":
        message = "must not be empty"
    elif kind == "too_short":
        entry = field.removesuffix("s") if field.endswith("s") else "entry"
        message = f"must list at least one {entry}"
    elif kind in _BOUNDS:
        bound, words = _BOUNDS[kind]
        message = f"must be {words} {context.get(bound)}, got {_show(value)}"
    elif kind == "finite_number":
        message = f"must be a finite number, got {_show(value)}"
    elif kind in ("value_error", "assertion_error") and "error" in context:
        message = str(context["error"])
    else:
        message = error["msg"]
    return _Problem(loc, message)


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")


def _interpolate(value: Any, loc: Loc, problems: list[_Problem]) -> Any:
    """Replace `${NAME}` and `${NAME:-default}` in string values from the environment, and
    refuse values that are not text (YAML escapes such as "\\0", or the environment's values).

    `$$` is a literal `$`. A secret still has to be a reference: a value that came from the
    environment is checked like any other.
    """
    if isinstance(value, dict):
        return {
            k: _interpolate(v, (*loc, k if isinstance(k, str | int) else str(k)), problems)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, (*loc, n), problems) for n, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name)
        if found is not None:
            return found
        if default is not None:
            return default
        problems.append(_Problem(loc, f"environment variable {name} is not set"))
        return ""

    text = _VARIABLE.sub(substitute, value) if "$" in value else value
    bad = _NOT_TEXT_CHAR.search(text)
    if bad is not None:
        problems.append(
            _Problem(loc, f"contains {_character(bad.group())}, which a value cannot hold")
        )
    return text


def _yaml_problem(exc: yaml.MarkedYAMLError) -> _Problem:
    mark = exc.problem_mark or exc.context_mark
    position = (mark.line + 1, mark.column + 1) if mark is not None else None
    if isinstance(exc, _Refused):
        return _Problem(None, str(exc.problem), position)
    what = exc.problem or exc.context or "cannot be read"
    context_mark = exc.context_mark
    if exc.context and exc.problem:
        since = ""
        if context_mark is not None and mark is not None and context_mark.line != mark.line:
            since = f" (from line {context_mark.line + 1})"
        what = f"{exc.context}{since}: {exc.problem}"
    return _Problem(None, f"invalid YAML: {what}", position)


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Parse and validate YAML text; raise one `ConfigError` with a located line for every
    problem, in file order."""
    problems = _text_problems(text, undecoded=False)
    if problems:
        raise _failure(source, problems)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        # Before construction, which rewrites merge keys in place.
        layout = _Layout(root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        raise _failure(source, [_yaml_problem(exc)]) from None
    finally:
        loader.dispose()
    problems = list(layout.duplicates)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(
            _Problem(None, f"the top level must be a mapping, not {_show(data)}", layout.values[()])
        )
        raise _failure(source, problems, layout.values)
    value_problems: list[_Problem] = []
    data = _interpolate(data, (), value_problems)
    problems += value_problems
    if "base_dir" in data:
        # Set by the caller (the file's folder), never by the file.
        del data["base_dir"]
        problems.append(_Problem(("base_dir",), _unknown_field(("base_dir",)), at_key=True))
    problems += [_Problem(loc, message) for loc, message in _cross_checks(data)]
    reported = {problem.loc for problem in value_problems}
    config = None
    try:
        config = Config.model_validate(
            {**data, "base_dir": base_dir or Path.cwd()}, context=_CROSS_CHECKED
        )
    except ValidationError as exc:
        # A value already reported (an unset variable left it empty) is not reported twice.
        problems += [
            _translate(error) for error in exc.errors() if tuple(error["loc"]) not in reported
        ]
    if config is None or problems:
        raise _failure(source, problems, layout.values, layout.keys)
    config._source = source
    config._positions = layout.values
    return config


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(explicit: str | None = None) -> Config:
    """Read the config named by `--config`, `$SYNCD_CONFIG`, or `./syncd.yaml`."""
    path = config_path(explicit)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (run `syncd init` to write one)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        undecoded = data.decode("utf-8", "surrogateescape")
        raise _failure(str(path), _text_problems(undecoded, undecoded=True)) from None
    return parse_config(text, str(path), base_dir=path.resolve().parent)


_GCS_KEY_TYPES = ("service_account", "authorized_user", "external_account")


def _connection_string_problem(text: str) -> str | None:
    """Why the Azure SDK would refuse this connection string (as it parses one), or None."""
    settings: dict[str, str] = {}
    for number, part in enumerate(text.rstrip(";").split(";"), 1):
        key, equals, value = part.partition("=")
        if not equals:
            return f"is not Key=Value pairs separated by ';' (part {number} has no '=')"
        settings[key.upper()] = value
    if settings.get("USEDEVELOPMENTSTORAGE") == "true":
        return None
    with_key = "ACCOUNTNAME" in settings and "ACCOUNTKEY" in settings
    if not with_key and "SHAREDACCESSSIGNATURE" not in settings:
        return "has no credential: it needs AccountName and AccountKey, or SharedAccessSignature"
    if "BLOBENDPOINT" not in settings and "ACCOUNTNAME" not in settings:
        return "has no endpoint: it needs BlobEndpoint or AccountName"
    if "BLOBENDPOINT" in settings and _url_problem(settings["BLOBENDPOINT"]) is not None:
        return "has a BlobEndpoint that is not an http(s) URL with a host"
    if with_key and not _is_base64(settings["ACCOUNTKEY"]):
        return "has an AccountKey that is not base64"
    return None


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text)
    except binascii.Error:
        return False
    return True


def _credentials_problem(text: str) -> str | None:
    """Why this is not a Google credentials key; never quotes it."""
    try:
        info = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        return "is not JSON (nested too deeply)"
    kind = info.get("type") if isinstance(info, dict) else None
    if kind not in _GCS_KEY_TYPES:
        return f'is not a Google credentials key: its "type" must be {", ".join(_GCS_KEY_TYPES)}'
    if kind == "service_account":
        missing = [
            name
            for name in ("client_email", "private_key", "token_uri")
            if not isinstance(info.get(name), str)
        ]
        if missing:
            return f"is a service_account key without {', '.join(missing)}"
    return None


def _secret_problem(field: str, value: str) -> str | None:
    if not value:
        return "is empty"
    if field == "connection_string":
        return _connection_string_problem(value)
    if field == "credentials_file":
        return _credentials_problem(value)
    if field == "account_key" and not _is_base64(value):
        return "is not base64"
    return None


_SECRET_FIELDS = (
    "access_key_id",
    "secret_access_key",
    "session_token",
    "credentials_file",
    "connection_string",
    "account_key",
    "sas_token",
)


def _profile_problem(profile: str) -> str | None:
    try:
        # Imported only here: it is slow to import and only S3 integrations need it.
        import botocore.exceptions
        import botocore.session
    except ImportError:
        return "an AWS profile needs boto3: pip install 'syncd[s3]'"
    try:
        known = set(botocore.session.Session().available_profiles)
    except botocore.exceptions.BotoCoreError as exc:
        return f"cannot read the AWS config files: {exc}"
    if profile in known:
        return None
    listed = ", ".join(sorted(known)) or "none"
    return f"AWS profile {profile!r} is not in the AWS config files (known: {listed})"


def _integration_problems(config: Config, index: int, resolve_secrets: bool) -> list[_Problem]:
    integration = config.integrations[index]
    at: Loc = ("integrations", index)
    problems: list[_Problem] = []
    # Only a store needs to know where the account is: event handlers route without one.
    if integration.provider == "azure" and not (
        integration.connection_string or integration.account_name or integration.account_url
    ):
        problems.append(
            _Problem(
                (*at, "provider"),
                "an azure store needs connection_string, account_name or account_url",
            )
        )
    if integration.provider == "s3" and integration.profile is not None:
        problem = _profile_problem(integration.profile)
        if problem is not None:
            problems.append(_Problem((*at, "profile"), problem))
    if not resolve_secrets:
        return problems
    for field in _SECRET_FIELDS:
        reference: SecretRef | None = getattr(integration, field)
        if reference is None:
            continue
        try:
            value = reference.resolve(config.base_dir)
        except ConfigError as exc:
            problems.append(_Problem((*at, field), str(exc)))
            continue
        problem = _secret_problem(field, value)
        if problem is not None:
            problems.append(_Problem((*at, field), f"the secret from {reference} {problem}"))
    return problems


def _driver_problems(config: Config, index: int) -> list[_Problem]:
    driver = config.drivers[index]
    if config.integration(driver.integration).provider == "local":
        try:
            Path(driver.bucket).expanduser()
        except RuntimeError:
            return [
                _Problem(
                    ("drivers", index, "bucket"),
                    f"cannot find the home directory {driver.bucket.split('/')[0]}",
                )
            ]
    return []


def check_config(config: Config, *, resolve_secrets: bool = True) -> list[str]:
    """What keeps a valid config's stores from opening, as located lines in file order (empty
    when nothing does): secrets that cannot be read or are not what their field needs, AWS
    profiles the AWS config files do not know, an Azure account given nowhere, a home
    directory that does not exist. Never quotes a secret's value.

    With `resolve_secrets=False` no secret is read.
    """
    problems: list[_Problem] = []
    for index in range(len(config.integrations)):
        problems += _integration_problems(config, index, resolve_secrets)
    for index in range(len(config.drivers)):
        problems += _driver_problems(config, index)
    return _render(config._source, problems, config._positions)


def check_driver(config: Config, driver_name: str) -> list[str]:
    """`check_config`'s lines about one driver and its integration, for a run to decide
    whether to open that driver's store."""
    driver = config.driver(driver_name)
    index = config.drivers.index(driver)
    used = config.integrations.index(config.integration(driver.integration))
    problems = _integration_problems(config, used, True) + _driver_problems(config, index)
    return _render(config._source, problems, config._positions)
