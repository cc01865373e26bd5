"""Settings from the environment: the security and storage variables, and their error messages."""

from __future__ import annotations

import json

import pytest

from cds_service.settings import Settings, SettingsError, TrustedIssuer

ISSUERS = {
    "https://ehr.example.com": {"jwks_urls": ["https://ehr.example.com/jwks"], "tenants": ["t1", "t2"]},
    "https://sandbox.cds-hooks.org": {"jwks_urls": ["https://sandbox.cds-hooks.org/.well-known/jwks.json"]},
}


def test_defaults():
    settings = Settings.from_env({})
    assert settings.require_jwt is True
    assert settings.trusted_issuers == {}
    assert settings.jwt_algorithms == ("ES384", "RS384")
    assert (settings.jwt_leeway_seconds, settings.jwt_max_lifetime_seconds) == (30, 3600)
    assert settings.redis_url is None
    assert settings.database_url == "sqlite:///var/lbp-cds.sqlite3"
    assert settings.allowed_origins == ()  # production: no browser origin unless configured
    assert Settings.from_env({"CDS_REQUIRE_JWT": "false"}).allowed_origins == ("*",)


def test_full_configuration():
    settings = Settings.from_env(
        {
            "CDS_TRUSTED_ISSUERS": json.dumps(ISSUERS),
            "CDS_JWT_ALGORITHMS": "ES384, PS256",
            "CDS_JWT_LEEWAY_SECONDS": "10",
            "CDS_JWT_MAX_LIFETIME_SECONDS": "300",
            "CDS_JWKS_CACHE_SECONDS": "60",
            "CDS_REDIS_URL": "redis://127.0.0.1:6379/0",
            "CDS_CORS_ORIGINS": "https://ehr.example.org, https://other.example.org/",
            "CDS_DATABASE_URL": "postgresql+psycopg://lbp@db/lbp",
        }
    )
    assert settings.trusted_issuers["https://ehr.example.com"] == TrustedIssuer(
        "https://ehr.example.com", ("https://ehr.example.com/jwks",), frozenset({"t1", "t2"})
    )
    assert settings.trusted_issuers["https://sandbox.cds-hooks.org"].tenants is None
    assert settings.jwt_algorithms == ("ES384", "PS256")
    assert (settings.jwt_leeway_seconds, settings.jwt_max_lifetime_seconds, settings.jwks_cache_seconds) == (
        10,
        300,
        60,
    )
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.allowed_origins == ("https://ehr.example.org", "https://other.example.org")
    assert settings.database_url == "postgresql+psycopg://lbp@db/lbp"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CDS_TRUSTED_ISSUERS": "{not json"}, "CDS_TRUSTED_ISSUERS is not valid JSON"),
        ({"CDS_TRUSTED_ISSUERS": "[]"}, "CDS_TRUSTED_ISSUERS: expected a JSON object"),
        ({"CDS_TRUSTED_ISSUERS": '{"https://e": "https://e/jwks"}'}, r"CDS_TRUSTED_ISSUERS\['https://e'\]: expected"),
        ({"CDS_TRUSTED_ISSUERS": '{"https://e": {"jwks_urls": []}}'}, "give its keys: jwks_urls, jwks, jwks_file"),
        ({"CDS_TRUSTED_ISSUERS": '{"https://e": {"jwks_urls": ["ftp://e/k"]}}'}, "is not an http"),
        ({"CDS_TRUSTED_ISSUERS": '{"https://e": {"jwks_url": "https://e/k"}}'}, "unknown member"),
        ({"CDS_TRUSTED_ISSUERS": '{"https://e": {"jwks_urls": ["https://e/k"], "tenants": "t1"}}'}, "tenants"),
        ({"CDS_JWT_ALGORITHMS": "RS384,HS256"}, "HS256 not allowed"),
        ({"CDS_JWT_ALGORITHMS": "none"}, "none not allowed"),
        ({"CDS_JWT_LEEWAY_SECONDS": "soon"}, "CDS_JWT_LEEWAY_SECONDS='soon': expected a whole number"),
        ({"CDS_CORS_ORIGINS": "ehr.example.org"}, "CDS_CORS_ORIGINS: 'ehr.example.org' is not an origin"),
    ],
)
def test_invalid_values_are_named(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_hmac_algorithms_are_refused_even_when_set_in_code():
    with pytest.raises(SettingsError, match="HS256"):
        Settings(require_jwt=False, jwt_algorithms=("HS256",)).check()
