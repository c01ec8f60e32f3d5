"""The broker's configuration: ``broker.toml`` as pydantic models, every option with its help text."""

from __future__ import annotations

import ipaddress
import ssl
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fedproto.tls import CABundleError, resolve_ca_bundle, server_context

CONFIG_NAME = "broker.toml"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HealthSettings(Section):
    """How members are polled and when they count as healthy."""

    interval: float = Field(default=10.0, gt=0, description="Seconds between status polls of a healthy member.")
    jitter: float = Field(default=0.2, ge=0, le=1, description="Random spread of the interval, as a fraction of it.")
    timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for one status poll.")
    unhealthy_interval: float = Field(
        default=30.0, gt=0, description="Seconds between polls of a member that is currently unhealthy."
    )
    healthy_after: int = Field(default=2, ge=1, description="Consecutive passing polls before a member is healthy again.")
    unhealthy_after: int = Field(default=2, ge=1, description="Consecutive failed polls before a member is unhealthy.")
    eject_after_failures: int = Field(
        default=3, ge=1, description="Consecutive failed launches before a member is ejected (passive outlier detection)."
    )
    eject_base: float = Field(default=30.0, gt=0, description="First ejection time in seconds; doubles on each repeat.")
    eject_max: float = Field(default=600.0, gt=0, description="Longest ejection time in seconds.")
    ewma_alpha: float = Field(
        default=0.2, gt=0, le=1, description="Weight of the newest launch in the smoothed success rate and time-to-ready."
    )
    concurrency: int = Field(default=16, ge=1, description="Status polls running at the same time, at most.")
    share_polls: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="Replicas on one database split the polling (each member polled by one replica) and share "
        "the results through it. auto: on with PostgreSQL, off with SQLite (one replica).",
    )
    poll_lease: float = Field(
        default=5.0, gt=0, description="Seconds a replica's share of the polling outlives its last heartbeat "
        "(keep it under interval: a dead replica's members pass to the others this soon)."
    )
    poll_sync: float = Field(
        default=0.5, gt=0, description="Seconds between exchanges of poll results with the other replicas."
    )
    max_member_capacity: int = Field(
        default=10_000, ge=0,
        description="The most capacity (servers) believed from any member's status ad, unless an admin set that "
        "member's max_capacity: a member claiming 100000 slots must not draw every launch.",
    )


