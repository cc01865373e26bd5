"""Settings from environment variables, with embedded development-friendly defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cds_service.content import DEFAULT_CONTENT_DIR

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})
DEFAULT_STATE_DIR = DEFAULT_CONTENT_DIR.parent / "var"


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
            database_url=env.get("CDS_DATABASE_URL") or defaults.database_url,
            max_body_bytes=as_int(env, "CDS_MAX_BODY_BYTES", defaults.max_body_bytes),
            trusted_proxy_hops=as_int(env, "CDS_TRUSTED_PROXY_HOPS", defaults.trusted_proxy_hops),
            content_dir=Path(env.get("CDS_CONTENT_DIR") or defaults.content_dir),
            content_reload_seconds=as_int(env, "CDS_CONTENT_RELOAD_SECONDS", defaults.content_reload_seconds),
            preview_enabled=as_bool(env, "CDS_PREVIEW_ENABLED", not require_jwt),
            state_dir=Path(env.get("CDS_STATE_DIR") or defaults.state_dir),
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
