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
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import Parser
from pathlib import Path
from typing import Any

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
