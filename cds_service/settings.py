"""Settings from environment variables (pydantic-settings), with embedded development-friendly defaults.

One field per documented variable: `CDS_<FIELD NAME>` unless the field names another variable. The
configuration tables of docs/operators/ list exactly these (a test compares them). Any invalid value stops
start-up with one line per variable saying what is wrong (SettingsError).
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, NoReturn
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from platformdirs import user_data_dir
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars
from sqlalchemy.engine import make_url

# Asymmetric JWS algorithms only: `none` and HMAC (a shared secret) are never acceptable (CDS Hooks 2.0.1).
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})
DEFAULT_ALGORITHMS = ("ES384", "RS384")  # the two the specification recommends
# The folder holding the packages: a checkout of the repository (pyproject.toml beside them), or site-packages
# when installed from the wheel. guideline_data is shipped beside cds_service in both.
PACKAGE_PARENT = Path(__file__).resolve().parent.parent
REPO_ROOT: Path | None = PACKAGE_PARENT if (PACKAGE_PARENT / "pyproject.toml").is_file() else None
DEFAULT_CONTENT_DIR = PACKAGE_PARENT / "guideline_data"
# Where what the service writes lives by default (CDS_STATE_DIR, a relative SQLite path in CDS_DATABASE_URL):
# the repository in a checkout; installed, the user's data folder (~/.local/share/lbp-cds), never site-packages.
DATA_ROOT = REPO_ROOT or Path(user_data_dir("lbp-cds", appauthor=False))
DEFAULT_STATE_DIR = DATA_ROOT / "var"
LOOPBACK_NAMES = frozenset({"localhost"})
# Signs Prior Notification form links when CDS_FORM_SIGNING_KEY is not set: development only (with
# CDS_REQUIRE_JWT=false); a service that requires JWTs refuses to start without a key of its own.
DEVELOPMENT_FORM_KEY = "lbp-cds development form-link key: never use in production"
MIN_FORM_KEY_LENGTH = 32
# Signs the staff session cookie when CDS_STAFF_SESSION_SECRET is not set: development only, as above.
DEVELOPMENT_SESSION_KEY = "lbp-cds development staff-session key: never use in production"
DISCOVERY_PATH = "/.well-known/openid-configuration"
# What pydantic's own checks mean, in the words of the variables' documentation.
PLAIN_ERRORS = {
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "greater_than_equal": "must not be negative",
    "bool_parsing": "expected true or false",
    "literal_error": "expected one of {expected}",
    "date_from_datetime_parsing": "expected a date as YYYY-MM-DD",
    "date_parsing": "expected a date as YYYY-MM-DD",
}


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


Jwk = Mapping[str, Any]
JwkSet = Mapping[str, Jwk]  # signing keys by kid


@dataclass(frozen=True)
class TrustedIssuer:
    """A CDS client allowed to call: where its public keys are, and which tenants it may speak for.

    Keys come from JWK Set URLs (fetched and cached), from keys pinned in the configuration (inline
    or in a file), or, for a token whose `jku` is listed in `jku_files`, from a local copy of that
    JWK Set (never fetched): for EHRs and test clients whose JWK Set cannot be fetched.
    """

    issuer: str
    jwks_urls: tuple[str, ...] = ()
    tenants: frozenset[str] | None = None  # None: any tenant (or none)
    pinned_keys: JwkSet = field(default_factory=lambda: MappingProxyType({}))
    jku_copies: Mapping[str, JwkSet] = field(default_factory=lambda: MappingProxyType({}))


# The environment a Settings is read from: os.environ, or a mapping given to from_env (tests, tools).
_environment: ContextVar[Mapping[str, str] | None] = ContextVar("lbp_cds_environment", default=None)


class MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source, reading a given mapping instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environment: Mapping[str, str]) -> None:
        self._environment = environment
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environment, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class EnvironmentSettings(BaseSettings):
    """Settings read from the environment by `from_env()`; keyword arguments alone otherwise (tests)."""

    model_config = SettingsConfigDict(
        env_prefix="CDS_", env_ignore_empty=True, frozen=True, extra="forbid", populate_by_name=True
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as error:
            raise SettingsError("\n".join(describe_errors(type(self), error))) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        environment = _environment.get()
        if environment is None:
            return (init_settings,)
        return (init_settings, MappingEnvSource(settings_cls, environment))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Any:
        """Read every variable from `env` (default: the process environment)."""
        with reading(os.environ if env is None else env):
            return cls()

    @classmethod
    def variables(cls) -> dict[str, FieldInfo]:
        """Each environment variable with its field (default and description)."""
        return {env_name(cls, name): info for name, info in cls.model_fields.items()}


@contextmanager
def reading(env: Mapping[str, str]) -> Iterator[None]:
    token = _environment.set(env)
    try:
        yield
    finally:
        _environment.reset(token)


def env_name(cls: type[BaseSettings], field: str) -> str:
    alias = cls.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else f"{cls.model_config.get('env_prefix', '')}{field}".upper()


def describe_errors(cls: type[BaseSettings], error: ValidationError) -> list[str]:
    """One line per invalid variable, naming it, its value and what is wrong."""
    lines = []
    for problem in error.errors(include_url=False):
        field = str(problem["loc"][0]) if problem["loc"] else ""
        name = env_name(cls, field) if field in cls.model_fields else field or "settings"
        if problem["type"] == "value_error":
            # Our own validators word their message in full, naming the variable.
            lines.append(str(problem["ctx"]["error"]))
            continue
        plain = PLAIN_ERRORS.get(problem["type"], problem["msg"]).format(**problem.get("ctx", {}))
        value = problem.get("input")
        lines.append(f"{name}={value!r}: {plain}" if isinstance(value, str) else f"{name}: {plain}")
    return lines


def comma_separated(raw: Any) -> Any:
    if isinstance(raw, str):
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    return raw


CommaList = Annotated[tuple[str, ...], NoDecode]


class Settings(EnvironmentSettings):
    """The service's settings (CDS_* variables)."""

    public_base_url: str | None = Field(
        None,
        description="public URL of this service, e.g. `https://cds.example.org`; card links and JWT audiences are "
        "built from it (required when `CDS_REQUIRE_JWT=true`); default: taken from the request",
    )
    require_jwt: bool = Field(
        True, description="`false` only for local development and demos (a warning is logged at start-up)"
    )
    trusted_issuers: Annotated[Mapping[str, TrustedIssuer], NoDecode] = Field(
        default_factory=lambda: MappingProxyType({}),
        description='JSON object: issuer (`iss`) → `{"jwks_urls": [...], "tenants": [...]}`; instead of or beside '
        '`jwks_urls`, keys pinned with `"jwks": {"keys": [...]}` (inline) or `"jwks_file": "PATH"`, and '
        '`"jku_files": {"<jku URL>": "PATH"}` (a listed `jku` served from a local copy, never fetched); `tenants` '
        "optional; required when `CDS_REQUIRE_JWT=true`",
    )
    jwt_algorithms: CommaList = Field(
        DEFAULT_ALGORITHMS,
        description="accepted JWS algorithms, among RS256/384/512, ES256/384/512, PS256/384/512; `none` and HS* "
        "are always refused",
    )
    jwt_leeway_seconds: int = Field(30, ge=0, description="clock skew tolerated on `exp`, `iat`, `nbf`")
    jwt_max_lifetime_seconds: int = Field(
        3600, ge=0, description="longest accepted token lifetime (`exp − iat`, or `exp − now` without `iat`)"
    )
    jwks_cache_seconds: int = Field(
        600,
        ge=0,
        description="how long a fetched JWK Set is reused (an unknown `kid` refetches it at most once a minute)",
    )
    redis_url: str | None = Field(
        None,
        description="e.g. `redis://redis:6379/0`: keep the JWT replay (`jti`) store in Redis instead of the "
        "database (recommended in production: hook calls then never wait on the database)",
    )
    jwt_replay_outage: Literal["local", "refuse"] = Field(
        "local",
        description="when the shared replay store (database or Redis) cannot be reached: `local` keeps answering, "
        "each worker refusing the tokens it has seen itself (`/readyz` and `lbp_jwt_replay_local_total` say so); "
        "`refuse` answers 503 until it is back",
    )
    jwt_replay_cache_size: int = Field(
        50000,
        ge=1,
        description="most unexpired `jti`s each worker remembers itself (it refuses any it has seen, whatever the "
        "shared store says); when it overflows during an outage, calls are answered 503",
    )
    cors_origins: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None,
        description="comma-separated browser origins allowed to call discovery, the services and feedback; "
        "default: `*` if `CDS_REQUIRE_JWT=false`, else none",
    )
    database_url: str = Field(
        "sqlite:///var/lbp-cds.sqlite3",
        description="issued cards, feedback and the JWT replay store; a relative SQLite path is under the "
        "repository root (installed from the wheel: under the user data folder, `~/.local/share/lbp-cds/`); "
        "PostgreSQL: `postgresql+psycopg://user:password@host:5432/lbp`",
    )
    max_body_bytes: int = Field(5 * 1024 * 1024, ge=0, description="request body limit (413 beyond)")
    trusted_proxy_hops: int = Field(0, ge=0, description="how many reverse proxies' `X-Forwarded-*` headers to trust")
    content_dir: Path = Field(
        DEFAULT_CONTENT_DIR,
        description="where the clinical content is read from; default: `guideline_data/` in the repository, or "
        "the copy installed with the wheel",
    )
    fhir_allowlist: CommaList = Field(
        (),
        description="comma-separated FHIR base URLs the service may call when prefetch is missing; default: "
        "empty (never fetch)",
    )
    fhir_budget_ms: int = Field(
        350,
        ge=0,
        description='time budget for all FHIR fetching of one hook call (the spec asks for answers "on the order '
        'of 500 ms")',
    )
    fhir_page_limit: int = Field(
        5, ge=0, description="most `Bundle.link[next]` pages followed per query; more is incomplete data"
    )
    fhir_cache_seconds: int = Field(30, ge=0, description="FHIR response cache lifetime; `0` turns it off")
    fhir_cache_size: int = Field(1024, ge=0, description="most cached FHIR responses")
    log_format: Literal["json", "text"] = Field(
        "json", description="`json`: one JSON object per log line; `text` for people (`make run` uses it)"
    )
    content_reload_seconds: int = Field(
        2,
        ge=0,
        description="how often (at most, on the next request) the service looks whether the content files "
        "changed; `0` turns this off (SIGHUP still reloads)",
    )
    preview_enabled: bool | None = Field(
        None,
        description="serve the `/preview` card preview page (404 when off); default: `true` when "
        "`CDS_REQUIRE_JWT=false`, else `false`",
    )
    clinical_date: date | None = Field(
        None,
        description="fixes the clinical today (ages, look-back windows, suspensions) for every call, as "
        "`YYYY-MM-DD`: for tests, demos and training systems only, never in production; default: today",
    )
    program_timezone: str = Field(
        "America/Chicago",  # the plan's members and clinics are in Minnesota and Wisconsin
        description="IANA time zone of the program (e.g. `America/Chicago`): the clinical today (ages, look-back "
        "windows, suspensions) is the date there, never the host's",
    )
    form_signing_key: SecretStr | None = Field(
        None,
        description="secret that signs the Prior Notification form links on cards (at least 32 characters; "
        "keep it the same on every replica); required when `CDS_REQUIRE_JWT=true`; default: a fixed development "
        "key, only with `CDS_REQUIRE_JWT=false`",
    )
    pn_link_days: int = Field(
        30, ge=1, description="how many days a Prior Notification form link on a card stays valid"
    )
    pn_search_max_bytes: int = Field(
        2 * 1024 * 1024,
        ge=64 * 1024,
        description="the largest answer of a Prior Notification records search: a page holds records (their "
        "attachments left out, each by a link to its record) until the next would pass this size, and links the "
        "next page (a page always holds one record)",
    )
    pn_reader_issuers: CommaList = Field(
        (),
        description="comma-separated JWT issuers (among `CDS_TRUSTED_ISSUERS`) of the plan's staff tools, which "
        "may read every EHR's Prior Notification records; any other caller reads only those its own EHR "
        "(issuer and tenant) filed; default: none",
    )
    staff_oidc_issuer: str | None = Field(
        None,
        description="the organization's OpenID Connect identity provider for the staff sign-in to `/analytics`: "
        "its issuer URL (the discovery document is read from `<issuer>/.well-known/openid-configuration`) or the "
        "discovery document's URL; https, or http to loopback only; default: none (in production every analytics "
        "URL then answers 401; in development it is open on loopback)",
    )
    staff_oidc_client_id: str | None = Field(
        None, description="this service's client id at the identity provider (required with the issuer)"
    )
    staff_oidc_client_secret: SecretStr | None = Field(
        None, description="this service's client secret at the identity provider (required with the issuer)"
    )
    staff_oidc_scopes: CommaList = Field(
        ("openid",),
        description="comma-separated scopes asked of the identity provider (`openid` is always asked); add the one "
        "your provider needs to release the role claim, e.g. `openid,groups`",
    )
    staff_role_claim: str = Field(
        "groups",
        description="the ID token (or UserInfo) claim that grants the staff role: a string or a list of strings",
    )
    staff_role_values: CommaList = Field(
        ("lbp-analytics",),
        description="comma-separated values of that claim, any one of which grants the staff role",
    )
    staff_session_minutes: int = Field(
        60, ge=1, description="how long a staff sign-in lasts (then the dashboard asks to sign in again)"
    )
    staff_session_secret: SecretStr | None = Field(
        None,
        description="secret that signs the staff session cookie (at least 32 characters; the same on every "
        "replica); required in production when the issuer is set; default: a fixed development key, only with "
        "`CDS_REQUIRE_JWT=false`",
    )
    state_dir: Path = Field(
        DEFAULT_STATE_DIR,
        description="where the service keeps the last content that passed validation (`content-last-good.tar`), "
        "served if it starts while the files are invalid; default: `var/` in the repository (installed from the "
        "wheel: `~/.local/share/lbp-cds/var/`)",
    )
    clinician_key: SecretStr | None = Field(
        None,
        description="secret (at least 32 characters) that turns the clinician's id (the context's `userId`, else "
        "the JWT `sub`) into a pseudonym for analytics (keyed HMAC-SHA256: cards per clinician can be counted, "
        "nobody named); default: none, and no pseudonym is recorded",
    )
    clinician_key_id: str = Field(
        "1",
        max_length=32,
        description="a name for `CDS_CLINICIAN_KEY`, stored beside each pseudonym: change both together to rotate "
        "the key (pseudonyms made with different keys are never the same person to the dashboard)",
    )
    analytics_retention_days: int = Field(
        730,
        ge=1,
        description="how long issued-card records, feedback and their daily counts are kept; `lbp-cds "
        "analytics-retention` deletes what is older (run it daily)",
    )

    @property
    def shows_preview(self) -> bool:
        return not self.require_jwt if self.preview_enabled is None else self.preview_enabled

    @property
    def signing_key(self) -> str:
        """The form-link key; the development key only where JWTs are not required (check() enforces it)."""
        if self.form_signing_key is not None:
            return self.form_signing_key.get_secret_value()
        return DEVELOPMENT_FORM_KEY

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        if self.cors_origins is not None:
            return self.cors_origins
        return () if self.require_jwt else ("*",)

    @property
    def staff_sign_in(self) -> bool:
        """Whether staff sign in through an identity provider (check() makes sure it is fully set)."""
        return self.staff_oidc_issuer is not None

    @property
    def staff_oidc_discovery_url(self) -> str | None:
        issuer = self.staff_oidc_issuer
        if issuer is None or issuer.endswith(DISCOVERY_PATH):
            return issuer
        return issuer + DISCOVERY_PATH

    @property
    def session_key(self) -> str | None:
        """The staff session key; the development key only where JWTs are not required; None: no sessions (in
        production without an identity provider, where every analytics URL is refused anyway)."""
        if self.staff_session_secret is not None:
            return self.staff_session_secret.get_secret_value()
        return None if self.require_jwt else DEVELOPMENT_SESSION_KEY

    def check(self) -> None:
        """Refuse to serve when JWTs are required but could never be verified, or the staff sign-in is half set."""
        self.check_staff_sign_in()
        if not self.require_jwt:
            return
        missing = [
            name
            for name, value in (
                ("CDS_TRUSTED_ISSUERS", self.trusted_issuers),
                ("CDS_PUBLIC_BASE_URL", self.public_base_url),
            )
            if not value
        ]
        if missing:
            raise SettingsError(
                f"CDS_REQUIRE_JWT=true needs {' and '.join(missing)}: the issuers whose JWTs are trusted and the "
                "public URL JWT audiences are checked against (or set CDS_REQUIRE_JWT=false for development only)"
            )
        if self.form_signing_key is None:
            raise SettingsError(
                "CDS_REQUIRE_JWT=true needs CDS_FORM_SIGNING_KEY: a secret of at least "
                f"{MIN_FORM_KEY_LENGTH} characters that signs the Prior Notification form links "
                "(the same on every replica)"
            )
        untrusted = [issuer for issuer in self.pn_reader_issuers if issuer not in self.trusted_issuers]
        if untrusted:
            raise SettingsError(f"CDS_PN_READER_ISSUERS: {', '.join(untrusted)} not among CDS_TRUSTED_ISSUERS")

    def check_staff_sign_in(self) -> None:
        given = {
            "CDS_STAFF_OIDC_ISSUER": self.staff_oidc_issuer,
            "CDS_STAFF_OIDC_CLIENT_ID": self.staff_oidc_client_id,
            "CDS_STAFF_OIDC_CLIENT_SECRET": self.staff_oidc_client_secret,
        }
        if not any(given.values()):
            return  # no staff sign-in: analytics is closed in production, open on loopback in development
        missing = [name for name, value in given.items() if not value]
        if self.require_jwt and self.staff_session_secret is None:
            missing.append("CDS_STAFF_SESSION_SECRET")
        if missing:
            raise SettingsError(
                f"the staff sign-in needs {' and '.join(missing)} too: the identity provider, this service's "
                "client id and secret there, and (in production) the secret that signs the staff session cookie "
                f"(at least {MIN_FORM_KEY_LENGTH} characters); or set none of CDS_STAFF_OIDC_*"
            )

    @field_validator("staff_oidc_issuer")
    @classmethod
    def _staff_issuer(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            return parse_allowlist([value])[0]
        except ValueError as error:
            raise ValueError(f"CDS_STAFF_OIDC_ISSUER: {error}") from None

    @field_validator("staff_oidc_client_id")
    @classmethod
    def _staff_client_id(cls, value: str | None) -> str | None:
        return value.strip() if value is not None and value.strip() else None

    @field_validator("staff_oidc_client_secret")
    @classmethod
    def _staff_client_secret(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value().strip() else None

    @field_validator("staff_oidc_scopes", mode="before")
    @classmethod
    def _staff_scopes(cls, value: Any) -> Any:
        scopes = comma_separated(value)
        return scopes if "openid" in scopes else ("openid", *scopes)

    @field_validator("staff_role_claim")
    @classmethod
    def _staff_role_claim(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("CDS_STAFF_ROLE_CLAIM: name the claim that grants the staff role, e.g. groups")
        return value.strip()

    @field_validator("staff_role_values", mode="before")
    @classmethod
    def _staff_role_values(cls, value: Any) -> Any:
        values = comma_separated(value)
        if not values:
            raise ValueError("CDS_STAFF_ROLE_VALUES: list at least one value that grants the staff role")
        return values

    @field_validator("staff_session_secret")
    @classmethod
    def _session_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value()) < MIN_FORM_KEY_LENGTH:
            raise ValueError(
                f"CDS_STAFF_SESSION_SECRET: too short; use a random secret of at least {MIN_FORM_KEY_LENGTH} characters"
            )
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        url = value.strip().rstrip("/")
        if urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).netloc:
            raise ValueError(f"CDS_PUBLIC_BASE_URL={value!r}: expected an absolute URL such as https://cds.example.org")
        return url

    @field_validator("form_signing_key")
    @classmethod
    def _form_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value()) < MIN_FORM_KEY_LENGTH:
            raise ValueError(
                f"CDS_FORM_SIGNING_KEY: too short; use a random secret of at least {MIN_FORM_KEY_LENGTH} characters"
            )
        return value

    @field_validator("clinician_key")
    @classmethod
    def _clinician_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value()) < MIN_FORM_KEY_LENGTH:
            raise ValueError(
                f"CDS_CLINICIAN_KEY: too short; use a random secret of at least {MIN_FORM_KEY_LENGTH} characters"
            )
        return value

    @field_validator("pn_reader_issuers", mode="before")
    @classmethod
    def _reader_issuers(cls, value: Any) -> Any:
        return comma_separated(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if urlsplit(value.strip()).scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"CDS_REDIS_URL={value!r}: expected a redis://, rediss:// or unix:// URL")
        return value.strip()

    @field_validator("trusted_issuers", mode="before")
    @classmethod
    def _issuers(cls, value: Any) -> Any:
        return parse_trusted_issuers(value) if isinstance(value, str) else value

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _algorithms(cls, value: Any) -> Any:
        names = comma_separated(value)
        refused = [name for name in names if name not in ASYMMETRIC_ALGORITHMS]
        if refused or not names:
            raise ValueError(
                f"CDS_JWT_ALGORITHMS={value!r}: {', '.join(refused) or 'empty'} not allowed; choose among "
                f"{', '.join(sorted(ASYMMETRIC_ALGORITHMS))} (none and HMAC are never accepted)"
            )
        return names

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        origins = comma_separated(value)
        if origins is None:
            return None
        origins = tuple(origin.rstrip("/") for origin in origins)
        for origin in origins:
            if origin != "*" and not (urlsplit(origin).scheme in ("https", "http") and urlsplit(origin).netloc):
                raise ValueError(f"CDS_CORS_ORIGINS: {origin!r} is not an origin such as https://ehr.example.org")
        return origins or None

    @field_validator("fhir_allowlist", mode="before")
    @classmethod
    def _allowlist(cls, value: Any) -> Any:
        try:
            return parse_allowlist(list(comma_separated(value)))
        except ValueError as error:
            raise ValueError(f"CDS_FHIR_ALLOWLIST: {error}") from None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except (ValueError, TypeError) as error:
            raise ValueError(f"CDS_DATABASE_URL: not a database URL ({error})") from None
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError(f"CDS_DATABASE_URL: {url.get_backend_name()} is not supported (sqlite or postgresql)")
        return value

    @field_validator("program_timezone")
    @classmethod
    def _program_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"CDS_PROGRAM_TIMEZONE={value!r}: not an IANA time zone such as America/Chicago") from None
        return value.strip()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.program_timezone)

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class ServerSettings(EnvironmentSettings):
    """The HTTP server's settings (read by cds_service/web/server.py, granian)."""

    # Loopback unless told otherwise: a development instance (no JWT, CORS *) is never reachable from the
    # network by default, and a production one is reached through nginx on the same host (slow clients are
    # nginx's to wait on). The container and Kubernetes set 0.0.0.0:8080 explicitly.
    bind: str = Field("127.0.0.1:8080", description="address to listen on")
    workers: int | None = Field(
        None,
        ge=1,
        validation_alias="WEB_CONCURRENCY",
        description="worker processes; default: the CPU count",
    )
    # 6, not 4: on 2 CPUs at saturation 6 threads cost the least server CPU per baseline call at 16, 32 and 64
    # connections (at 32: 4 threads 381-396 µs, 6 352-357, 8 362-382, 12 388-408, 16 430-477; BENCHMARKS.md,
    # "The serving stack", round 7). A call may also wait on the EHR's FHIR server: threads hold such calls.
    threads: int = Field(6, ge=1, description="threads per worker (a call may wait on the EHR's FHIR server)")
    graceful_timeout: int = Field(20, ge=0, description="seconds a worker gets to finish its calls on shutdown")
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="the HTTP server's own log level"
    )
    prometheus_multiproc_dir: str | None = Field(
        None,
        validation_alias="PROMETHEUS_MULTIPROC_DIR",
        description="where workers write their metrics for `/metrics`; default: a fresh folder under `$TMPDIR`",
    )

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str) -> str:
        host, _, port = value.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"CDS_BIND={value!r}: expected HOST:PORT, such as 127.0.0.1:8080")
        return value.strip()

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


