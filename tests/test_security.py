"""Security details: the FHIR allow-list compares normalised URLs; issuers' keys can be pinned; answers that
may carry patient data are never cached; pages run no inline code; feedback belongs to the service that
issued the card; the same bytes are validated, versioned and saved."""

from __future__ import annotations

import csv
import io
import json
import shutil
import tarfile
import uuid
from pathlib import Path
from types import MappingProxyType

import pytest
import responses

from cds_service.app import create_app
from cds_service.content import loader
from cds_service.content.live import LiveContent
from cds_service.pipeline.fhir_client import is_allowed, normalise
from cds_service.settings import Settings, SettingsError, TrustedIssuer, signing_keys
from cds_service.wiring import services_of
from tests.builders import medication_request, ortho_referral, patient, with_fhir_server
from tests.databases import migrated
from tests.tokens import FORM_KEY, ISSUER, JWKS_URL, bearer, jwks, make_key, token_for

ROOT = Path(__file__).resolve().parent.parent
VIEW = "/cds-services/lbp-patient-view"
SELECT = "/cds-services/lbp-referral-select"

# --- the FHIR allow-list ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr/fhir/../internal",
        "https://ehr/fhir/%2e%2e/internal",
        "https://ehr/fhir/%2E%2E/internal",
        "https://ehr/fhir/./../internal",
        "https://ehr/fhir%2F..%2Finternal",
        "https://ehr/fhir/..%5Cinternal",
        "https://ehr@evil.example/fhir",
        "https://ehr.evil.example/fhir",
        "https://ehr/fhirx",
        "https://ehr:8443/fhir",
        "http://ehr/fhir",
    ],
)
def test_a_server_outside_the_allow_listed_base_does_not_pass_however_it_is_written(url):
    assert not is_allowed(url, ("https://ehr/fhir",))


@pytest.mark.parametrize(
    "url",
    [
        "https://ehr/fhir",
        "https://EHR/fhir/",
        "HTTPS://ehr:443/fhir/R4",
        "https://ehr/%66hir/R4",
        "https://ehr/x/../fhir",
    ],
)
def test_the_same_server_written_another_way_passes(url):
    assert is_allowed(url, ("https://ehr/fhir",))


