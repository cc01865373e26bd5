"""Verifying the CDS client's JWT (CDS Hooks 2.0.1 "Trusting CDS Clients", and the best-practices page).

Every rejection raises Unauthorized with the same message; why it was rejected goes to the log, with the
issuer, kid and jti but never the token itself.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt
import redis
import requests
from cachetools import TTLCache

from cds_service.errors import StorageUnavailable, Unauthorized
from cds_service.observability import metrics
from cds_service.settings import ASYMMETRIC_ALGORITHMS, Settings, TrustedIssuer

log = logging.getLogger("lbp_cds.auth")

JWKS_TIMEOUT_SECONDS = 5
JWKS_MAX_BYTES = 256 * 1024
KID_MISS_REFETCH_SECONDS = 60.0  # an unknown kid refetches a JWKS at most this often (key rotation)


class Rejected(Exception):
    """Why a token was refused: logged and counted by kind, never sent to the caller."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # a small fixed vocabulary: the label of the rejections metric


@dataclass(frozen=True)
class Caller:
    """Who a verified token says is calling: stored with feedback, safe to log."""

    issuer: str
    tenant: str | None
    jti: str


class ReplayStore(Protocol):
    def first_use(self, token_id: str, expires_at: datetime) -> bool:
        """Remember token_id until expires_at; False when it was already remembered."""
        ...

    def close(self) -> None: ...


