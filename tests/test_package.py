"""The installable package: the wheel holds the product and everything it reads at run time, and nothing of
tests/ or tools/; installed into a fresh venv, `lbp-cds` validates, migrates and serves the README's example
with its defaults, writing nothing into site-packages."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from email.parser import Parser
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("cds_service", "hooks", "cards", "guideline_data")
# What a checkout holds besides the sources and must never reach the wheel's build.
NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    "node_modules",
    "__pycache__",
    "*.pyc",
    ".*_cache",
    "build",
    "dist",
    "*.egg-info",
    "var",
    "artifacts",
)
START_SECONDS = 40
pytestmark = pytest.mark.processes


def run(command: list[str], **options: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, **options)
    assert result.returncode == 0, f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working tree as a clean checkout would have it (the build writes build/ and *.egg-info into it)."""
    copy = tmp_path_factory.mktemp("source") / "lbp-cds"
    shutil.copytree(ROOT, copy, ignore=NOT_SOURCES)
    return copy


@pytest.fixture(scope="module")
def wheel(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(source)])
    (built,) = out.glob("*.whl")
    return built


def files_under(root: Path, package: str) -> set[str]:
    return {
        path.relative_to(root).as_posix()
        for path in (root / package).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_the_wheel_holds_the_product_with_its_run_time_files_and_nothing_of_tests_or_tools(wheel, source):
    names = set(zipfile.ZipFile(wheel).namelist())
    product = {name for name in names if ".dist-info/" not in name}
    expected = set().union(*(files_under(source, package) for package in PRODUCT))
    assert not {name for name in product if name.split("/")[0] not in PRODUCT}, "only the product's packages"
    assert sorted(expected - product) == [], "files the service reads at run time are missing from the wheel"
    assert sorted(product - expected) == []
    for needed in (
        "cds_service/pipeline/schemas/context/order-select.schema.json",
        "cds_service/web/templates/preview.html",
        "cds_service/storage/migrations/env.py",
        "cds_service/storage/migrations/script.py.mako",
        "cds_service/storage/migrations/versions/0001_initial.py",
        "cds_service/web/server.py",
        "guideline_data/cards.yaml",
        "guideline_data/schemas/valueset.schema.json",
        "guideline_data/examples/baseline-lbp-referral.json",
        "guideline_data/msc/handout.md",
    ):
        assert needed in product


def test_the_wheel_declares_the_entry_point_the_pinned_requirements_and_the_licence(wheel):
    archive = zipfile.ZipFile(wheel)
    info = next(name.split("/")[0] for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
    metadata = Parser().parsestr(archive.read(f"{info}/METADATA").decode())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert (metadata["Name"], metadata["Version"]) == ("lbp-cds", project["version"])
    assert metadata["License-Expression"] == "Apache-2.0"
    assert archive.read(f"{info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    pins = [
        line.strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert sorted(metadata.get_all("Requires-Dist")) == sorted(pins)
    assert "lbp-cds = cds_service.cli:main" in archive.read(f"{info}/entry_points.txt").decode()


def test_the_changelog_has_an_entry_for_the_release():
    release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    headings = [line for line in (ROOT / "CHANGELOG.md").read_text().splitlines() if line.startswith("## [")]
    assert headings[0] == "## [Unreleased]"
    assert any(heading.startswith(f"## [{release}] - ") for heading in headings), headings


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel and its (pinned) dependencies, as a deployer installs it."""
    place = tmp_path_factory.mktemp("venv") / "lbp-cds"
    run([sys.executable, "-m", "venv", str(place)])
    run([str(place / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(wheel)])
    return place


@pytest.fixture
def deployer(tmp_path: Path) -> dict[str, str]:
    """A deployer's shell away from any checkout: a home of its own, no CDS_* variables, no PYTHONPATH."""
    (tmp_path / "home").mkdir()
    (tmp_path / "work").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "XDG_", "PYTHON", "PROMETHEUS_"))}
    return {**env, "HOME": str(tmp_path / "home"), "TMPDIR": str(tmp_path)}


