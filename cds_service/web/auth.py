"""Verifying the CDS client's JWT (CDS Hooks 2.0.1 "Trusting CDS Clients", and the best-practices page).

Every rejection raises Unauthorized with the same message; why it was rejected goes to the log. The log
names only what the configuration vouches for (a trusted issuer, a kid found in its keys) and a short
hash of the jti: never the token, nor any claim or header value an unverified token carries.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt
import redis
import requests
from cachetools import TLRUCache, TTLCache

from cds_service.errors import StorageUnavailable, Unauthorized
from cds_service.observability import metrics
from cds_service.settings import ASYMMETRIC_ALGORITHMS, JwkSet, Settings, TrustedIssuer, signing_keys

log = logging.getLogger("lbp_cds.auth")

JWKS_TIMEOUT_SECONDS = 5
JWKS_MAX_BYTES = 256 * 1024
KID_MISS_REFETCH_SECONDS = 60.0  # an unknown kid refetches a JWKS at most this often (key rotation)
# The claims the service reads, and the JSON type each must have (RFC 7519 §4.1): a NumericDate is a JSON
# number (never a string, nor true/false), within the calendar Python can hold.
NUMERIC_DATE_CLAIMS = ("exp", "iat", "nbf")
STRING_CLAIMS = ("iss", "jti", "tenant")
LAST_NUMERIC_DATE = 253402300799  # 9999-12-31T23:59:59Z
# JWS algorithm names (RFC 7518): safe to log even when a token names one we refuse.
JWS_ALGORITHMS = ASYMMETRIC_ALGORITHMS | {"none", "HS256", "HS384", "HS512", "EdDSA", "ES256K"}


def fingerprint(value: str) -> str:
    """A short hash that lets an operator match a jti (or tenant) without the log holding it."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:12]


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
    subject: str | None = None  # the JWT `sub`: only ever stored as a keyed pseudonym (analytics)


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

    def reachable(self) -> bool:
        """For /readyz: Redis answers a PING now, so an outage shows before a hook call fails."""
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self.client.close()


class WorkerReplayGuard:
    """The shared replay store (database or Redis), with this worker's own memory of the jtis it accepted.

    A jti this worker has seen is refused without asking the shared store, so no worker ever accepts
    a token twice, even while the shared store is down. When it is down, `outage` says what happens:
    "local" answers on this worker's memory alone (a token could then be replayed once against
    another worker or replica: /readyz and lbp_jwt_replay_local_total say so), "refuse" answers 503.
    The memory is bounded: a jti it had no room for makes the next outage answer 503 until that
    token has expired, as it could no longer vouch for it. After a failure the shared store is asked
    again only every RETRY_SECONDS, so an outage that drops packets does not cost each call a connect
    timeout (with "refuse", every call asks it: 503 lasts no longer than the outage).
    """

    RETRY_SECONDS = 5.0

    def __init__(self, shared: ReplayStore, name: str, capacity: int, outage: str) -> None:
        self.shared = shared
        self.name = name  # "database" or "redis": for /readyz
        self.outage = outage
        self._seen: TLRUCache[str, float] = TLRUCache(
            maxsize=capacity, ttu=lambda _key, expiry, _now: expiry, timer=time.time
        )
        self._blind_until = 0.0  # a jti accepted but not remembered expires then
        self._lock = threading.Lock()
        self.local_since: float | None = None  # when the shared store stopped answering (None: it answers)
        self._retry_at = 0.0

    def first_use(self, token_id: str, expires_at: datetime) -> bool:
        expiry = expires_at.timestamp()
        with self._lock:
            if token_id in self._seen:
                return False
        if self.outage == "local" and self.local_since is not None and time.monotonic() < self._retry_at:
            first = self.answer_locally()
        else:
            try:
                first = self.shared.first_use(token_id, expires_at)
            except StorageUnavailable:
                self._retry_at = time.monotonic() + self.RETRY_SECONDS
                first = self.answer_locally()
            else:
                self.back_to_shared()
        if first:
            self.remember(token_id, expiry)
        return first

    def answer_locally(self) -> bool:
        if self.local_since is None:
            self.local_since = time.time()
            log.warning(
                "JWT replay store (%s) unreachable: %s",
                self.name,
                "hook calls answered 503"
                if self.outage == "refuse"
                else "replays refused by this worker's memory only",
            )
        if self.outage == "refuse" or time.time() < self._blind_until:
            raise StorageUnavailable("The JWT replay store cannot be reached.")
        metrics.JWT_REPLAY_LOCAL.inc()
        return True

    def back_to_shared(self) -> None:
        if self.local_since is not None:
            log.warning("JWT replay store (%s) answers again", self.name)
            self.local_since = None

    def remember(self, token_id: str, expiry: float) -> None:
        with self._lock:
            self._seen.expire()
            if len(self._seen) >= (self._seen.maxsize or 0):
                self._blind_until = max(self._blind_until, expiry)
                return
            self._seen[token_id] = expiry

    def status(self, down: bool) -> str:
        """For /readyz: "ok", or what hook calls get while the shared store is `down` (or last failed)."""
        if not down and self.local_since is None:
            return "ok"
        since = (
            f" since {datetime.fromtimestamp(self.local_since, UTC).isoformat(timespec='seconds')}"
            if self.local_since is not None
            else ""
        )
        if self.outage == "refuse":
            return f"{self.name} unreachable{since}: hook calls answered 503 (CDS_JWT_REPLAY_OUTAGE=refuse)"
        return f"{self.name} unreachable{since}: replays refused by each worker's own memory only"

    def close(self) -> None:
        self.shared.close()


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

    def find(self, urls: tuple[str, ...], kid: str) -> Mapping[str, Any] | None:
        """The JWK named kid in the first of these JWK Sets that has it; one rate-limited refetch if none."""
        for url in urls:
            if (key := self.keys(url).get(kid)) is not None:
                return key
        for url in urls:
            if self.may_refetch(url) and (key := self.keys(url, refresh=True).get(kid)) is not None:
                log.info("JWKS %s refetched: new key %s (rotation)", url, kid)
                return key
        return None

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