class RedisReplayStore:
    """The replay store when CDS_REDIS_URL is set: SET NX with the token's own expiry."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)

    def first_use(self, token_id: str, expires_at: datetime) -> bool:
        try:
            return bool(self.client.set(f"lbp-cds:jti:{token_id}", 1, nx=True, exat=int(expires_at.timestamp()) + 1))
        except redis.RedisError as error:
            log.warning("JWT replay store (Redis) unavailable: %s", type(error).__name__)
            raise StorageUnavailable("The JWT replay store cannot be reached.") from error

    def close(self) -> None:
        self.client.close()


class JwksCache:
    """Each issuer's JWK Sets, fetched with requests and kept for a TTL; shared by the worker's threads."""

    def __init__(
        self,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        refetch_seconds: float = KID_MISS_REFETCH_SECONDS,
    ) -> None:
        self._sets: TTLCache[str, Mapping[str, Mapping[str, Any]]] = TTLCache(
            maxsize=256, ttl=max(ttl_seconds, 1), timer=clock
        )
        self._last_kid_miss: dict[str, float] = {}
        self._clock = clock
        self._refetch_seconds = refetch_seconds
        self._lock = threading.Lock()

    def find(self, urls: tuple[str, ...], kid: str) -> Mapping[str, Any]:
        """The JWK named kid in the first of these JWK Sets that has it; one rate-limited refetch if none."""
        for url in urls:
            if (key := self.keys(url).get(kid)) is not None:
                return key
        for url in urls:
            if self.may_refetch(url) and (key := self.keys(url, refresh=True).get(kid)) is not None:
                log.info("JWKS %s refetched: new key %s (rotation)", url, kid)
                return key
        raise Rejected("unknown-key", f"no key {kid!r} in {', '.join(urls)}")

    def keys(self, url: str, refresh: bool = False) -> Mapping[str, Mapping[str, Any]]:
        with self._lock:
            cached = None if refresh else self._sets.get(url)
            if cached is None:
                cached = self._sets[url] = fetch_jwks(url)
            return cached

    def may_refetch(self, url: str) -> bool:
        with self._lock:
            now = self._clock()
            last = self._last_kid_miss.get(url)
            if last is not None and now - last < self._refetch_seconds:
                return False
            self._last_kid_miss[url] = now
            return True


def fetch_jwks(url: str) -> Mapping[str, Mapping[str, Any]]:
    """Signing keys by kid. Keys without a kid, or meant for encryption, cannot be chosen by a JWT."""
    try:
        response = requests.get(url, timeout=JWKS_TIMEOUT_SECONDS, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > JWKS_MAX_BYTES:
            raise Rejected("jwks-unavailable", f"JWKS {url} is larger than {JWKS_MAX_BYTES} bytes")
        keys = response.json()["keys"]
    except (requests.RequestException, ValueError, KeyError, TypeError) as error:
        raise Rejected(
            "jwks-unavailable", f"JWKS {url} could not be fetched: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(keys, list):
        raise Rejected("jwks-unavailable", f"JWKS {url}: 'keys' is not a list")
    return {
        key["kid"]: key
        for key in keys
        if isinstance(key, dict) and isinstance(key.get("kid"), str) and key.get("use", "sig") == "sig"
    }


class JwtVerifier:
    def __init__(
        self,
        settings: Settings,
        replay_store: ReplayStore,
        jwks: JwksCache | None = None,
    ) -> None:
        self.issuers = settings.trusted_issuers
        # Never `none` or HMAC, whatever the configuration says.
        self.algorithms = [alg for alg in settings.jwt_algorithms if alg in ASYMMETRIC_ALGORITHMS]
        self.leeway = settings.jwt_leeway_seconds
        self.max_lifetime = settings.jwt_max_lifetime_seconds
        self.replay_store = replay_store
        self.jwks = jwks or JwksCache(settings.jwks_cache_seconds)

    def close(self) -> None:
        self.replay_store.close()

    def verify(self, authorization: str | None, audience: str) -> Caller:
        """Check an Authorization header for the endpoint at `audience`; raise Unauthorized if it fails."""
        try:
            return self.check(bearer_token(authorization), audience)
        except Rejected as reason:
            log.warning(
                "JWT rejected for %s: %s", audience, reason, extra={"event": "jwt_rejected", "reason": reason.kind}
            )
            metrics.JWT_REJECTIONS.labels(reason=reason.kind).inc()
            raise Unauthorized() from None

    def check(self, token: str, audience: str) -> Caller:
        header, unverified = read_unverified(token)
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise Rejected("algorithm", f"algorithm {alg!r} is not accepted ({', '.join(self.algorithms)})")
        issuer = self.trusted_issuer(unverified.get("iss"))
        key = self.signing_key(header, issuer, alg)
        claims = self.decode(token, key, alg, issuer.issuer, audience)
        self.check_lifetime(claims)
        tenant = self.check_tenant(claims, issuer)
        caller = Caller(issuer=issuer.issuer, tenant=tenant, jti=claims["jti"])
        self.check_replay(caller, claims["exp"])  # last: a token failing any other check uses up no jti
        log.info("JWT accepted: iss=%s tenant=%s kid=%s jti=%s", caller.issuer, tenant, header.get("kid"), caller.jti)
        return caller

    def trusted_issuer(self, iss: Any) -> TrustedIssuer:
        if not isinstance(iss, str) or iss not in self.issuers:
            raise Rejected("issuer", f"issuer {iss!r} is not trusted")
        return self.issuers[iss]

    def signing_key(self, header: Mapping[str, Any], issuer: TrustedIssuer, alg: str) -> jwt.PyJWK:
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Rejected("unknown-key", "no kid in the JWT header")
        jku = header.get("jku")
        if jku is not None and jku not in issuer.jwks_urls:
            # Never fetch a key set the token itself points at: it would let anyone sign.
            raise Rejected("foreign-jku", f"jku {jku!r} is not an allow-listed JWKS URL of {issuer.issuer}")
        jwk = self.jwks.find((jku,) if jku else issuer.jwks_urls, kid)
        if jwk.get("alg", alg) != alg:
            raise Rejected("algorithm", f"key {kid!r} is for {jwk.get('alg')}, the token says {alg}")
        try:
            return jwt.PyJWK(dict(jwk), algorithm=alg)
        except jwt.PyJWTError as error:
            raise Rejected("algorithm", f"key {kid!r} cannot verify {alg}: {error}") from None

    def decode(self, token: str, key: jwt.PyJWK, alg: str, issuer: str, audience: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "jti"], "enforce_minimum_key_length": True},
            )
        except jwt.PyJWTError as error:
            raise Rejected(claim_failure(error), f"{type(error).__name__}: {error}") from None

    def check_lifetime(self, claims: Mapping[str, Any]) -> None:
        # Without iat, what is left of the lifetime counts: a token must not be usable for long.
        start = claims.get("iat", time.time())
        if claims["exp"] - start > self.max_lifetime:
            raise Rejected(
                "lifetime", f"lifetime {claims['exp'] - start:.0f}s is over the maximum of {self.max_lifetime}s"
            )

    @staticmethod
    def check_tenant(claims: Mapping[str, Any], issuer: TrustedIssuer) -> str | None:
        tenant = claims.get("tenant")
        if tenant is not None and not isinstance(tenant, str):
            raise Rejected("tenant", "tenant is not a string")
        if issuer.tenants is not None and tenant not in issuer.tenants:
            raise Rejected("tenant", f"tenant {tenant!r} is not listed for {issuer.issuer}")
        return tenant

    def check_replay(self, caller: Caller, exp: float) -> None:
        if not isinstance(caller.jti, str) or not caller.jti:
            raise Rejected("replay", "jti is not a non-empty string")
        token_id = hashlib.sha256(f"{caller.issuer}\0{caller.jti}".encode()).hexdigest()
        expires_at = datetime.fromtimestamp(exp + self.leeway, UTC)
        if not self.replay_store.first_use(token_id, expires_at):
            raise Rejected("replay", f"jti {caller.jti!r} of {caller.issuer} was already used (replay)")


def claim_failure(error: jwt.PyJWTError) -> str:
    """The kind of a signature or claim check PyJWT refused."""
    kinds = {
        jwt.ExpiredSignatureError: "expired",
        jwt.ImmatureSignatureError: "not-yet-valid",
        jwt.InvalidAudienceError: "audience",
        jwt.InvalidIssuerError: "issuer",
        jwt.InvalidSignatureError: "signature",
        jwt.MissingRequiredClaimError: "missing-claim",
    }
    return next((kind for cls, kind in kinds.items() if isinstance(error, cls)), "invalid")


def bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Rejected("missing", "no 'Authorization: Bearer' header")
    return token.strip()


def read_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims before the signature is checked: only to find the issuer and its key."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as error:
        raise Rejected("malformed", f"malformed JWT: {error}") from None
    return header, claims
