"""Fetching FHIR data the EHR did not prefetch: allow-listed servers, in parallel, within a time budget.

CDS Hooks 2.0.1 ("FHIR Resource Access"): GET {fhirServer}/{rendered template} with the
access token the EHR passed. The token is used for the call only: never logged, never a
cache key (its hash is), never kept.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import requests
from cachetools import TTLCache
from requests.adapters import HTTPAdapter
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from cds_service.observability import metrics
from cds_service.pipeline.decode import bundle_resources, is_readable_bundle

# A resource as the FHIR server sent it (JSON); pipeline/decode.py types it.
Resource = dict[str, Any]

log = logging.getLogger("lbp_cds.fhir")


UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
PERCENT_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
DEFAULT_PORTS = {"https": 443, "http": 80}
# Escapes a server may turn into a path separator after our check: never part of an allowed URL.
SEPARATOR_ESCAPES = ("%2F", "%5C", "\\")


def normalise(url: str) -> str | None:
    """The URL in the one form it is compared in (RFC 3986 §6): scheme and host lower-cased, unreserved
    characters unescaped (%2e is '.'), dot segments removed, default port and trailing slash dropped.
    None for what is no plain http(s) URL: userinfo, an escaped slash or backslash, no host.
    """
    unescaped = PERCENT_ESCAPE.sub(
        lambda m: chr(int(m.group(1), 16)) if chr(int(m.group(1), 16)) in UNRESERVED else m.group(0).upper(), url
    )
    try:
        parts = parse_url(unescaped.strip())
    except LocationParseError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.host or parts.auth is not None:
        return None
    path = parts.path or ""
    if any(escape in path.upper() for escape in SEPARATOR_ESCAPES):
        return None
    port = f":{parts.port}" if parts.port and parts.port != DEFAULT_PORTS[parts.scheme] else ""
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.host}{port}{path.rstrip('/')}{query}"


def is_allowed(url: str, allowlist: tuple[str, ...]) -> bool:
    """The URL lies under an allowed base (at a path boundary), both compared normalised."""
    normal = normalise(url)
    if normal is None:
        return False
    bases = (base for base in (normalise(entry) for entry in allowlist) if base is not None)
    return any(normal == base or normal.startswith(base + "/") or normal.startswith(base + "?") for base in bases)


@dataclass(frozen=True)
class FetchOutcome:
    key: str
    resources: list[Resource] | None  # None: could not be had
    problem: str | None = None
    status: int | None = None
    ms: float = 0.0
    pages: int = 0
    cached: bool = False

    @property
    def label(self) -> str:
        """A small vocabulary for the metrics: ok, cached, http_<status>, or failed."""
        if self.resources is not None:
            return "cached" if self.cached else "ok"
        return f"http_{self.status}" if self.status and self.status != 200 else "failed"


@dataclass
class FhirFetcher:
    allowlist: tuple[str, ...]
    budget_ms: int = 350
    page_limit: int = 5
    cache_seconds: int = 30
    cache_size: int = 1024
    max_workers: int = 8
    _session: requests.Session = field(init=False, repr=False)
    _executor: ThreadPoolExecutor = field(init=False, repr=False)
    _cache: TTLCache[tuple[str, str, str], list[Resource]] | None = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    fallbacks: Counter[str] = field(init=False, default_factory=Counter)

    def __post_init__(self) -> None:
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=16, pool_maxsize=self.max_workers * 2, max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._executor = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="fhir-fetch")
        self._cache = TTLCache(self.cache_size, self.cache_seconds) if self.cache_seconds > 0 else None

    def allows(self, fhir_server: str) -> bool:
        return is_allowed(fhir_server, self.allowlist)

    def close(self) -> None:
        """Stop the fetch threads (fetches in flight are abandoned) and close the connections."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    def deadline(self) -> float:
        """When the budget of a call whose fetching starts now runs out (time.monotonic())."""
        return time.monotonic() + self.budget_ms / 1000

    def fetch_all(
        self,
        fhir_server: str,
        token: str | None,
        queries: Mapping[str, tuple[str, str]],
        deadline: float | None = None,
    ) -> list[FetchOutcome]:
        """Fetch every key (key → (template, rendered query)) in parallel; stop waiting at the deadline
        (the call's budget: a second round of the same call gets only what is left of it).

        The server is called at its normalised URL: the one the allow-list was checked against."""
        fhir_server = normalise(fhir_server) or fhir_server
        started = time.monotonic()
        deadline = self.deadline() if deadline is None else deadline
        futures: dict[str, Future[FetchOutcome]] = {
            key: self._executor.submit(self._fetch, key, fhir_server, token, query, deadline)
            for key, (_template, query) in queries.items()
        }
        wait(futures.values(), timeout=max(0.0, deadline - time.monotonic()))
        outcomes = []
        for key, future in futures.items():
            if future.done():
                outcome = future.result()
            else:
                future.cancel()
                waited = (time.monotonic() - started) * 1000
                outcome = FetchOutcome(key, None, "no answer within the time budget", ms=waited)
            self._record(outcome, queries[key][0])
            outcomes.append(outcome)
        return outcomes

    def _record(self, outcome: FetchOutcome, template: str) -> None:
        with self._lock:
            self.fallbacks[outcome.key] += 1
            count = self.fallbacks[outcome.key]
        metrics.FHIR_FETCHES.labels(key=outcome.key, outcome=outcome.label).inc()
        # The template, not the rendered query: no patient identifiers in the log.
        fields = {
            "event": "fhir_fetch",
            "key": outcome.key,
            "query": template,
            "status": outcome.status,
            "ms": round(outcome.ms, 1),
            "pages": outcome.pages,
            "cached": outcome.cached,
            "problem": outcome.problem,
            "prefetch_fallbacks": count,
        }
        log.info("fhir fetch %s", " ".join(f"{k}={v}" for k, v in fields.items() if k != "event"), extra=fields)

    def _fetch(self, key: str, server: str, token: str | None, query: str, deadline: float) -> FetchOutcome:
        started = time.monotonic()
        cache_key = (server, query, hashlib.sha256((token or "").encode()).hexdigest())
        cached = self._cached(cache_key)
        if cached is not None:
            return FetchOutcome(key, cached, ms=(time.monotonic() - started) * 1000, cached=True)
        url: str | None = f"{server.rstrip('/')}/{query.lstrip('/')}"
        resources: list[Resource] = []
        pages = status = 0
        try:
            while url and pages < self.page_limit:
                status, body = self._get(url, token, deadline)
                if status != 200:
                    return self._failed(key, f"FHIR server answered HTTP {status}", status, started, pages)
                if not is_resource(body) or body.get("resourceType") == "OperationOutcome":
                    problem = "FHIR server answered something that is not a FHIR resource"
                    return self._failed(key, problem, status, started, pages)
                if body["resourceType"] == "Bundle" and not is_readable_bundle(body):
                    problem = "FHIR server answered a Bundle not shaped as FHIR R4 says (entry or link)"
                    return self._failed(key, problem, status, started, pages)
                resources += [r for r in bundle_resources(body) if isinstance(r, dict)]
                pages += 1
                url = next_link(body)
                if url and not is_allowed(url, (server,)):
                    return self._failed(key, "next page is on another server", status, started, pages)
                url = normalise(url) if url else None  # fetched as it was checked
        except requests.Timeout:
            return self._failed(key, "FHIR server did not answer within the time budget", None, started, pages)
        except requests.RequestException as error:
            return self._failed(key, f"FHIR server unreachable ({type(error).__name__})", None, started, pages)
        if url:  # pages left beyond the limit: the data is incomplete
            return self._failed(key, f"more than {self.page_limit} pages of results", status, started, pages)
        self._store(cache_key, resources)
        return FetchOutcome(key, resources, status=status, ms=(time.monotonic() - started) * 1000, pages=pages)

    def _get(self, url: str, token: str | None, deadline: float) -> tuple[int, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise requests.Timeout("budget spent")
        headers = {"Accept": "application/fhir+json, application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = self._session.get(url, headers=headers, timeout=(remaining, remaining), allow_redirects=False)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    def _failed(self, key: str, problem: str, status: int | None, started: float, pages: int) -> FetchOutcome:
        return FetchOutcome(key, None, problem, status, (time.monotonic() - started) * 1000, pages)

    def _cached(self, cache_key: tuple[str, str, str]) -> list[Resource] | None:
        if self._cache is None:
            return None
        with self._lock:
            return self._cache.get(cache_key)

    def _store(self, cache_key: tuple[str, str, str], resources: list[Resource]) -> None:
        if self._cache is not None:
            with self._lock:
                self._cache[cache_key] = resources


def is_resource(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str)


def next_link(bundle: Mapping[str, Any]) -> str | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(url := link.get("url"), str):
            return url
    return None
