"""Configuration: integrations, drivers, datasets and the catalog URL, read from `syncd.yaml`.

Secrets never appear in the file: an integration names them by reference (`env:NAME`,
`file:PATH`) or relies on the provider's default credential chain. Every validation error is
reported with its location (`drivers[2].bucket`) and, when the file is YAML, its line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import core_schema

from syncd.errors import ConfigError

CONFIG_ENV = "SYNCD_CONFIG"
CATALOG_ENV = "SYNCD_CATALOG_URL"
DEFAULT_CONFIG = "syncd.yaml"
DEFAULT_CATALOG = "sqlite:///.syncd/catalog.db"

Provider = Literal["local", "s3", "gcs", "azure"]
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
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
        path = Path(target).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            return path.read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"secret reference {self}: cannot read {path}: {exc.strerror}"
            ) from exc

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
    role_arn: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: Literal["auto", "path", "virtual"] = "auto"
    # GCS
    project: str | None = None
    credentials_file: Secret = None
    # Azure
    account_name: str | None = None
    account_url: str | None = None
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
            try:
                if text.endswith("%"):
                    return {"fraction": float(text[:-1]) / 100}
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


class Driver(_Model):
    """One bucket, container or folder (and optional prefix) through one integration."""

    name: str = Field(pattern=_NAME)
    integration: str
    bucket: str = Field(min_length=1, description="bucket, container, or folder path for local")
    prefix: str = ""
    region: str | None = None
    endpoint_url: str | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    skip: tuple[str, ...] = Field(
        default=DEFAULT_SKIP,
        description="basename patterns never synced (hidden and partial files)",
    )
    follow_symlinks: bool = False
    content_hash: Literal["none", "md5", "sha256"] = "none"
    allow_external_delete: bool = True
    max_delete: MaxDelete = Field(default_factory=lambda: MaxDelete(fraction=0.5))
    fan_out: int = Field(default=1, ge=1, le=64, description="concurrent prefix listings")
    versioned: bool = False

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return value.lstrip("/")


class Dataset(_Model):
    """A named collection of items fed by one or more drivers."""

    name: str = Field(pattern=_NAME)
    drivers: tuple[str, ...] = Field(min_length=1)
    description: str = ""


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
    client_metadata: dict[str, str | int | float | bool] = Field(default_factory=dict)
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


class Config(_Model):
    catalog: str = DEFAULT_CATALOG
    manifest: ManifestSettings = Field(default_factory=ManifestSettings)
    integrations: tuple[Integration, ...] = ()
    drivers: tuple[Driver, ...] = ()
    datasets: tuple[Dataset, ...] = ()
    #: Folder relative paths (local drivers, sqlite files, file: secrets) resolve against.
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @model_validator(mode="after")
    def _references(self) -> Config:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        for loc, kind, names in (
            (("integrations",), "integration", [i.name for i in self.integrations]),
            (("drivers",), "driver", [d.name for d in self.drivers]),
            (("datasets",), "dataset", [d.name for d in self.datasets]),
        ):
            seen: set[str] = set()
            for index, name in enumerate(names):
                if name in seen:
                    problems.append(((*loc, index, "name"), f"duplicate {kind} name {name!r}"))
                seen.add(name)
        integrations = {i.name: i for i in self.integrations}
        for index, driver in enumerate(self.drivers):
            if driver.integration not in integrations:
                known = ", ".join(sorted(integrations)) or "none defined"
                problems.append(
                    (
                        ("drivers", index, "integration"),
                        f"unknown integration {driver.integration!r} (known: {known})",
                    )
                )
        drivers = {d.name for d in self.drivers}
        for index, dataset in enumerate(self.datasets):
            for position, name in enumerate(dataset.drivers):
                if name not in drivers:
                    problems.append(
                        (("datasets", index, "drivers", position), f"unknown driver {name!r}")
                    )
        if problems:
            raise ConfigError("\n".join(f"{format_loc(loc)}: {msg}" for loc, msg in problems))
        return self

    def integration(self, name: str) -> Integration:
        return next(i for i in self.integrations if i.name == name)

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


def _line_of(root: yaml.Node | None, loc: tuple[str | int, ...]) -> tuple[int, int] | None:
    """The (line, column) of the YAML node at `loc`, or of its nearest existing parent."""
    node = root
    found = (node.start_mark.line + 1, node.start_mark.column + 1) if node else None
    for part in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    child = value_node
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(part, int)
            and 0 <= part < len(node.value)
        ):
            child = node.value[part]
        if child is None:
            break
        node = child
        found = (node.start_mark.line + 1, node.start_mark.column + 1)
    return found


_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$")


def _interpolate(value: Any, loc: tuple[str | int, ...], missing: list[str]) -> Any:
    """Replace `${NAME}` and `${NAME:-default}` in string values from the environment.

    `$$` is a literal `$`. A secret still has to be a reference: a value that came from the
    environment is checked like any other.
    """
    if isinstance(value, dict):
        return {k: _interpolate(v, (*loc, k), missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, (*loc, n), missing) for n, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
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
        missing.append(f"{format_loc(loc)}: environment variable {name} is not set")
        return ""

    return _VARIABLE.sub(substitute, value)


def parse_config(text: str, source: str = "<config>", base_dir: Path | None = None) -> Config:
    """Parse and validate YAML text; raise `ConfigError` naming every problem's location."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {exc.problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, not {type(data).__name__}")
    missing: list[str] = []
    data = _interpolate(data, (), missing)
    if missing:
        raise ConfigError(_locate_all("\n".join(missing), root, source))
    data["base_dir"] = base_dir or Path.cwd()
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = error["msg"]
            if error["type"] == "value_error" and message.startswith("Value error, "):
                message = message[len("Value error, ") :]
            position = _line_of(root, loc)
            where = f"{source}:{position[0]}:{position[1]}" if position else source
            lines.append(f"{where}: {format_loc(loc)}: {message}")
        raise ConfigError("\n".join(lines)) from None
    except ConfigError as exc:
        raise ConfigError(_locate_all(str(exc), root, source)) from None


_LOC_PREFIX = re.compile(r"^([A-Za-z_]+)((?:\[\d+\]|\.[A-Za-z_]+)*): ")


def _locate_all(messages: str, root: yaml.Node | None, source: str) -> str:
    """Prefix each cross-reference message (`drivers[1].integration: ...`) with its line."""
    out = []
    for message in messages.splitlines():
        match = _LOC_PREFIX.match(message)
        position = None
        if match:
            loc: list[str | int] = [match.group(1)]
            for part in re.findall(r"\[(\d+)\]|\.([A-Za-z_]+)", match.group(2)):
                loc.append(int(part[0]) if part[0] else part[1])
            position = _line_of(root, tuple(loc))
        where = f"{source}:{position[0]}:{position[1]}" if position else source
        out.append(f"{where}: {message}")
    return "\n".join(out)


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(explicit: str | None = None) -> Config:
    """Read the config named by `--config`, `$SYNCD_CONFIG`, or `./syncd.yaml`."""
    path = config_path(explicit)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file (run `syncd init` to write one)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, str(path), base_dir=path.resolve().parent)
