"""Settings from environment variables, with embedded development-friendly defaults."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from cds_service.content import DEFAULT_CONTENT_DIR
from cds_service.fhir_client import AllowListError, parse_allowlist

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
# Asymmetric JWS algorithms only: `none` and HMAC (a shared secret) are never acceptable (CDS Hooks 2.0.1).
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})
DEFAULT_ALGORITHMS = ("ES384", "RS384")  # the two the specification recommends
DEFAULT_STATE_DIR = DEFAULT_CONTENT_DIR.parent / "var"


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class TrustedIssuer:
    """A CDS client allowed to call: where its public keys are, and which tenants it may speak for."""

    issuer: str
    jwks_urls: tuple[str, ...]
    tenants: frozenset[str] | None = None  # None: any tenant (or none)


@dataclass(frozen=True)
class Settings:
    public_base_url: str | None = None  # e.g. https://cds.example.org; else taken from the request
    require_jwt: bool = True
    trusted_issuers: Mapping[str, TrustedIssuer] = field(default_factory=lambda: MappingProxyType({}))
    jwt_algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    jwt_leeway_seconds: int = 30
    jwt_max_lifetime_seconds: int = 3600
    jwks_cache_seconds: int = 600
    redis_url: str | None = None  # JWT replay store; the database when unset
    cors_origins: tuple[str, ...] | None = None  # None: "*" in development (no JWT), no origin otherwise
    database_url: str = "sqlite:///var/lbp-cds.sqlite3"
    max_body_bytes: int = 5 * 1024 * 1024
    trusted_proxy_hops: int = 0  # X-Forwarded-* headers trusted from this many proxies
    content_dir: Path = DEFAULT_CONTENT_DIR
    fhir_allowlist: tuple[str, ...] = ()  # FHIR base URLs the service may call; empty: none
    fhir_budget_ms: int = 350  # one budget for all fetching in a hook call
    fhir_page_limit: int = 5
    fhir_cache_seconds: int = 30  # 0 turns the FHIR response cache off
    fhir_cache_size: int = 1024
    content_reload_seconds: int = 2  # how often edited content is looked for; 0: never (SIGHUP still reloads)
    preview_enabled: bool | None = None  # the /preview page; None: on exactly when require_jwt is off
    state_dir: Path = DEFAULT_STATE_DIR  # the last good copy of the content is kept here

    @property
    def shows_preview(self) -> bool:
        return not self.require_jwt if self.preview_enabled is None else self.preview_enabled

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        defaults = cls()
        require_jwt = as_bool(env, "CDS_REQUIRE_JWT", defaults.require_jwt)
        return cls(
            public_base_url=(env.get("CDS_PUBLIC_BASE_URL") or "").rstrip("/") or None,
            require_jwt=require_jwt,
            trusted_issuers=parse_trusted_issuers(env.get("CDS_TRUSTED_ISSUERS")),
            jwt_algorithms=parse_algorithms(env.get("CDS_JWT_ALGORITHMS")),
            jwt_leeway_seconds=as_int(env, "CDS_JWT_LEEWAY_SECONDS", defaults.jwt_leeway_seconds),
            jwt_max_lifetime_seconds=as_int(env, "CDS_JWT_MAX_LIFETIME_SECONDS", defaults.jwt_max_lifetime_seconds),
            jwks_cache_seconds=as_int(env, "CDS_JWKS_CACHE_SECONDS", defaults.jwks_cache_seconds),
            redis_url=(env.get("CDS_REDIS_URL") or "").strip() or None,
            cors_origins=parse_origins(env.get("CDS_CORS_ORIGINS")),
            database_url=env.get("CDS_DATABASE_URL") or defaults.database_url,
            max_body_bytes=as_int(env, "CDS_MAX_BODY_BYTES", defaults.max_body_bytes),
            trusted_proxy_hops=as_int(env, "CDS_TRUSTED_PROXY_HOPS", defaults.trusted_proxy_hops),
            content_dir=Path(env.get("CDS_CONTENT_DIR") or defaults.content_dir),
            fhir_allowlist=as_allowlist(env, "CDS_FHIR_ALLOWLIST"),
            fhir_budget_ms=as_int(env, "CDS_FHIR_BUDGET_MS", defaults.fhir_budget_ms),
            fhir_page_limit=as_int(env, "CDS_FHIR_PAGE_LIMIT", defaults.fhir_page_limit),
            fhir_cache_seconds=as_int(env, "CDS_FHIR_CACHE_SECONDS", defaults.fhir_cache_seconds),
            fhir_cache_size=as_int(env, "CDS_FHIR_CACHE_SIZE", defaults.fhir_cache_size),
            content_reload_seconds=as_int(env, "CDS_CONTENT_RELOAD_SECONDS", defaults.content_reload_seconds),
            preview_enabled=as_bool(env, "CDS_PREVIEW_ENABLED", not require_jwt),
            state_dir=Path(env.get("CDS_STATE_DIR") or defaults.state_dir),
        )

    def check(self) -> None:
        """Refuse to start when JWTs are required but could never be verified."""
        refused = sorted(set(self.jwt_algorithms) - ASYMMETRIC_ALGORITHMS)
        if refused:
            raise SettingsError(f"JWT algorithms {', '.join(refused)} are not allowed (asymmetric ones only)")
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

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        if self.cors_origins is not None:
            return self.cors_origins
        return () if self.require_jwt else ("*",)


def as_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    if raw.strip().lower() in TRUE_WORDS:
        return True
    if raw.strip().lower() in FALSE_WORDS:
        return False
    raise SettingsError(f"{name}={raw!r}: expected true or false")


def as_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a whole number") from None
    if value < 0:
        raise SettingsError(f"{name}={raw!r}: must not be negative")
    return value


def as_allowlist(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    entries = [e for e in (env.get(name) or "").split(",") if e.strip()]
    try:
        return parse_allowlist(entries)
    except AllowListError as error:
        raise SettingsError(f"{name}: {error}") from None


def parse_trusted_issuers(raw: str | None) -> Mapping[str, TrustedIssuer]:
    """CDS_TRUSTED_ISSUERS: {"<iss>": {"jwks_urls": ["https://..."], "tenants": ["..."]}, ...}."""
    if raw is None or raw.strip() == "":
        return MappingProxyType({})
    try:
        data = json.loads(raw)
    except ValueError as error:
        raise SettingsError(f"CDS_TRUSTED_ISSUERS is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise SettingsError('CDS_TRUSTED_ISSUERS: expected a JSON object {"<issuer>": {"jwks_urls": [...]}}')
    return MappingProxyType({issuer: parse_issuer(issuer, entry) for issuer, entry in data.items()})


def parse_issuer(issuer: str, entry: Any) -> TrustedIssuer:
    where = f"CDS_TRUSTED_ISSUERS[{issuer!r}]"
    if not issuer:
        raise SettingsError("CDS_TRUSTED_ISSUERS: an issuer must not be empty")
    if not isinstance(entry, dict):
        raise SettingsError(f'{where}: expected an object {{"jwks_urls": [...], "tenants": [...]}}')
    unknown = set(entry) - {"jwks_urls", "tenants"}
    if unknown:
        raise SettingsError(f"{where}: unknown member(s) {', '.join(sorted(unknown))}; expected jwks_urls, tenants")
    urls = string_list(entry.get("jwks_urls"), f"{where}.jwks_urls")
    if not urls:
        raise SettingsError(f"{where}.jwks_urls: list at least one JWKS URL")
    for url in urls:
        if urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).netloc:
            raise SettingsError(f"{where}.jwks_urls: {url!r} is not an http(s) URL")
    tenants = None
    if "tenants" in entry:
        tenants = frozenset(string_list(entry["tenants"], f"{where}.tenants"))
        if not tenants:
            raise SettingsError(f"{where}.tenants: list at least one tenant, or leave tenants out")
    return TrustedIssuer(issuer=issuer, jwks_urls=tuple(urls), tenants=tenants)


def string_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise SettingsError(f"{where}: expected a list of non-empty strings")
    return value


def parse_algorithms(raw: str | None) -> tuple[str, ...]:
    if raw is None or raw.strip() == "":
        return DEFAULT_ALGORITHMS
    names = tuple(name.strip() for name in raw.split(",") if name.strip())
    refused = [name for name in names if name not in ASYMMETRIC_ALGORITHMS]
    if refused or not names:
        raise SettingsError(
            f"CDS_JWT_ALGORITHMS={raw!r}: {', '.join(refused) or 'empty'} not allowed; choose among "
            f"{', '.join(sorted(ASYMMETRIC_ALGORITHMS))} (none and HMAC are never accepted)"
        )
    return names


def parse_origins(raw: str | None) -> tuple[str, ...] | None:
    if raw is None or raw.strip() == "":
        return None
    origins = tuple(origin.strip().rstrip("/") for origin in raw.split(",") if origin.strip())
    for origin in origins:
        if origin != "*" and not (urlsplit(origin).scheme in ("https", "http") and urlsplit(origin).netloc):
            raise SettingsError(f"CDS_CORS_ORIGINS: {origin!r} is not an origin such as https://ehr.example.org")
    return origins
