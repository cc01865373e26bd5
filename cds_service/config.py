"""Settings from environment variables, with embedded development-friendly defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cds_service.content import DEFAULT_CONTENT_DIR
from cds_service.fhir_client import AllowListError, parse_allowlist

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


class SettingsError(ValueError):
    """An environment variable has a value the service cannot use."""


@dataclass(frozen=True)
class Settings:
    public_base_url: str | None = None  # e.g. https://cds.example.org; else taken from the request
    require_jwt: bool = True
    database_url: str = "sqlite:///var/lbp-cds.sqlite3"
    max_body_bytes: int = 5 * 1024 * 1024
    trusted_proxy_hops: int = 0  # X-Forwarded-* headers trusted from this many proxies
    content_dir: Path = DEFAULT_CONTENT_DIR
    fhir_allowlist: tuple[str, ...] = ()  # FHIR base URLs the service may call; empty: none
    fhir_budget_ms: int = 350  # one budget for all fetching in a hook call
    fhir_page_limit: int = 5
    fhir_cache_seconds: int = 30  # 0 turns the FHIR response cache off
    fhir_cache_size: int = 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        defaults = cls()
        return cls(
            public_base_url=(env.get("CDS_PUBLIC_BASE_URL") or "").rstrip("/") or None,
            require_jwt=as_bool(env, "CDS_REQUIRE_JWT", defaults.require_jwt),
            database_url=env.get("CDS_DATABASE_URL") or defaults.database_url,
            max_body_bytes=as_int(env, "CDS_MAX_BODY_BYTES", defaults.max_body_bytes),
            trusted_proxy_hops=as_int(env, "CDS_TRUSTED_PROXY_HOPS", defaults.trusted_proxy_hops),
            content_dir=Path(env.get("CDS_CONTENT_DIR") or defaults.content_dir),
            fhir_allowlist=as_allowlist(env, "CDS_FHIR_ALLOWLIST"),
            fhir_budget_ms=as_int(env, "CDS_FHIR_BUDGET_MS", defaults.fhir_budget_ms),
            fhir_page_limit=as_int(env, "CDS_FHIR_PAGE_LIMIT", defaults.fhir_page_limit),
            fhir_cache_seconds=as_int(env, "CDS_FHIR_CACHE_SECONDS", defaults.fhir_cache_seconds),
            fhir_cache_size=as_int(env, "CDS_FHIR_CACHE_SIZE", defaults.fhir_cache_size),
        )


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