class RoutingSettings(Section):
    """How launches are ranked; see FEDERATION.md for the cost model."""

    max_attempts: int = Field(default=3, ge=1, le=10, description="Members tried for one launch before giving up.")
    load_spill_factor: float = Field(
        default=1.2,
        ge=1.0,
        description="A member running more than this times its weight's share of the federation's sessions "
        "is ranked after every cooler member (within the same data-locality tier).",
    )
    spill_min_sessions: float = Field(
        default=1.5,
        ge=0,
        description="A member is hot only when it also runs this many sessions more than its weight's share: "
        "with few sessions in the federation, one launch must not make a member hot and cost a rebuild.",
    )
    new_repo_spill_factor: float = Field(
        default=1.0,
        ge=1.0,
        description="For a launch of a repository no member holds or is building, a member is hot above this "
        "times its weight's share of sessions, with no spill_min_sessions: such a launch builds wherever it "
        "goes, so sending it away from a busy member costs no rebuild.",
    )
    near_equal: float = Field(
        default=0.0,
        ge=0,
        description="Costs within this many seconds count as equal; rendezvous hashing picks among them. 0: only "
        "equal costs (members alike in load and image): a wider band let the hash send launches of an image "
        "several members hold to a busier one, and a repo's launches follow its image (or its pending build) anyway.",
    )
    near_equal_max: int = Field(
        default=16,
        ge=1,
        description="At most this many near-equal members (the cheapest) take part in the rendezvous hash. In a "
        "large federation hundreds of members can be within near_equal of the best; hashing among the cheapest "
        "few keeps a decision's cost independent of the federation's size, and a repo's later launches follow "
        "its image (or its pending build) anyway.",
    )
    region_header: str | None = Field(
        default=None, description="Trusted request header carrying the client's region (set by your edge proxy)."
    )
    geoip_db: str | None = Field(default=None, description="Optional MaxMind-format GeoIP database file for client location.")
    build_seconds: float = Field(default=120.0, ge=0, description="Estimated cost of building an image that is not cached.")
    dataset_transfer_seconds_per_gb: float = Field(
        default=60.0, ge=0, description="Estimated cost of fetching one GB of a dataset that is not stored at the member."
    )
    dataset_unknown_seconds: float = Field(
        default=300.0, ge=0, description="Estimated cost of fetching a needed dataset of unknown size that is not stored at the member."
    )
    load_seconds: float = Field(
        default=200.0,
        ge=0,
        description="Cost of a member at full load (scaled by used/total capacity, counting load_headroom_sessions). High enough that a repo whose "
        "image is on several members goes to the least loaded of them, low enough that a half-full member "
        "still beats a rebuild (build_seconds).",
    )
    load_headroom_sessions: float = Field(
        default=3.0,
        ge=0,
        description="The load part prices (sessions + this) / (capacity + this): as if the member ran this many "
        "sessions more, on that many more slots, so it is full only when full. A few sessions are a larger share of "
        "a small member, whose load swings the most for its size: launches free to go anywhere fill it a little less "
        "and leave it room for the images only it holds. 0: the bare used share.",
    )
    failure_seconds: float = Field(
        default=30.0, ge=0, description="Cost of a member whose recent launches all failed (scaled by the failure rate)."
    )
    ready_time_weight: float = Field(
        default=1.0,
        ge=0,
        description="Multiplier of a member's time-to-ready in its cost: the launch part (server start) that "
        "canaries measure, smoothed; builds are priced by the image part. Members not yet measured get the "
        "mean of the measured ones.",
    )
    region_mismatch_seconds: float = Field(
        default=30.0, ge=0, description="Cost of a member outside the client's region, when the region is known."
    )
    distance_seconds_per_1000km: float = Field(
        default=5.0, ge=0, description="Cost per 1000 km between client and member, when both locations are known."
    )
    weight_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Admin weight w adds weight_seconds * (1/w - 1): 1 is neutral. Off by default: weight already "
        "sets each member's fair share of sessions (load_spill_factor) and its rendezvous share.",
    )
    suspect_seconds: float = Field(
        default=600.0, ge=0, description="Cost of a member whose last poll failed but that is not yet unhealthy (hysteresis)."
    )
    pending_image_seconds: float = Field(
        default=600.0,
        ge=0,
        description="After a launch is sent to a member that does not list the repo's image, the member counts as "
        "holding it for this many seconds (its build is under way; its status ad lists the image only once built), "
        "so further launches of the repo follow instead of starting builds elsewhere. 0 turns this off.",
    )
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to connect to a member's agent.")
    event_timeout: float = Field(
        default=90.0, gt=0, description="Seconds without any event or keepalive before a launch stream counts as dead."
    )
    keepalive: float = Field(default=10.0, gt=0, description="Seconds between keepalive comments on /build streams.")
    max_event_bytes: int = Field(
        default=256 * 1024, ge=4096,
        description="Largest launch event a member may send (all its data: lines together); more is a protocol "
        "error: the launch fails over and the member is charged with a failure.",
    )
    max_launch_event_bytes: int = Field(
        default=16 * 1024 * 1024, ge=65536,
        description="Most bytes of events (keepalives included) one launch attempt at a member may send; more is "
        "a protocol error, as for max_event_bytes.",
    )
    cookie_name: str = Field(default="federation_member", description="Sticky cookie naming the member (redirect mode).")
    cookie_max_age: int = Field(default=3600, ge=0, description="Lifetime in seconds of the sticky member cookie.")