def parse_trusted_issuers(raw: str) -> Mapping[str, TrustedIssuer]:
    """CDS_TRUSTED_ISSUERS: {"<iss>": {"jwks_urls": ["https://..."], "tenants": ["..."]}, ...}."""
    if raw.strip() == "":
        return MappingProxyType({})
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise ValueError(f"CDS_TRUSTED_ISSUERS is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError('CDS_TRUSTED_ISSUERS: expected a JSON object {"<issuer>": {"jwks_urls": [...]}}')
    return MappingProxyType({issuer: parse_issuer(issuer, entry) for issuer, entry in data.items()})


def parse_issuer(issuer: str, entry: Any) -> TrustedIssuer:
    where = f"CDS_TRUSTED_ISSUERS[{issuer!r}]"
    if not issuer:
        raise ValueError("CDS_TRUSTED_ISSUERS: an issuer must not be empty")
    if not isinstance(entry, dict):
        raise ValueError(f'{where}: expected an object such as {{"jwks_urls": ["https://.../jwks.json"]}}')
    members = {"jwks_urls", "jwks", "jwks_file", "jku_files", "tenants"}
    unknown = set(entry) - members
    if unknown:
        raise ValueError(
            f"{where}: unknown member(s) {', '.join(sorted(unknown))}; expected {', '.join(sorted(members))}"
        )
    urls = string_list(entry.get("jwks_urls", []), f"{where}.jwks_urls")
    for url in urls:
        check_http_url(url, f"{where}.jwks_urls")
    pinned: dict[str, Jwk] = {}
    if "jwks" in entry:
        pinned.update(signing_keys(entry["jwks"], f"{where}.jwks"))
    if "jwks_file" in entry:
        pinned.update(jwks_from_file(entry["jwks_file"], f"{where}.jwks_file"))
    copies = entry.get("jku_files", {})
    if not isinstance(copies, dict):
        raise ValueError(f'{where}.jku_files: expected an object {{"<jku URL>": "<path of a JWK Set file>"}}')
    jku_copies = {}
    for url, path in copies.items():
        check_http_url(url, f"{where}.jku_files")
        jku_copies[url] = MappingProxyType(jwks_from_file(path, f"{where}.jku_files[{url!r}]"))
    if not (urls or pinned or jku_copies):
        raise ValueError(f"{where}: give its keys: jwks_urls, jwks, jwks_file or jku_files")
    tenants = None
    if "tenants" in entry:
        tenants = frozenset(string_list(entry["tenants"], f"{where}.tenants"))
        if not tenants:
            raise ValueError(f"{where}.tenants: list at least one tenant, or leave tenants out")
    return TrustedIssuer(
        issuer=issuer,
        jwks_urls=tuple(urls),
        tenants=tenants,
        pinned_keys=MappingProxyType(pinned),
        jku_copies=MappingProxyType(jku_copies),
    )


def check_http_url(url: str, where: str) -> None:
    if urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).netloc:
        raise ValueError(f"{where}: {url!r} is not an http(s) URL")


