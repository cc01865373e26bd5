"""The app's shared objects, built once from the settings, held in one typed place, closed together.

Every room gets what it needs from here: `services_of(app)` (or `current_services()` inside a request)
is the only reader of the Flask app's extensions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

from flask import Flask, current_app

from cds_service.content.live import ContentSource, FixedContent, LiveContent
from cds_service.content.loader import Content
from cds_service.errors import ContentUnavailable
from cds_service.pipeline import validation
from cds_service.pipeline.call import CallDependencies
from cds_service.pipeline.clock import Clock, FixedClock, SystemClock
from cds_service.pipeline.fhir_client import FhirFetcher
from cds_service.pipeline.prior_notification import FormLinks
from cds_service.pipeline.registry import Registry
from cds_service.settings import Settings
from cds_service.storage.database import Storage
from cds_service.storage.issued import IssuedCardRecorder
from cds_service.storage.prior_notifications import PriorNotificationStore, Scope
from cds_service.web.auth import Caller, JwtVerifier, RedisReplayStore, ReplayStore, WorkerReplayGuard
from hooks import SERVICES

log = logging.getLogger("lbp_cds")
EXTENSION = "lbp-cds"  # the one key under which a Flask app holds its AppServices


@dataclass
class AppServices:
    settings: Settings
    registry: Registry
    content: ContentSource
    clock: Clock
    fetcher: FhirFetcher
    storage: Storage
    issued_cards: IssuedCardRecorder
    jwt_verifier: JwtVerifier | None  # None: JWTs not required (development)
    prior_notifications: PriorNotificationStore
    form_links: FormLinks

    def current_content(self) -> Content:
        """The content to answer with; 503 when no valid content was ever loaded."""
        content = self.content.current
        if content is None:
            problems = self.content.problems
            first = problems[0] if problems else "unknown"
            raise ContentUnavailable(
                f"The clinical content is invalid and no earlier valid version is available "
                f"({len(problems)} problem(s); the first: {first})."
            )
        return content

    def call_dependencies(self, base_url: str, caller: Caller | None = None) -> CallDependencies:
        return CallDependencies(
            self.current_content(),
            self.fetcher,
            self.clock.today(),
            base_url,
            notifications=self.prior_notifications,
            form_links=self.form_links,
            scope=scope_of(caller),
        )

    def close(self) -> None:
        """Stop threads and close connections, the issued-card writer first (it still writes)."""
        self.issued_cards.close()
        if self.jwt_verifier is not None:
            self.jwt_verifier.close()
        self.fetcher.close()
        self.storage.close()
        self.content.close()


def build_services(
    settings: Settings,
    content: Content | None = None,
    clock: Clock | None = None,
    require_content: bool = True,
    serving: bool = True,
) -> AppServices:
    """Content given here is fixed; otherwise it is loaded from settings.content_dir and kept current.

    Only a serving app keeps the last good copy of the content: a command (content validate) writes nothing.
    """
    validation.prepare(service.hook for service in SERVICES)
    storage = Storage(settings.database_url)  # connects on first use: a database outage never stops start-up
    return AppServices(
        settings=settings,
        registry=Registry(SERVICES),
        content=FixedContent(content) if content is not None else live_content(settings, require_content, serving),
        clock=clock or settings_clock(settings),
        fetcher=FhirFetcher(
            allowlist=settings.fhir_allowlist,
            budget_ms=settings.fhir_budget_ms,
            page_limit=settings.fhir_page_limit,
            cache_seconds=settings.fhir_cache_seconds,
            cache_size=settings.fhir_cache_size,
        ),
        storage=storage,
        issued_cards=IssuedCardRecorder(storage),
        jwt_verifier=jwt_verifier(settings, storage),
        prior_notifications=PriorNotificationStore(storage),
        form_links=FormLinks(settings.signing_key, timedelta(days=settings.pn_link_days)),
    )


def scope_of(caller: Caller | None) -> Scope:
    """The EHR a call comes from: its JWT's issuer and tenant (none in development, without JWTs)."""
    return Scope(caller.issuer, caller.tenant) if caller is not None else Scope()


def settings_clock(settings: Settings) -> Clock:
    if settings.clinical_date is None:
        return SystemClock(settings.zone)
    log.warning(
        "CDS_CLINICAL_DATE=%s: every call is judged as of that date (tests and demos only)", settings.clinical_date
    )
    return FixedClock(settings.clinical_date)


def live_content(settings: Settings, require: bool, serving: bool) -> LiveContent:
    live = LiveContent(settings.content_dir, settings.content_reload_seconds, settings.state_dir, serving)
    live.start(require)
    return live


def jwt_verifier(settings: Settings, storage: Storage) -> JwtVerifier | None:
    if not settings.require_jwt:
        return None
    # Shared by every worker and replica, so a token cannot be replayed against another process.
    shared: ReplayStore = RedisReplayStore(settings.redis_url) if settings.redis_url else storage
    guard = WorkerReplayGuard(
        shared,
        "redis" if settings.redis_url else "database",
        settings.jwt_replay_cache_size,
        settings.jwt_replay_outage,
    )
    return JwtVerifier(settings, guard)


def attach(app: Flask, services: AppServices) -> None:
    app.extensions[EXTENSION] = services


def services_of(app: Flask) -> AppServices:
    return cast(AppServices, app.extensions[EXTENSION])


def current_services() -> AppServices:
    """The services of the app handling the current request (or CLI command)."""
    return services_of(current_app)