def test_the_server_is_called_at_the_url_that_was_checked(settings, content):
    app = create_app(
        settings.model_copy(update=dict(fhir_allowlist=("https://ehr.example.org/fhir",))), content=content
    )
    body = with_fhir_server(patient(45).with_lbp().patient_view(), "https://EHR.example.org:443/fhir/R4/./", "t")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as fhir:
        fhir.get("https://ehr.example.org/fhir/R4/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
        app.test_client().post(VIEW, json=body)
        called = {call.request.url.split("?")[0] for call in fhir.calls}
    services_of(app).close()
    assert called and all(url.startswith("https://ehr.example.org/fhir/R4/") for url in called)
    assert normalise("https://EHR.example.org:443/fhir/R4/./") == "https://ehr.example.org/fhir/R4"


# --- pinned keys -------------------------------------------------------------------------------------------


@pytest.fixture
def key():
    return make_key("ES384")


def pinned_app(settings, content, issuer_config: dict):
    env = {
        "CDS_REQUIRE_JWT": "true",
        "CDS_PUBLIC_BASE_URL": "https://cds.example.org",
        "CDS_TRUSTED_ISSUERS": json.dumps({ISSUER: issuer_config}),
        "CDS_DATABASE_URL": settings.database_url,
        "CDS_FORM_SIGNING_KEY": FORM_KEY.get_secret_value(),
    }
    return create_app(Settings.from_env(env), content=content)


def test_an_issuers_keys_given_inline_are_used_without_fetching(settings, content, key):
    app = pinned_app(settings, content, {"jwks": jwks(key)})
    with responses.RequestsMock() as nothing_fetched:
        response = app.test_client().post(
            VIEW, json=patient(45).with_lbp().patient_view(), headers=bearer(token_for(key, VIEW))
        )
        assert not nothing_fetched.calls
    services_of(app).close()
    assert response.status_code == 200


def test_an_issuers_keys_in_a_file_are_used(settings, content, key, tmp_path):
    path = tmp_path / "ehr-jwks.json"
    path.write_text(json.dumps(jwks(key)))
    app = pinned_app(settings, content, {"jwks_file": str(path)})
    response = app.test_client().post(
        VIEW, json=patient(45).with_lbp().patient_view(), headers=bearer(token_for(key, VIEW))
    )
    services_of(app).close()
    assert response.status_code == 200


def test_a_listed_jku_is_served_from_its_local_copy_and_never_fetched(settings, content, key, tmp_path):
    """The CDS Hooks Sandbox way: ES384 with a jku on a public site this instance may not reach."""
    sandbox_jku = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
    copy = tmp_path / "sandbox-jwks.json"
    copy.write_text(json.dumps(jwks(key)))
    app = pinned_app(settings, content, {"jku_files": {sandbox_jku: str(copy)}})
    client = app.test_client()
    body = patient(45).with_lbp().patient_view()
    with responses.RequestsMock() as nothing_fetched:
        listed = client.post(VIEW, json=body, headers=bearer(token_for(key, VIEW, headers={"jku": sandbox_jku})))
        other = client.post(VIEW, json=body, headers=bearer(token_for(key, VIEW, headers={"jku": JWKS_URL})))
        stranger = make_key("ES384")
        unknown = client.post(VIEW, json=body, headers=bearer(token_for(stranger, VIEW, headers={"jku": sandbox_jku})))
        assert not nothing_fetched.calls
    services_of(app).close()
    assert (listed.status_code, other.status_code, unknown.status_code) == (200, 401, 401)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"jwks": {"keys": []}}, "no signing key with a kid"),
        ({"jwks": [1]}, 'expected a JWK Set {"keys": [...]}'),
        ({"jwks_file": "/nonexistent/jwks.json"}, "cannot be read as a JWK Set"),
        ({"jku_files": ["https://x/jwks"]}, "jku_files: expected an object"),
        ({"jku_files": {"ftp://x/jwks": "/tmp/x"}}, "is not an http(s) URL"),
        ({}, "give its keys: jwks_urls, jwks, jwks_file or jku_files"),
    ],
)
def test_a_pinned_key_that_cannot_be_used_stops_start_up_naming_it(config, expected):
    with pytest.raises(SettingsError, match=expected.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        Settings.from_env({"CDS_TRUSTED_ISSUERS": json.dumps({ISSUER: config})})


# --- headers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", SELECT),
        ("post", SELECT + "/feedback"),
        ("get", "/msc/handout"),
        ("get", "/preview"),
        ("get", "/cds-services"),
    ],
)
def test_answers_that_may_carry_patient_data_are_never_cached(client, method, path):
    body = patient(45).with_lbp().order_select(ortho_referral()) if method == "post" else None
    response = getattr(client, method)(path, json=body)
    assert response.headers["Cache-Control"] == "no-store"


def test_the_pages_own_scripts_and_styles_may_be_cached(client):
    response = client.get("/static/preview.js")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")


@pytest.mark.parametrize("path", ["/preview", "/msc/handout", "/msc/directory"])
def test_pages_run_no_inline_script_or_style(client, path):
    response = client.get(path)
    policy = response.headers["Content-Security-Policy"]
    assert "'unsafe-inline'" not in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
    page = response.get_data(as_text=True)
    assert "<script>" not in page and "<style>" not in page and " onclick=" not in page and " style=" not in page


def test_hsts_only_when_the_public_url_is_https(settings, content, client):
    assert client.get("/cds-services").headers["Strict-Transport-Security"].startswith("max-age=")
    plain = create_app(settings.model_copy(update=dict(public_base_url="http://127.0.0.1:8080")), content=content)
    assert "Strict-Transport-Security" not in plain.test_client().get("/cds-services").headers
    services_of(plain).close()


def test_vary_origin_wherever_cors_depends_on_the_origin(settings, content):
    issuers = MappingProxyType({ISSUER: TrustedIssuer(ISSUER, (JWKS_URL,))})
    production = settings.model_copy(
        update=dict(
            require_jwt=True,
            trusted_issuers=issuers,
            form_signing_key=FORM_KEY,
            cors_origins=("https://ehr.example.org",),
        )
    )
    app = create_app(production, content=content)
    client = app.test_client()
    allowed = client.post(SELECT, json={}, headers={"Origin": "https://ehr.example.org"})
    refused = client.post(SELECT, json={}, headers={"Origin": "https://evil.example"})
    none = client.get("/cds-services")
    services_of(app).close()
    for response in (allowed, refused, none):
        assert "Origin" in response.headers["Vary"]