def fetch_jwks(url: str) -> JwkSet:
    """Signing keys by kid. Keys without a kid, or meant for encryption, cannot be chosen by a JWT."""
    try:
        response = requests.get(url, timeout=JWKS_TIMEOUT_SECONDS, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > JWKS_MAX_BYTES:
            raise Rejected("jwks-unavailable", f"JWKS {url} is larger than {JWKS_MAX_BYTES} bytes")
        return signing_keys(response.json(), f"JWKS {url}")
    except (requests.RequestException, ValueError) as error:
        raise Rejected("jwks-unavailable", f"JWKS {url} could not be fetched: {type(error).__name__}") from None


class JwtVerifier:
    def __init__(
        self,
        settings: Settings,
        replay_store: WorkerReplayGuard,
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

    def verify(self, authorization: str | None, audience: str, endpoint: str) -> Caller:
        """Check an Authorization header for the endpoint at `audience`; raise Unauthorized if it fails.

        The log names `endpoint` (the route, which masks what the client chose in the path), never `audience`.
        """
        try:
            return self.check(bearer_token(authorization), audience)
        except Rejected as reason:
            expected = f" (expected {endpoint})" if reason.kind == "audience" else ""
            log.warning(
                "JWT rejected for %s: %s: %s%s",
                endpoint,
                reason.kind,
                reason,
                expected,
                extra={"event": "jwt_rejected", "reason": reason.kind},
            )
            metrics.JWT_REJECTIONS.labels(reason=reason.kind).inc()
            raise Unauthorized() from None

    def check(self, token: str, audience: str) -> Caller:
        header, unverified = read_unverified(token)
        alg = header.get("alg")
        if alg not in self.algorithms:
            named = alg if isinstance(alg, str) and alg in JWS_ALGORITHMS else "another"
            raise Rejected("algorithm", f"algorithm {named} is not accepted ({', '.join(self.algorithms)})")
        check_claim_types(unverified)  # before PyJWT reads them: it takes "123" for a date, and fails on a list
        issuer = self.trusted_issuer(unverified.get("iss"))
        kid, key = self.signing_key(header, issuer, alg)
        claims = self.decode(token, key, alg, issuer.issuer, audience)
        self.check_lifetime(claims)
        tenant = self.check_tenant(claims, issuer)
        sub = claims.get("sub")
        caller = Caller(
            issuer=issuer.issuer, tenant=tenant, jti=claims["jti"], subject=sub if isinstance(sub, str) else None
        )
        self.check_replay(caller, claims["exp"])  # last: a token failing any other check uses up no jti
        log.info(
            "JWT accepted: iss=%s tenant=%s kid=%s jti=%s",
            caller.issuer,
            tenant if tenant is None or issuer.tenants else fingerprint(tenant),
            kid,
            fingerprint(str(caller.jti)),
        )
        return caller

    def trusted_issuer(self, iss: Any) -> TrustedIssuer:
        if not isinstance(iss, str) or iss not in self.issuers:
            raise Rejected("issuer", f"the token's iss is none of the trusted issuers ({', '.join(self.issuers)})")
        return self.issuers[iss]

    def signing_key(self, header: Mapping[str, Any], issuer: TrustedIssuer, alg: str) -> tuple[str, jwt.PyJWK]:
        """The key the header's kid names among the issuer's keys; with a jku, among that listed set only."""
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Rejected("unknown-key", "no kid in the JWT header")
        jwk = self.find_key(header.get("jku"), issuer, kid)
        if jwk is None:
            raise Rejected("unknown-key", f"the kid names none of the keys of {issuer.issuer}")
        if jwk.get("alg", alg) != alg:
            raise Rejected("algorithm", f"key {kid} of {issuer.issuer} is for {jwk.get('alg')}, the token says {alg}")
        try:
            return kid, jwt.PyJWK(dict(jwk), algorithm=alg)
        except jwt.PyJWTError as error:
            raise Rejected("algorithm", f"key {kid} cannot verify {alg}: {type(error).__name__}") from None

    def find_key(self, jku: Any, issuer: TrustedIssuer, kid: str) -> Mapping[str, Any] | None:
        if jku is None:
            return issuer.pinned_keys.get(kid) or self.jwks.find(issuer.jwks_urls, kid)
        if isinstance(jku, str) and jku in issuer.jku_copies:
            return issuer.jku_copies[jku].get(kid)  # a local copy: never fetched
        if isinstance(jku, str) and jku in issuer.jwks_urls:
            return self.jwks.find((jku,), kid)
        # Never fetch a key set the token itself points at: it would let anyone sign.
        raise Rejected("foreign-jku", f"the jku is not a listed JWKS URL of {issuer.issuer}")

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
            raise Rejected(claim_failure(error), type(error).__name__) from None
        except (TypeError, ValueError, OverflowError) as error:  # a claim PyJWT could not read: never a 500
            raise Rejected("invalid", f"a claim could not be read ({type(error).__name__})") from None

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
        if tenant is not None and (not isinstance(tenant, str) or "\x00" in tenant):
            raise Rejected("tenant", "tenant is not a string (without NUL)")
        if issuer.tenants is not None and tenant not in issuer.tenants:
            raise Rejected("tenant", f"the tenant is not one listed for {issuer.issuer}")
        return tenant

    def check_replay(self, caller: Caller, exp: float) -> None:
        if not isinstance(caller.jti, str) or not caller.jti:
            raise Rejected("replay", "jti is not a non-empty string")
        token_id = hashlib.sha256(f"{caller.issuer}\0{caller.jti}".encode()).hexdigest()
        expires_at = datetime.fromtimestamp(exp + self.leeway, UTC)
        if not self.replay_store.first_use(token_id, expires_at):
            raise Rejected("replay", f"jti {fingerprint(caller.jti)} of {caller.issuer} was already used (replay)")


def check_claim_types(claims: Mapping[str, Any]) -> None:
    """Rejected ("invalid") when a claim the service reads is present with the wrong JSON type; names the claim,
    never its value."""
    for name in NUMERIC_DATE_CLAIMS:
        if name in claims and not is_numeric_date(claims[name]):
            raise Rejected("invalid", f"{name} is not a NumericDate (a JSON number of seconds)")
    for name in STRING_CLAIMS:
        if name in claims and not isinstance(claims[name], str):
            raise Rejected("invalid", f"{name} is not a string")
    if "jti" in claims and not claims["jti"]:
        raise Rejected("invalid", "jti is empty")
    audience = claims.get("aud")
    if "aud" in claims and not (
        isinstance(audience, str) or (isinstance(audience, list) and all(isinstance(a, str) for a in audience))
    ):
        raise Rejected("invalid", "aud is not a string or an array of strings")


def is_numeric_date(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value) and abs(value) <= LAST_NUMERIC_DATE


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
        raise Rejected("malformed", f"malformed JWT ({type(error).__name__})") from None
    return header, claims
