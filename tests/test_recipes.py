"""The recipes of the docs, followed word for word: each test reads its recipe from the page
(tests/docs_snippets.py), runs or reads it as a reader would, and calls the service as the recipe's EHR does.

- the README's quick start: `make run` in a copy of the checkout, then the README's curl;
- the CDS Hooks Sandbox, built locally: the recipe's exports and `PORT=9000 make run` in a copy of the checkout
  beside a Sandbox folder holding the Sandbox's JWK Set, called with a token signed as the Sandbox signs it, with
  its own published private key (tests/fixtures/sandbox/);
- the hosted Sandbox's and the Epic-style settings: read as the recipe exports them, the JWK Set served at the
  recipe's own URL, called with ES384+jku and RS384+tenant tokens.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
import responses
import yaml
from cryptography.hazmat.primitives import serialization
from sqlalchemy import create_engine, insert, make_url, text

from cds_service.app import create_app
from cds_service.pipeline.clock import FixedClock
from cds_service.settings import ServerSettings, Settings
from cds_service.storage.database import feedback, issued_cards, jwt_replay
from cds_service.web.auth import fingerprint
from cds_service.wiring import services_of
from tests.clinical_date import EXAMPLES, EXAMPLES_AS_OF
from tests.databases import POSTGRES_URL, migrated, unreachable
from tests.docs_snippets import ROOT, all_snippets, snippet
from tests.tokens import make_key
from tests.topology import free_port, stop_group, wait_until_ready

SANDBOX = ROOT / "tests" / "fixtures" / "sandbox"
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"
BASELINE = EXAMPLES / "baseline-lbp-referral.json"
SERVICE = "/cds-services/lbp-referral-select"


def sandbox_token(audience: str) -> str:
    """What the Sandbox's jwt-generator.js signs: ES384 with its kid and jku; iss, aud, exp (+300 s), iat, jti."""
    private_key = serialization.load_pem_private_key((SANDBOX / "ecprivkey.pem").read_bytes(), password=None)
    now = int(time.time())
    payload = {"iss": SANDBOX_ISSUER, "aud": audience, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
    headers = {"typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU}
    return jwt.encode(payload, private_key, algorithm="ES384", headers=headers)  # type: ignore[arg-type]


def topics(answer: dict[str, Any]) -> list[str]:
    return [card["source"]["topic"]["code"] for card in answer["cards"]]


# --- recipes that only set variables: read as bash exports them ----------------------------------------------


def exported(recipe: str, cwd: Path) -> dict[str, str]:
    """The CDS_* variables the recipe's lines export, evaluated by bash (command substitutions included)."""
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", recipe + '\nenv -0 | grep -z "^CDS_"'],
        cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(entry.split("=", 1) for entry in result.stdout.split("\0") if entry)


@contextmanager
def app_from(env: dict[str, str], tmp_path: Path, content) -> Iterator[Any]:
    """The service as those variables configure it, its database and state folder private to the test."""
    private = {
        "CDS_DATABASE_URL": migrated(f"sqlite:///{tmp_path}/lbp-cds.sqlite3"),
        "CDS_STATE_DIR": str(tmp_path / "state"),
    }
    settings = Settings.from_env({**env, **private})
    app = create_app(settings, content=content, clock=FixedClock(EXAMPLES_AS_OF))
    try:
        yield app
    finally:
        services_of(app).close()


def test_the_epic_style_recipe_accepts_its_ehr_and_refuses_another_tenant(tmp_path, content):
    env = exported(snippet("epic-recipe").text, tmp_path)
    assert env["CDS_REQUIRE_JWT"] == "true" and len(env["CDS_FORM_SIGNING_KEY"]) >= 32
    ((issuer, entry),) = json.loads(env["CDS_TRUSTED_ISSUERS"]).items()
    base_url = env["CDS_PUBLIC_BASE_URL"]
    key = make_key("RS384")
    with responses.RequestsMock(assert_all_requests_are_fired=True) as ehr, app_from(env, tmp_path, content) as app:
        ehr.get(entry["jwks_urls"][0], json={"keys": [key.public_jwk]})
        client = app.test_client()

        def call(tenant: str) -> Any:
            now = int(time.time())
            claims = {"iss": issuer, "aud": base_url + SERVICE, "exp": now + 300, "iat": now,
                      "jti": str(uuid.uuid4()), "tenant": tenant}  # fmt: skip
            token = jwt.encode(claims, key.private_key, algorithm="RS384", headers={"kid": key.kid, "typ": "JWT"})
            return client.post(SERVICE, base_url=base_url, json=json.loads(BASELINE.read_text()),
                               headers={"Authorization": f"Bearer {token}"})  # fmt: skip

        answered = call(entry["tenants"][0])
        assert answered.status_code == 200, answered.get_data(as_text=True)
        assert topics(answered.get_json()) == ["msc-evaluation-first"]
        assert call("another-organisation").status_code == 401


def test_the_hosted_sandbox_settings_accept_the_sandboxs_own_tokens_from_its_origin(tmp_path, content):
    env = exported(snippet("sandbox-hosted-settings").text, tmp_path)
    env["CDS_FORM_SIGNING_KEY"] = "the form key the page says to set as above, 32+ chars"
    base_url = env["CDS_PUBLIC_BASE_URL"]
    origin = env["CDS_CORS_ORIGINS"]
    with responses.RequestsMock() as sandbox_site, app_from(env, tmp_path, content) as app:
        sandbox_site.get(SANDBOX_JKU, json=json.loads((SANDBOX / "jwks.json").read_text()))
        answered = app.test_client().post(
            SERVICE,
            base_url=base_url,
            json=json.loads(BASELINE.read_text()),
            headers={"Authorization": f"Bearer {sandbox_token(base_url + SERVICE)}", "Origin": origin},
        )
    assert answered.status_code == 200, answered.get_data(as_text=True)
    assert topics(answered.get_json()) == ["msc-evaluation-first"]
    assert answered.headers["Access-Control-Allow-Origin"] == origin


# --- recipes that start the service: followed in a copy of the checkout ----------------------------------------


def fresh_checkout(destination: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored) copied with their times, as a clone has them,
    and a virtual environment as `make`'s first step leaves it: here the checkout's own, linked, stamped now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    venv, bin_dir = Path(sys.prefix), destination / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(venv / "pyvenv.cfg", bin_dir.parent / "pyvenv.cfg")
    (bin_dir.parent / "lib").symlink_to(venv / "lib")
    for program in (venv / "bin").iterdir():
        if program.name != ".installed":
            (bin_dir / program.name).symlink_to(program)
    (bin_dir / ".installed").touch()
    return destination


@contextmanager
def following(recipe: str, checkout: Path, port: int) -> Iterator[str]:
    """The recipe run by bash in the checkout copy until the test ends (its last line serves)."""
    log_path = checkout.parent / "recipe.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k not in ("PORT", "VIRTUAL_ENV")},
        # The bundled example is written for its own clinical date (guideline_data/examples/index.yaml).
        "CDS_CLINICAL_DATE": EXAMPLES_AS_OF.isoformat(),
        "WEB_CONCURRENCY": "1",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", recipe],
            cwd=checkout,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://localhost:{port}"
        wait_until_ready(url + "/readyz", process, log_path, "the recipe's service")
        yield url
    finally:
        stop_group(process)


@pytest.mark.processes
def test_the_readme_quick_start_answers_the_curl_with_the_msc_card(tmp_path):
    checkout = fresh_checkout(tmp_path / "lbp-cds")
    port = free_port()
    with following(f"PORT={port} make run", checkout, port):
        curl = snippet("readme-curl").text.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", curl], cwd=checkout, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 0, result.stderr
    assert topics(json.loads(result.stdout)) == ["msc-evaluation-first"]


@pytest.mark.processes
def test_the_local_sandbox_recipe_from_a_fresh_checkout(tmp_path):
    checkout = fresh_checkout(tmp_path / "lbp-cds")
    key_set = tmp_path / "sandbox" / "build" / ".well-known" / "jwks.json"  # the Sandbox's clone beside it
    key_set.parent.mkdir(parents=True)
    shutil.copy2(SANDBOX / "jwks.json", key_set)
    port = free_port()
    recipe = snippet("sandbox-recipe").text
    assert recipe.count("9000") == 2  # the public URL and make's PORT: the test's free port in their place
    with following(recipe.replace("9000", str(port)), checkout, port) as url:
        origin = shlex.split(recipe.split("CDS_CORS_ORIGINS=", 1)[1].splitlines()[0], comments=True)[0]
        body = json.loads(BASELINE.read_text())
        headers = {"Authorization": f"Bearer {sandbox_token(url + SERVICE)}", "Origin": origin}
        preflight = requests.options(
            url + SERVICE,
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
            timeout=10,
        )
        answered = requests.post(url + SERVICE, json=body, headers=headers, timeout=10)
        replayed = requests.post(url + SERVICE, json=body, headers=headers, timeout=10)
        unsigned = requests.post(url + SERVICE, json=body, timeout=10)
        ready = requests.get(url + "/readyz", timeout=10).json()
    assert preflight.headers.get("Access-Control-Allow-Origin") == origin
    assert answered.status_code == 200, answered.text
    assert topics(answered.json()) == ["msc-evaluation-first"]
    assert answered.headers["Access-Control-Allow-Origin"] == origin
    assert replayed.status_code == 401 and unsigned.status_code == 401  # JWTs on: the same token only once
    assert ready["status"] == "ready"  # migrated


# --- informatics staff: an edit validated, described and previewed ---------------------------------------------

PT_SUMMARY = "Low back pain: consider physical therapy as first-line care (no PT in the last 90 days)"
EDITED_SUMMARY = "Low back pain: physical therapy first, before imaging or opioids (no PT in the last 90 days)"


def committed_clone(destination: Path) -> Path:
    """A fresh checkout as `git clone` leaves it: the files, and their last commit."""
    checkout = fresh_checkout(destination)
    git = ["git", "-c", "user.name=Docs Test", "-c", "user.email=docs@example.org", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=checkout, check=True)
    subprocess.run([*git, "add", "-A"], cwd=checkout, check=True)
    subprocess.run([*git, "commit", "-qm", "as cloned"], cwd=checkout, check=True)
    return checkout


def run_recipe(recipe: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_") and k != "VIRTUAL_ENV"}
    return subprocess.run(
        ["bash", "-eo", "pipefail", "-c", recipe], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def replace_in(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} is not once in {path.name}"
    path.write_text(text.replace(old, new), encoding="utf-8")


@pytest.mark.processes
def test_the_informatics_steps_validate_describe_and_preview_an_edited_card(tmp_path):
    checkout = committed_clone(tmp_path / "lbp-cds")
    cards = checkout / "guideline_data" / "cards.yaml"
    replace_in(cards, PT_SUMMARY, EDITED_SUMMARY)

    steps = run_recipe(snippet("informatics-steps").text, checkout)
    assert steps.returncode == 0, steps.stderr
    assert "OK: " in steps.stdout and " is valid (content version " in steps.stdout
    assert PT_SUMMARY in steps.stdout and EDITED_SUMMARY in steps.stdout  # as it was and as it is

    port = free_port()
    with following(f"PORT={port} make run", checkout, port) as url:
        preview = requests.get(f"{url}/preview", params={"example": "patient-view-lbp"}, timeout=30)
    assert preview.status_code == 200 and EDITED_SUMMARY in preview.text

    replace_in(cards, EDITED_SUMMARY, "Low back pain in {regoin}: physical therapy first")
    refused = run_recipe(snippet("informatics-steps").text, checkout)
    assert refused.returncode != 0
    assert "cards.yaml, line " in refused.stdout + refused.stderr
    assert "unknown placeholder {regoin} (did you mean {region}?)" in refused.stdout + refused.stderr


def test_the_value_set_steps_rebuild_a_recipe_and_show_the_code_it_adds(tmp_path):
    checkout = committed_clone(tmp_path / "lbp-cds")
    recipe = checkout / "tools" / "valuesets" / "recipes" / "visit-emergency.yaml"
    replace_in(
        recipe,
        "    display: Emergency appointment\n",
        "    display: Emergency appointment\n"
        "  - system: http://terminology.hl7.org/CodeSystem/v2-0276\n"
        "    code: WALKIN\n"
        "    display: Walk in appointment\n",
    )
    steps = run_recipe(snippet("valueset-steps").text, checkout)
    assert steps.returncode == 0, steps.stderr
    assert "WALKIN" in steps.stdout and "Walk in appointment" in steps.stdout
    assert "WALKIN" in (checkout / "guideline_data" / "valuesets" / "visit-emergency.json").read_text()


# --- the feedback report ---------------------------------------------------------------------------------------


def record_the_pages_example(database_url: str) -> None:
    """The cards and feedback behind the page's sample report: one opioid card accepted; five PT cards, one
    accepted, two dismissed as not applying, one for another reason, one without feedback."""
    when = datetime(2026, 2, 10, 15, 0, tzinfo=UTC)
    reasons = {
        "not-applicable": ("http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes", "cds-not-applicable",
                           "Does not apply to this patient"),
        "other": ("urn:lbp-cds:override-reason", "other", "Other reason"),
    }  # fmt: skip
    cards = [("opioid-sparing-alternatives", "accepted", None)] + [
        ("physical-therapy-first-line", outcome, reason)
        for outcome, reason in [("accepted", None), ("overridden", "not-applicable"),
                                ("overridden", "not-applicable"), ("overridden", "other"), (None, None)]
    ]  # fmt: skip
    engine = create_engine(database_url)
    with engine.begin() as connection:
        for topic, outcome, reason in cards:
            card = str(uuid.uuid4())
            connection.execute(insert(issued_cards).values(card_uuid=card, service_id="lbp-patient-view",
                               topic=topic, content_version="docs", issued_at=when))  # fmt: skip
            if outcome is None:
                continue
            system, code, display = reasons[reason] if reason else (None, None, None)
            connection.execute(insert(feedback).values(
                service_id="lbp-patient-view", card_uuid=card, topic=topic, outcome=outcome, accepted_suggestions=[],
                override_code=code, override_system=system, override_display=display,
                outcome_timestamp=when, received_at=when))  # fmt: skip
    engine.dispose()


def test_the_feedback_report_command_prints_the_report_the_page_shows(tmp_path):
    words = shlex.split(snippet("feedback-report").text)
    assert words[0] == "lbp-cds"
    database_url = migrated(f"sqlite:///{tmp_path}/lbp-cds.sqlite3")
    record_the_pages_example(database_url)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
        "CDS_DATABASE_URL": database_url,
        "CDS_STATE_DIR": str(tmp_path / "state"),
        "PYTHONPATH": str(ROOT),
    }
    entry_point = "import sys; from cds_service.cli import main; sys.exit(main())"  # what `lbp-cds` runs
    report = subprocess.run(
        [sys.executable, "-c", entry_point, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert report.returncode == 0, report.stderr
    [sample] = [s for s in all_snippets() if s.page == "docs/informatics/feedback.md" and s.kind == "picture"]
    assert normalised(report.stdout) == normalised(sample.text)


def normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


# --- backups: pg_dump and pg_restore as the operators' page says ------------------------------------------------


@pytest.fixture
def own_postgres_database() -> Iterator[str]:
    """A PostgreSQL database of the test's own (a backup covers a whole database), dropped afterwards."""
    name = f"lbp_backup_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        admin.dispose()
        unreachable(f"PostgreSQL at {make_url(POSTGRES_URL).render_as_string()}", error)
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def count(database_url: str, table: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def test_a_backup_and_its_restore_keep_the_records_and_drop_the_replay_ids(own_postgres_database, tmp_path):
    database_url = migrated(own_postgres_database)
    record_the_pages_example(database_url)
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(insert(jwt_replay).values(token_id="a" * 64, expires_at=datetime(2026, 12, 5, tzinfo=UTC)))
    engine.dispose()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
        "LBP_DB": make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False),
    }

    def run(recipe: str) -> None:
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", recipe], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr

    run(snippet("backup").text)
    engine = create_engine(database_url)
    with engine.begin() as connection:  # the loss the backup is for
        connection.execute(text("DELETE FROM feedback"))
        connection.execute(text("DELETE FROM issued_cards"))
    engine.dispose()
    run(snippet("restore").text)
    assert (count(database_url, "issued_cards"), count(database_url, "feedback")) == (6, 5)
    assert count(database_url, "jwt_replay") == 0
    assert count(database_url, "alembic_version") == 1


# --- deployment commands that need a platform: compared with the files they work on ---------------------------

KUBERNETES = ROOT / "deploy" / "kubernetes"


def commands(recipe: str) -> list[list[str]]:
    """Each shell command of a recipe as words (continuation lines joined, comments dropped)."""
    joined = recipe.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if shlex.split(line, comments=True)]


def manifests() -> list[dict[str, Any]]:
    return [doc for path in sorted(KUBERNETES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def named(kind: str, name: str) -> dict[str, Any]:
    [manifest] = [m for m in manifests() if m["kind"] == kind and m["metadata"]["name"] == name]
    return manifest


def walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def option_values(words: list[str], option: str) -> list[str]:
    return [word.split("=", 1)[1] for word in words if word.startswith(option + "=")]


def test_the_kubernetes_secrets_are_the_ones_the_manifests_read():
    steps = commands(snippet("kubernetes-secrets").text)
    namespace = steps[0][-1]
    assert steps[0][:3] == ["kubectl", "create", "namespace"]
    assert all(step[1:3] == ["-n", namespace] for step in steps[1:])
    [generic] = [s for s in steps if s[3:6] == ["create", "secret", "generic"]]
    created = dict(value.split("=", 1) for value in option_values(generic, "--from-literal"))
    references = [
        ref["secretKeyRef"]
        for ref in walk(manifests())
        if "secretKeyRef" in ref and ref["secretKeyRef"]["name"] == generic[6]
    ]
    required = {ref["key"] for ref in references if not ref.get("optional")}
    assert required <= set(created) <= {ref["key"] for ref in references}
    Settings.from_env({"CDS_TRUSTED_ISSUERS": created["trusted-issuers"]})  # a valid value, as the page gives it
    [tls] = [s for s in steps if s[3:6] == ["create", "secret", "tls"]]
    ingress_secrets = {entry["secretName"] for entry in named("Ingress", "lbp-cds")["spec"]["tls"]}
    assert ingress_secrets == {tls[6]}


def test_the_kubernetes_apply_steps_name_the_shipped_files_and_objects():
    steps = commands(snippet("kubernetes-apply").text)
    for step in steps:
        for path in [step[i + 1] for i, word in enumerate(step) if word == "-f"]:
            assert (ROOT / path).exists(), path
    waited = [s for s in steps if s[3] == "wait"]
    assert waited and waited[0][-1] == "job/" + named("Job", "lbp-cds-migrate")["metadata"]["name"]
    rolled = [s for s in steps if s[3:5] == ["rollout", "status"]]
    assert rolled[0][-1] == "deployment/" + named("Deployment", "lbp-cds")["metadata"]["name"]
    first = [Path(path).name for path in steps[0] if path.endswith(".yaml")]
    config_maps = {m["metadata"]["name"] for m in manifests() if m["kind"] == "ConfigMap"}
    assert first == ["settings.yaml", "content-overrides.yaml"] and config_maps == {
        "lbp-cds-settings",
        "lbp-cds-content",
    }


def test_the_kubernetes_content_roll_out_writes_the_configmap_the_pods_read():
    steps = commands(snippet("kubernetes-content").text)
    create = steps[0]
    assert create[3:5] == ["create", "configmap"]
    assert create[5] == named("ConfigMap", "lbp-cds-content")["metadata"]["name"]
    mounted = {volume["configMap"]["name"] for volume in walk(named("Deployment", "lbp-cds")) if "configMap" in volume}
    assert create[5] in mounted
    for key, path in (value.split("=", 1) for value in option_values(create, "--from-file")):
        assert (ROOT / path).is_file(), path
        assert key == str(Path(path).relative_to("guideline_data")).replace("/", "__")
    assert steps[-1][-1] == "deployment/" + named("Deployment", "lbp-cds")["metadata"]["name"]


def test_the_container_recipe_runs_the_image_as_the_smoke_test_does():
    steps = commands(snippet("container-run").text)
    release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    smoke = (ROOT / "tools" / "smoke_image.sh").read_text()
    build, migrate, serve = steps
    assert build[:2] == ["podman", "build"] and f"lbp-cds:{release}" in build
    assert migrate[-2:] == [f"lbp-cds:{release}", "migrate"] and serve[-1] == f"lbp-cds:{release}"
    for flag in ("--read-only", "--tmpfs /tmp", "--cap-drop ALL", "--security-opt no-new-privileges",
                 "--mount type=tmpfs,destination=/var/lib/lbp-cds,chown=true"):  # fmt: skip
        assert flag in " ".join(serve), flag
        assert flag.split(" ")[-1] in smoke, f"the smoke test does not run the image with {flag}"
    known = {*Settings.variables(), *ServerSettings.variables()}
    given = {value.split("=", 1)[0] for step in (migrate, serve) for i, word in enumerate(step) if word == "-e"
             for value in [step[i + 1]]}  # fmt: skip
    assert given <= known
    assert {"CDS_DATABASE_URL", "CDS_PUBLIC_BASE_URL", "CDS_TRUSTED_ISSUERS", "CDS_FORM_SIGNING_KEY"} <= given


def test_the_jti_hash_command_gives_the_hash_the_log_shows():
    jti = str(uuid.uuid4())
    env = {"PATH": os.environ["PATH"], "jti": jti}
    hashed = subprocess.run(["bash", "-euo", "pipefail", "-c", snippet("jti-hash").text], env=env,
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert "sha256:" + hashed.stdout.strip() == fingerprint(jti)


def test_the_ingress_publishes_every_public_path_of_the_app_and_nothing_else(app):
    """The PN form a card links to, its Questionnaire and records, the pages' styles: an Ingress that published
    only /cds-services and /msc broke the surgical practice's link on Kubernetes."""
    private = {"healthz", "readyz", "metrics", "preview"}  # the balancer's, Prometheus', development's
    public = {rule.rule.split("/")[1] for rule in app.url_map.iter_rules()} - private
    ingress = named("Ingress", "lbp-cds")
    published = {path["path"].strip("/") for rule in ingress["spec"]["rules"] for path in rule["http"]["paths"]}
    assert published == public