def lbp_cds(venv: Path, env: dict[str, str], cwd: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return run([str(venv / "bin" / "lbp-cds"), *arguments], env=env, cwd=cwd)


def site_packages(venv: Path) -> Path:
    (found,) = venv.glob("lib/python3*/site-packages")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(venv: Path, env: dict[str, str], cwd: Path, log: Path) -> Iterator[str]:
    """`lbp-cds serve` on a free port until the probes answer; stopped (SIGTERM to the master) afterwards."""
    port = free_port()
    env = {**env, "CDS_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1"}
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as output:
        process = subprocess.Popen([str(venv / "bin" / "lbp-cds"), "serve"], env=env, cwd=cwd, stderr=output)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"lbp-cds serve stopped (exit {process.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    pytest.fail(f"lbp-cds serve did not answer in {START_SECONDS}s:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_installed_from_the_wheel_lbp_cds_validates_migrates_and_serves_the_readme_example(venv, deployer, tmp_path):
    work = tmp_path / "work"
    packages = site_packages(venv)
    release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert lbp_cds(venv, deployer, work, "--version").stdout.strip() == f"lbp-cds {release}"

    # The content shipped in the wheel is the default content.
    validated = lbp_cds(venv, deployer, work, "content", "validate").stdout
    assert validated.startswith(f"OK: {packages / 'guideline_data'} is valid")

    # The default SQLite file and state folder are the user's data folder: never site-packages, never the cwd.
    data = Path(deployer["HOME"]) / ".local" / "share" / "lbp-cds" / "var"
    assert "Database schema is at revision" in lbp_cds(venv, deployer, work, "migrate").stdout
    assert (data / "lbp-cds.sqlite3").is_file()

    env = {**deployer, "CDS_REQUIRE_JWT": "false"}  # the README's development defaults, as `make run` uses
    example = packages / "guideline_data" / "examples" / "baseline-lbp-referral.json"
    with serving(venv, env, work, tmp_path / "serve.log") as base:
        assert requests.get(f"{base}/healthz", timeout=5).json() == {"status": "ok", "version": release}
        assert requests.get(f"{base}/readyz", timeout=5).json()["status"] == "ready"
        answer = requests.post(
            f"{base}/cds-services/lbp-referral-select",
            data=example.read_bytes(),
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert [card["source"]["topic"]["code"] for card in answer.json()["cards"]] == ["msc-evaluation-first"]
        # The Prior Notification form, its page and stylesheet: the form, templates and static files are shipped.
        questionnaire = requests.get(f"{base}/fhir/Questionnaire/lbp-prior-notification", timeout=5)
        assert questionnaire.status_code == 200 and questionnaire.json()["resourceType"] == "Questionnaire"
        assert "Prior Notification" in requests.get(f"{base}/prior-notification/form", timeout=5).text
        assert requests.get(f"{base}/static/pn-form.css", timeout=5).status_code == 200
    assert (data / "content-last-good.tar").is_file()
    report = lbp_cds(venv, deployer, work, "feedback-report", "--csv").stdout.splitlines()
    assert report[0].startswith("service,topic,issued,accepted,overridden")
    assert [row.split(",")[:3] for row in report[1:]] == [["lbp-referral-select", "msc-evaluation-first", "1"]]
    export = lbp_cds(venv, deployer, work, "pn-export").stdout.splitlines()
    assert export[0].startswith("id,submitted_at,filed_on") and export[1:] == []
    content = str(packages / "guideline_data")
    assert (
        lbp_cds(venv, deployer, work, "content", "diff", content, content)
        .stdout.strip()
        .endswith("No changes to codes, card text, policy, orders or the MSC pages.")
    )
    assert list(work.iterdir()) == []
    written = [p for p in packages.rglob("*") if p.suffix in (".sqlite3", ".tar") or p.name == "var"]
    assert written == []


def test_lbp_cds_reports_an_invalid_setting_in_one_line_like_the_flask_commands(venv, deployer, tmp_path):
    env = {**deployer, "CDS_FHIR_BUDGET_MS": "fast"}
    result = subprocess.run(
        [str(venv / "bin" / "lbp-cds"), "migrate"], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "lbp-cds: invalid setting: CDS_FHIR_BUDGET_MS='fast': expected a whole number"


@pytest.mark.processes
def test_the_production_recipe_from_the_wheel_answers_a_signed_call_through_nginx(wheel, tmp_path):
    """docs/operators/index.md followed word for word from the built wheel, its site values replaced by the
    test's: the key, a fresh venv, the settings, `lbp-cds migrate`, `lbp-cds serve`, and nginx running what
    `lbp-cds nginx-config` prints, its "site:" lines filled in; then an EHR's signed call through nginx."""
    from tests.clinical_date import EXAMPLES, EXAMPLES_AS_OF
    from tests.databases import postgres_schema, redis_url
    from tests.docs_snippets import snippet
    from tests.tokens import make_key
    from tests.topology import (
        Replica,
        find_nginx,
        jwks_server,
        self_signed_certificate,
        start_nginx,
        stop_group,
        stop_nginx,
        wait_until_ready,
    )

    if find_nginx() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("nginx is not installed: `make test-deps` installs it")
        pytest.skip("nginx is not installed")
    recipe = snippet("production-recipe").text
    assert wheel.name in recipe, f"the recipe installs another file than {wheel.name}"
    key = make_key("ES384")
    nginx_port, service_port = free_port(), free_port()
    public = f"https://127.0.0.1:{nginx_port}"
    with ExitStack() as stack:
        site = {
            "/etc/lbp-cds": str(tmp_path / "etc-lbp-cds"),
            "/opt/lbp-cds": str(tmp_path / "opt-lbp-cds"),
            "/etc/nginx/conf.d": str(tmp_path),
            "https://cds.example.org": public,
            "https://ehr.example.org/.well-known/jwks.json": stack.enter_context(jwks_server(key)),
            "postgresql+psycopg://lbp:secret@db.example.org:5432/lbp": stack.enter_context(postgres_schema()),
            "redis://redis.example.org:6379/0": redis_url(),
            "127.0.0.1:8080": f"127.0.0.1:{service_port}",
        }

        def ours(text: str) -> str:
            for theirs, mine in site.items():
                text = text.replace(theirs, mine)
            return text

        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("CDS_", "PYTHON", "VIRTUAL_ENV"))},
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # python3: a Python 3.11+
            "HOME": str(tmp_path),
            "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
            "CDS_CLINICAL_DATE": EXAMPLES_AS_OF.isoformat(),  # the bundled example's own date
            "WEB_CONCURRENCY": "1",
        }
        run(["bash", "-euo", "pipefail", "-c", ours(snippet("production-key").text)], env=env, cwd=tmp_path)
        log_path = tmp_path / "recipe.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                ["bash", "-euo", "pipefail", "-c", ours(recipe)],
                cwd=wheel.parent,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        stack.callback(stop_group, process)
        # The recipe installs the wheel and its requirements first (a minute or more on a busy machine), then
        # migrates (which says so) and serves.
        deadline = time.monotonic() + 600
        while "Database schema is at revision" not in log_path.read_text(errors="replace"):
            assert process.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        wait_until_ready(f"http://127.0.0.1:{service_port}/readyz", process, log_path, "the recipe's lbp-cds")

        nginx_step = snippet("production-nginx").text.splitlines()[0]
        served = {**env, "PATH": f"{tmp_path / 'opt-lbp-cds' / 'bin'}:{env['PATH']}"}
        run(["bash", "-euo", "pipefail", "-c", ours(nginx_step)], env=served, cwd=tmp_path)
        cert, tls_key = self_signed_certificate(tmp_path)
        replica = Replica("recipe", service_port, log_path, process)
        shipped = (tmp_path / "lbp-cds.conf").read_text()
        (tmp_path / "nginx").mkdir()
        nginx, url = start_nginx(nginx_port, [replica], tmp_path / "nginx", cert, tls_key, shipped)
        stack.callback(stop_nginx, nginx)

        issuer = "https://ehr.example.org"
        assert f'"{issuer}"' in recipe
        service = "/cds-services/lbp-referral-select"
        now = int(time.time())
        claims = {"iss": issuer, "aud": public + service, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4())}
        token = jwt.encode(claims, key.private_key, algorithm="ES384", headers={"kid": key.kid})
        answer = requests.post(
            url + service,
            data=(EXAMPLES / "baseline-lbp-referral.json").read_bytes(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            verify=str(cert),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        assert [card["source"]["topic"]["code"] for card in answer.json()["cards"]] == ["msc-evaluation-first"]
        assert requests.get(url + "/metrics", verify=str(cert), timeout=10).status_code == 404  # not through nginx