def jwks_from_file(path: Any, where: str) -> dict[str, Jwk]:
    if not isinstance(path, str) or not path:
        raise ValueError(f"{where}: expected the path of a JWK Set file")
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{where}: {path!r} cannot be read as a JWK Set ({type(error).__name__})") from None
    return signing_keys(document, where)


def signing_keys(document: Any, where: str) -> dict[str, Jwk]:
    """A JWK Set's signing keys by kid (keys without a kid, or meant for encryption, cannot be chosen)."""
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise ValueError(f'{where}: expected a JWK Set {{"keys": [...]}}')
    found: dict[str, Jwk] = {
        key["kid"]: MappingProxyType(dict(key))
        for key in keys
        if isinstance(key, dict) and isinstance(key.get("kid"), str) and key.get("use", "sig") == "sig"
    }
    if not found:
        raise ValueError(f"{where}: no signing key with a kid")
    return found


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_allowlist(entries: list[str]) -> tuple[str, ...]:
    """Base URLs the service may call; https, or http for loopback development servers only."""
    allowed = []
    for entry in entries:
        parts = urlsplit(entry.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"'{entry}' is not an absolute http(s) URL")
        if parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ValueError(f"'{entry}' uses http to a remote host; only https, or http to loopback")
        allowed.append(entry.strip().rstrip("/"))
    return tuple(allowed)


def string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: expected a list of non-empty strings")
    return value


def exit_on_settings_error(error: SettingsError) -> NoReturn:
    """Stop start-up with the message alone: one line per variable, no traceback."""
    for line in str(error).splitlines():
        print(f"lbp-cds: invalid setting: {line}", file=sys.stderr)
    raise SystemExit(2)
