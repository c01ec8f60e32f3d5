"""The member's configuration: ``member.toml`` and the key files beside it.

``member.toml`` has three tables: ``[member]`` (who this site is and how the
agent serves), ``[broker]`` (filled by ``fedmember enroll``) and ``[backend]``
(``kind`` plus that backend's own settings, validated by its ``Config`` model).
Private keys live in ``keys/`` and the pinned broker keys in ``broker.jwks.json``;
relative paths are resolved against the config file's directory.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomlkit
import tomlkit.exceptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fedproto.datasets import Dataset
from fedproto.errors import KeyMaterialError
from fedproto.keys import KeyRing, PublicKeySet
from fedproto.location import Location
from fedproto.member import MEMBER_ID_PATTERN
from fedproto.tls import CABundleError, resolve_ca_bundle, server_context
from fedproto.urlpolicy import transport_allowed

from .backends import backend_class
from .backends.base import BackendConfig

CONFIG_NAME = "member.toml"
KEYS_DIR = "keys"
BROKER_JWKS_NAME = "broker.jwks.json"
DEFAULT_PORT = 8586


class ConfigError(Exception):
    """A configuration that cannot be used; the message says what to fix."""


class MemberSettings(BaseModel):
    """The ``[member]`` table."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=MEMBER_ID_PATTERN, description="Stable member id, a DNS label such as 'uni-x'.")
    display_name: str = Field(default="", max_length=200, description="Human name shown on the broker's pages.")
    agent_url: str = Field(default="", description="Where the broker calls this agent (https:// outside development).")
    public_url: str = Field(default="", description="Where browsers reach this site's notebook servers.")
    host: str = Field(default="127.0.0.1", description="Address the agent listens on.")
    port: int = Field(default=DEFAULT_PORT, ge=0, le=65535, description="Port the agent listens on (0: any free port).")
    status_ttl: float = Field(default=60.0, gt=0, le=3600, description="Seconds a signed status ad stays valid.")
    dev: bool = Field(default=False, description="Development mode: plain http on loopback and file:// repos.")
    cors_allow_origins: list[str] = Field(
        default_factory=list, description="Browser origins launched servers accept ('*' for any)."
    )
    public_launch: bool = Field(
        default=True,
        description="Serve /build to browsers that carry a broker-signed launch ticket, so a broker in redirect mode "
        "can send users here (agent_url must then be reachable from browsers). false: never a redirect target.",
    )
    launch_timeout: float = Field(default=900.0, gt=0, description="Seconds a launch may take before it fails with 504.")
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest request body accepted (413 beyond).")
    header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a new connection has to send its first request's headers (slowloris)."
    )
    keepalive_timeout: float = Field(
        default=15.0, gt=0,
        description="Seconds an idle keep-alive connection stays open (waiting for the next request's headers).",
    )
    state_dir: str = Field(default="state", description="Directory for backend state (clones, environments).")
    location: Location = Field(default_factory=Location, description="Where this site is.")
    datasets: list[Dataset] = Field(default_factory=list, description="Datasets stored at this site.")
    fetch_allow: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) repositories may be fetched from although they are not public, e.g. an "
        "in-house Git server. Outside dev mode every other loopback, link-local, private, multicast or "
        "unspecified address is refused.",
    )

    @field_validator("fetch_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad entry
        return value
    ca_bundle: str = Field(
        default="",
        description="PEM file of the CA(s) to trust for every outbound TLS call (broker, hub, git); empty: "
        "FEDERATION_CA_BUNDLE, else the system store. Relative to this file.",
    )
    tls_cert_file: str = Field(
        default="", description="Serve the agent over https with this PEM certificate chain (with tls_key_file); "
        "empty: plain http behind a TLS proxy or ingress.",
    )
    tls_key_file: str = Field(default="", description="The PEM private key of tls_cert_file.")


class BrokerSettings(BaseModel):
    """The ``[broker]`` table, written by ``fedmember enroll``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(default="", description="The broker this member enrolled with.")
    id: str = Field(default="", description="The broker's id: the issuer of every request token it sends.")
    keys_refresh: float = Field(
        default=300.0, ge=1.0, le=86400.0,
        description="Seconds between fetches of the broker's signed key set (sooner when the broker announces a new key).",
    )


class MemberConfig(BaseModel):
    """The whole ``member.toml``, plus the directory it was read from."""

    model_config = ConfigDict(extra="forbid")

    member: MemberSettings
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    backend: BackendConfig = Field(description="`kind` and the backend's own settings.")
    config_dir: Path = Field(default=Path("."), exclude=True, description="Directory relative paths start from.")

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_by_kind(cls, value: Any) -> BackendConfig:
        if isinstance(value, BackendConfig):
            return value
        if not isinstance(value, dict) or not isinstance(value.get("kind"), str):
            raise ValueError("[backend] needs a kind")
        return backend_class(value["kind"]).Config.model_validate(value)

    # -- paths -------------------------------------------------------------
    def path(self, relative: str) -> Path:
        return (self.config_dir / relative).resolve()

    @property
    def keys_dir(self) -> Path:
        return self.config_dir / KEYS_DIR

    @property
    def broker_jwks_path(self) -> Path:
        return self.config_dir / BROKER_JWKS_NAME

    @property
    def state_dir(self) -> Path:
        return self.path(self.member.state_dir)

    @property
    def config_file(self) -> Path:
        return self.config_dir / CONFIG_NAME

    @property
    def ca_bundle(self) -> str | None:
        """The CA bundle every outbound TLS client trusts (None: the system store)."""
        try:
            return resolve_ca_bundle(self.member.ca_bundle, base=self.config_dir)
        except CABundleError as exc:
            raise ConfigError(f"[member] ca_bundle: {exc}") from exc

    def server_ssl(self) -> ssl.SSLContext | None:
        """The context the agent serves https with, when ``tls_cert_file`` is set."""
        if not self.member.tls_cert_file:
            return None
        cert = self.path(self.member.tls_cert_file)
        key = self.path(self.member.tls_key_file or self.member.tls_cert_file)
        try:
            return server_context(str(cert), str(key))
        except CABundleError as exc:
            raise ConfigError(f"[member] tls_cert_file: {exc}") from exc

    # -- keys --------------------------------------------------------------
    def load_keys(self) -> KeyRing:
        try:
            return KeyRing.load(self.keys_dir)
        except KeyMaterialError as exc:
            raise ConfigError(f"member keys: {exc.message} (run 'fedmember init')") from exc

    def load_broker_keys(self) -> PublicKeySet | None:
        """The pinned broker keys, or None before enrollment."""
        if not self.broker_jwks_path.exists():
            return None
        try:
            return PublicKeySet.from_jwks(json.loads(self.broker_jwks_path.read_text()))
        except (ValueError, KeyMaterialError) as exc:
            raise ConfigError(f"{self.broker_jwks_path} is not a usable JWKS: {exc}") from exc


def load_config(path: Path | str) -> MemberConfig:
    """Read and validate ``member.toml`` (a file, or a directory holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"no config file at {path} (run 'fedmember init DIR')") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    try:
        return MemberConfig.model_validate({**data, "config_dir": path.parent.resolve()})
    except (ValidationError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def default_config_path() -> Path:
    return Path(os.environ.get("FEDMEMBER_CONFIG", CONFIG_NAME))


def set_broker(config_file: Path, url: str, broker_id: str) -> None:
    """Set ``[broker] url`` and ``id`` in place with tomlkit, keeping every comment; atomic."""
    try:
        document = tomlkit.parse(config_file.read_text())
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{config_file} is not valid TOML: {exc}") from exc
    table = document.get("broker")
    if table is None:
        table = tomlkit.table()
        document["broker"] = table
    table["url"] = url
    table["id"] = broker_id
    text = tomlkit.dumps(document)
    tomllib.loads(text)  # never write a file we could not read back
    atomic_write(config_file, text.encode())


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def require_secure_url(url: str, *, dev: bool, what: str) -> None:
    """Refuse a URL that is not https, except http on loopback in development mode (fedproto's rule)."""
    parts = urlsplit(url)
    if parts.hostname and transport_allowed(url, dev=dev):
        return
    if parts.scheme == "http" and parts.hostname:
        hint = "plain http is only allowed on loopback with --dev (or FEDERATION_DEV=1)"
        raise ConfigError(f"{what} {url!r} is not https: {hint}")
    raise ConfigError(f"{what} {url!r} must be an https:// URL")