class CanarySettings(Section):
    """Canary launches: a small repository launched on every active member to prove it serves (FEDERATION.md)."""

    repo: str | None = Field(
        default=None,
        description="The canary repository as PROVIDER/SPEC (e.g. gh/binder-examples/requirements/HEAD); "
        "unset, no canaries run. Keep it small: every member launches it every interval.",
    )
    interval: float = Field(default=300.0, gt=0, description="Seconds between canaries on one member.")
    jitter: float = Field(default=0.2, ge=0, le=1, description="Random spread of the interval, as a fraction of it.")
    retry_interval: float = Field(
        default=30.0, gt=0, description="Seconds before the next canary after a failed one (confirms or clears it sooner)."
    )
    eject_after: int = Field(default=2, ge=1, description="Consecutive failed canaries that eject a member.")
    timeout: float = Field(default=300.0, gt=0, description="Seconds a canary may take to reach ready.")
    check_timeout: float = Field(default=10.0, gt=0, description="Seconds the started server may take to answer its token.")
    concurrency: int = Field(default=4, ge=1, description="Canaries running at the same time across the federation.")


class RateLimitSettings(Section):
    """Per-client-IP launch rate limit, with BinderHub's headers."""

    launches: int = Field(default=0, ge=0, description="Launches allowed per client IP per period; 0 disables.")
    period: float = Field(default=3600.0, gt=0, description="Seconds in one rate-limit period.")
    client_ip_header: str | None = Field(
        default=None,
        description="Header your proxies write the client IP into (e.g. X-Forwarded-For); which of its values "
        "is the client is decided by trusted_proxies.",
    )
    trusted_proxies: int = Field(
        default=1, ge=0, le=10,
        description="Proxies in front of the broker that append to client_ip_header: the client is that many "
        "values from the right (values further left are the client's own words). 0 ignores the header.",
    )
    enrollments: int = Field(
        default=20, ge=0, description="Enrollment attempts allowed per client IP per enroll_period; 0 disables."
    )
    enroll_period: float = Field(default=600.0, gt=0, description="Seconds in one enrollment rate-limit period.")
    streams_per_client: int = Field(
        default=32, ge=0, description="Launch streams (/build) one client IP may hold open at once; 0: no limit."
    )


class ConnectionSettings(Section):
    """How long the broker waits for slow or idle clients (slowloris)."""

    header_timeout: float = Field(
        default=10.0, gt=0, description="Seconds a new connection has to send its first request's headers."
    )
    keepalive_timeout: float = Field(
        default=15.0, gt=0,
        description="Seconds an idle keep-alive connection stays open (waiting for the next request's headers).",
    )


class SpecFilter(Section):
    """Which repositories may be launched (regular expressions on `provider/spec`)."""

    allow: list[str] = Field(default_factory=list, description="If non-empty, only matching specs may launch.")
    deny: list[str] = Field(default_factory=list, description="Matching specs are refused (BinderHub's banned_specs).")


