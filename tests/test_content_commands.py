"""`flask --app wsgi content validate` and `content diff`, as informatics staff run them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result

from cds_service.app import create_app
from tests.clinical_date import CLOCK
from tests.conftest import private_settings
from tests.content_copies import ContentCopy

ICD = "http://hl7.org/fhir/sid/icd-10-cm"


@pytest.fixture
def copy(tmp_path) -> ContentCopy:
    return ContentCopy.of_guideline_data(tmp_path)


@pytest.fixture
def run(content, tmp_path: Path) -> Callable[..., Result]:
    """Runs `flask content ...` of an app whose database and state stay under tmp_path."""

    def run(*args: str, content_dir: Path | None = None) -> Result:
        settings = private_settings(
            tmp_path, require_jwt=False, **({"content_dir": content_dir} if content_dir else {})
        )
        app = create_app(settings, content=content, clock=CLOCK)
        return app.test_cli_runner().invoke(args=["content", *args])

    return run


def test_validate_says_ok_with_the_content_version(content, run):
    result = run("validate")
    assert result.exit_code == 0
    assert result.output == f"OK: {Path('guideline_data')} is valid (content version {content.version}).\n"


def test_validate_lists_each_problem_and_fails(content, copy, run):
    copy.replace("cards.yaml", "    indicator: warning\n", "    indicator: critical\n")
    copy.edit_valueset("pt-specialty", lambda data: data["codes"].clear())
    result = run("validate", "--dir", str(copy.root))
    assert result.exit_code == 1
    lines = result.output.splitlines()
    indicator = copy.line_of("cards.yaml", "indicator: critical")
    assert lines[0] == (
        f"{copy.root.as_posix()}/cards.yaml, line {indicator}, field cards > msc-evaluation-first > indicator: "
        '"critical" is not allowed here; use one of: info, warning'
    )
    assert lines[1].startswith(f"{copy.root.as_posix()}/valuesets/pt-specialty.json, line ")
    assert lines[2] == "2 problem(s): the service will not use this content until they are fixed."


def test_diff_shows_codes_card_text_and_policy_that_change(content, copy, tmp_path, run):
    old = ContentCopy.of_guideline_data(tmp_path / "old")

    def swap_codes(data):
        data["codes"] = [c for c in data["codes"] if c["code"] not in ("M54.4", "279039007")]
        data["codes"].insert(0, {"system": ICD, "code": "M54.2", "display": "Cervicalgia", "group": "x"})

    copy.edit_valueset("lbp-trigger", swap_codes)
    copy.replace("policy.yaml", "physical_therapy: 90", "physical_therapy: 60")
    copy.replace("cards.yaml", "(no PT in the last 90 days)", "(no PT in the last 60 days)")
    copy.replace("cards.yaml", "- **Direct access:** every US state", "- **Direct access:** Every US state")
    result = run("diff", str(old.root), str(copy.root))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"From {old.root.as_posix()} (version ")
    assert lines[1:9] == [
        "Value set lbp-trigger: 1 code(s) added, 5 removed, 0 display(s) changed",
        "  + M54.2 (ICD-10-CM)  Cervicalgia",
        "  - M54.4 (ICD-10-CM)  Lumbago with sciatica",
        "  - M54.40 (ICD-10-CM)  Lumbago with sciatica, unspecified side",
        "  - M54.41 (ICD-10-CM)  Lumbago with sciatica, right side",
        "  - M54.42 (ICD-10-CM)  Lumbago with sciatica, left side",
        "  - 279039007 (SNOMED CT)  Low back pain",
        "Card text (cards.yaml):",
    ]
    assert '(no PT in the last 90 days)" is now "Low back pain: consider physical therapy' in lines[9]
    assert lines[10:13] == [
        "  ~ cards > physical-therapy-first-line > detail:",
        "      was: - **Direct access:** every US state now lets patients see a physical therapist without a "
        "referral in some form; Minnesota and Wisconsin allow it with provisions (APTA 2024).",
        "      now: - **Direct access:** Every US state now lets patients see a physical therapist without a "
        "referral in some form; Minnesota and Wisconsin allow it with provisions (APTA 2024).",
    ]
    assert lines[13:] == ["Policy (policy.yaml):", "  ~ lookback_days > physical_therapy: 90 is now 60"]


def test_rewriting_codes_as_a_family_changes_nothing_clinically(content, copy, tmp_path, run):
    old = ContentCopy.of_guideline_data(tmp_path / "old")

    def list_m54_5_family_explicitly(data):
        family = next(c for c in data["codes"] if c["code"] == "M54.5")
        del family["include_descendants"]
        displays = {"M54.50": "Low back pain, unspecified", "M54.51": "Vertebrogenic low back pain"}
        displays["M54.59"] = "Other low back pain"
        data["codes"] += [
            {"system": ICD, "code": c, "display": d, "group": "nonspecific_lbp"} for c, d in displays.items()
        ]

    old.edit_valueset("lbp-trigger", list_m54_5_family_explicitly)
    result = run("diff", str(old.root), str(copy.root))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == ["No changes to codes, card text, policy, orders or the MSC pages."]


def test_diff_against_a_git_revision(content, tmp_path, run):
    repository = tmp_path / "repo"
    copy = ContentCopy.of_guideline_data(repository)
    git = ["git", "-C", str(repository), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "content"], check=True)
    copy.replace(
        "cards.yaml",
        "code: emergent-condition\n    display: Emergent condition",
        "code: emergent-condition\n    display: Emergency",
    )
    result = run("diff", "--rev", "HEAD", content_dir=copy.root)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "Card text (cards.yaml):",
        '  ~ override_reasons > emergent > display: "Emergent condition" is now "Emergency"',
    ]
    assert result.output.startswith(f"From {copy.root.as_posix()} at HEAD (version ")


def test_diff_refuses_a_revision_it_cannot_read(content, copy, run):
    result = run("diff", "--rev", "HEAD", content_dir=copy.root)  # not a git repository
    assert result.exit_code == 1
    assert f"Error: cannot read {copy.root.as_posix()} at HEAD: " in result.output


def test_diff_needs_two_folders_or_a_revision(content, copy, run):
    result = run("diff", str(copy.root))
    assert result.exit_code == 2
    assert "give two folders, OLD and NEW, or --rev REVISION" in result.output


def test_diff_lists_the_problems_of_invalid_content(content, copy, tmp_path, run):
    old = ContentCopy.of_guideline_data(tmp_path / "old")
    copy.replace("cards.yaml", "    indicator: warning\n", "    indicator: critical\n")
    result = run("diff", str(old.root), str(copy.root))
    assert result.exit_code == 1
    assert 'field cards > msc-evaluation-first > indicator: "critical" is not allowed here' in result.output


def test_validate_command_writes_nothing(tmp_path):
    """A check of the files is read-only: no last good copy saved, no database created."""
    state, database = tmp_path / "state", tmp_path / "db" / "lbp-cds.sqlite3"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CDS_")},
        "CDS_STATE_DIR": str(state),
        "CDS_DATABASE_URL": f"sqlite:///{database}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "content", "validate"],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.startswith("OK: "), result.stderr
    assert not state.exists() and not database.parent.exists()