# --- feedback and the service that issued the card ------------------------------------------------------------------


@pytest.fixture
def stored(settings, content, database_url):
    app = create_app(settings.model_copy(update=dict(database_url=migrated(database_url))), content=content)
    yield app
    services_of(app).close()


def test_feedback_about_another_services_card_is_refused_and_not_stored(stored):
    client = stored.test_client()
    card = client.post(VIEW, json=patient(45).with_lbp().patient_view()).get_json()["cards"][0]
    services_of(stored).issued_cards.flush()
    entry = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-26T10:00:00Z"}
    wrong = client.post(SELECT + "/feedback", json={"feedback": [entry]})
    assert wrong.status_code == 400
    assert "issued by the service 'lbp-patient-view'" in wrong.get_json()["issue"][0]["diagnostics"]
    assert client.post(VIEW + "/feedback", json={"feedback": [entry]}).status_code == 200
    report = stored.test_cli_runner().invoke(args=["feedback-report", "--csv"]).output
    rows = list(csv.DictReader(io.StringIO(report)))
    assert [(r["service"], r["topic"], r["issued"], r["overridden"]) for r in rows] == [
        ("lbp-patient-view", "physical-therapy-first-line", "1", "1")
    ]


def test_feedback_stored_before_its_card_was_recorded_is_reported_under_the_issuing_service(stored):
    from datetime import UTC, datetime

    from cds_service.storage.database import IssuedCard

    client = stored.test_client()
    card_uuid = str(uuid.uuid4())
    entry = {"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": "2026-11-26T10:00:00Z"}
    assert client.post(SELECT + "/feedback", json={"feedback": [entry]}).status_code == 200  # not known yet
    services_of(stored).storage.record_issued_cards(
        [IssuedCard(card_uuid, "lbp-patient-view", "physical-therapy-first-line", "v1", datetime.now(UTC))]
    )
    report = stored.test_cli_runner().invoke(args=["feedback-report", "--csv"]).output
    rows = list(csv.DictReader(io.StringIO(report)))
    assert [(r["service"], r["topic"], r["issued"], r["overridden"]) for r in rows] == [
        ("lbp-patient-view", "physical-therapy-first-line", "1", "1")
    ]


# --- content: the same bytes validated, versioned and saved -------------------------------------------------------


def test_an_edit_landing_while_the_content_is_read_is_neither_served_under_the_wrong_label_nor_saved(
    tmp_path, monkeypatch
):
    root = tmp_path / "content"
    shutil.copytree(ROOT / "guideline_data", root)
    state = tmp_path / "state"
    real_read = Path.read_bytes
    edited = []

    def read_then_edit(path: Path) -> bytes:
        data = real_read(path)
        if path.name == "policy.yaml" and not edited:  # an editor saves a file that was already read
            edited.append(True)
            (root / "cards.yaml").write_text("cards: [not valid\n")
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_edit)
    live = LiveContent(root, reload_seconds=0, state_dir=state)
    live.start(require=True)
    monkeypatch.undo()
    served = live.current
    assert served is not None
    with tarfile.open(state / "content-last-good.tar") as tar:
        saved = {
            member.name.removeprefix("content/"): tar.extractfile(member).read()
            for member in tar.getmembers()
            if member.isfile() and member.name.startswith("content/")
        }
    assert saved == dict(served.files)  # what was validated is what was saved
    assert loader.files_version(saved) == served.version  # and what its label says
    assert b"[not valid" not in saved["cards.yaml"]
    assert live.reload() is False  # the edit is seen at the next look, and refused
    live.close()


def test_a_reason_code_carried_into_a_suggestion_keeps_only_its_codings_and_text(hooks):
    referral = ortho_referral()
    referral["reasonCode"][0] |= {"text": "low back pain", "extension": [{"url": "urn:x", "valueString": "y"}]}
    referral["reasonCode"].append({})  # an empty CodeableConcept: nothing FHIR can carry
    body = patient(45).with_lbp().order_select(referral)
    [card] = hooks.select(body)
    carried = card["suggestions"][0]["actions"][1]["resource"]["reasonCode"]
    assert carried == [{"coding": referral["reasonCode"][0]["coding"], "text": "low back pain"}]


def test_medication_and_referral_builders_still_read(hooks):
    assert hooks.select(patient(45).with_lbp().order_select(medication_request()))
    assert signing_keys(jwks(make_key()), "x")