class LoggingSettings(Section):
    """What the broker logs (production settings: README, "Logging")."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Log level of the broker (`fedbroker serve --log-level` overrides it)."
    )
    access_log: bool = Field(default=True, description="One line per HTTP request (aiohttp's access log, at INFO).")
    access_log_format: str = Field(
        default='%a %t "%r" %s %b %Tf',
        description="aiohttp access-log format (%a client, %t time, %r request line, %s status, %b size, "
        "%Tf seconds taken, %{Header}i a request header).",
    )
    decisions: bool = Field(
        default=True,
        description="One short key=value line per routing decision (logger fedbroker.decisions, at INFO): "
        "id, repo, chosen member, its cost, the next candidates, microseconds taken.",
    )


class BrokerConfig(Section):
    """Everything ``fedbroker serve`` reads from ``broker.toml``."""

    broker_id: str = Field(default="broker", pattern=r"^[a-z0-9][a-z0-9-]{0,62}$", description="This broker's id (the `iss` of its tokens).")
    public_url: str = Field(default="http://127.0.0.1:8585", description="The URL users reach the broker at.")
    host: str = Field(default="127.0.0.1", description="Address to listen on.")
    port: int = Field(default=8585, ge=0, le=65535, description="Port to listen on (0 picks a free one).")
    db_url: str = Field(
        default="sqlite+aiosqlite:///registry.sqlite",
        description="SQLAlchemy URL of the registry. Relative SQLite paths are next to the config; "
        "use postgresql+asyncpg://... for several replicas.",
    )
    db_url_file: str | None = Field(
        default=None,
        description="File holding the registry's SQLAlchemy URL (first line, whitespace stripped); overrides "
        "db_url. Use it for URLs with passwords, mounted from a Secret.",
    )
    migrate_on_start: bool = Field(
        default=False,
        description="Migrate an older registry schema when serving starts. Off: the broker refuses to start on "
        "one and says to run `fedbroker migrate` (an empty database always gets the schema).",
    )
    keys_dir: str = Field(default="keys", description="Directory of the broker's Ed25519 private keys.")
    mode: Literal["relay", "redirect"] = Field(
        default="relay", description="relay: stream launches through the broker; redirect: answer 307 to the member."
    )
    dev: bool = Field(default=False, description="Allow plain http to members on loopback and file:// repos.")
    ca_bundle: str = Field(
        default="",
        description="PEM file of the CA(s) to trust when calling member agents (a private CA); empty: "
        "$FEDERATION_CA_BUNDLE, else the system store. Relative to this file.",
    )
    tls_cert_file: str = Field(
        default="", description="Serve https with this PEM certificate chain (with tls_key_file); empty: plain http behind a TLS proxy."
    )
    tls_key_file: str = Field(default="", description="The PEM private key of tls_cert_file.")
    cors_allow_origins: list[str] = Field(
        default_factory=lambda: ["*"],
        description="Page origins allowed to launch cross-origin (/build, its 307 in redirect mode, /v2, /api/v1/route). "
        "['*'] (default, as mybinder.org): any page, e.g. thebe and Jupyter Book; a list of origins: only those; [] none.",
    )
    agent_url_allow: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) member agent URLs may resolve to although they are not public, e.g. a site "
        "on the same private network. Outside dev mode every other loopback, link-local, private, multicast "
        "or unspecified address is refused (SSRF).",
    )
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, description="Largest request body accepted.")
    snapshot_refresh: float = Field(
        default=2.0, gt=0, description="Seconds between registry change checks (how soon other replicas see a change)."
    )
    admin_token_ttl_days: float = Field(default=365.0, gt=0, description="Lifetime of the admin token made by `init`.")
    health: HealthSettings = Field(default_factory=HealthSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    connections: ConnectionSettings = Field(default_factory=ConnectionSettings)
    specs: SpecFilter = Field(default_factory=SpecFilter)
    canary: CanarySettings = Field(default_factory=CanarySettings)

    # Not read from the file: where it was loaded from, to resolve relative paths.
    base_dir: Path = Field(default=Path("."), exclude=True, description="Directory relative paths are resolved against.")

    @field_validator("agent_url_allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # ValueError names the bad entry
        return value

    @classmethod
    def load(cls, path: Path) -> BrokerConfig:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"no config file at {path}; run `fedbroker init DIR` first") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        try:
            return cls.model_validate({**data, "base_dir": path.parent.resolve()})
        except ValidationError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.base_dir / p

    def server_ssl(self) -> ssl.SSLContext | None:
        """The TLS context to serve with when ``tls_cert_file`` is set (None: plain http)."""
        if not self.tls_cert_file:
            return None
        try:
            return server_context(str(self.resolve(self.tls_cert_file)), str(self.resolve(self.tls_key_file or self.tls_cert_file)))
        except CABundleError as exc:
            raise ConfigError(f"tls_cert_file: {exc}") from None

    @property
    def ca_bundle_path(self) -> str | None:
        """The CA bundle outbound TLS trusts, resolved (None: the system store)."""
        try:
            return resolve_ca_bundle(self.ca_bundle, base=self.base_dir)
        except CABundleError as exc:
            raise ConfigError(f"ca_bundle: {exc}") from None

    @property
    def resolved_db_url(self) -> str:
        """The registry URL (from db_url_file when set), relative SQLite paths made absolute next to the config."""
        url = self.db_url
        if self.db_url_file:
            try:
                url = self.resolve(self.db_url_file).read_text().strip().splitlines()[0].strip()
            except (OSError, IndexError):
                raise ConfigError(f"db_url_file {self.db_url_file} cannot be read or is empty") from None
        prefix = "sqlite+aiosqlite:///"
        if url.startswith(prefix):
            rest = url[len(prefix):]
            if rest and not rest.startswith("/") and rest != ":memory:":
                return prefix + str(self.resolve(rest))
        return url


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says why."""
