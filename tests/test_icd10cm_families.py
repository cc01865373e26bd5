"""ICD-10-CM family entries ("M51.36 and its descendants") expand to exactly the curated explicit list."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cds_service.content import icd10cm
from cds_service.content.icd10cm import Families
from cds_service.content.loader import DEFAULT_CONTENT_DIR, load_content
from hooks.terminology import ICD10CM

CURATED = Path(__file__).resolve().parent.parent / "tools/valuesets/sources/derived/icd10cm_low_back_pain.csv"


def curated(role: str) -> set[tuple[str, str]]:
    with CURATED.open(newline="", encoding="utf-8") as handle:
        return {(row["code"], row["display"]) for row in csv.DictReader(handle) if row["role"] == role}


@pytest.fixture(scope="module")
def expanded_by_the_package():
    # No cache: the expansion comes from simple-icd-10-cm itself.
    return load_content(families=Families(cache_file=None))


@pytest.mark.parametrize(("valueset", "role"), [("lbp-trigger", "trigger"), ("lbp-context", "context_only")])
def test_expansion_equals_the_curated_list(expanded_by_the_package, valueset, role):
    codes = {(c.code, c.display) for c in expanded_by_the_package.valuesets[valueset] if c.system == ICD10CM}
    assert codes == curated(role)


def test_the_trigger_file_lists_families_not_their_members():
    entries = json.loads((DEFAULT_CONTENT_DIR / "valuesets" / "lbp-trigger.json").read_text())["codes"]
    families = {e["code"] for e in entries if e.get("include_descendants")}
    assert {"M51.36", "M51.37", "M54.5", "M51.A"} <= families
    assert not {"M51.360", "M54.50", "M51.A0"} & {e["code"] for e in entries}
    snomed = {e["code"] for e in entries if e["system"] == "http://snomed.info/sct"}
    assert "279039007" in snomed  # SNOMED CT codes stay explicit


def test_a_family_expands_to_the_rules(expanded_by_the_package):
    trigger = expanded_by_the_package.knowledge.valuesets.codes("lbp-trigger")
    assert (ICD10CM, "M51.362") in trigger


def test_cached_families_load_without_the_package(tmp_path, monkeypatch):
    cache = tmp_path / "families.json"
    first = Families(cache)
    expected = first.descendants("M51.36")
    first.save()

    def no_package(name):
        raise AssertionError(f"{name} imported although the expansion is cached")

    monkeypatch.setattr(icd10cm.importlib, "import_module", no_package)
    assert Families(cache).descendants("M51.36") == expected
    display = "Other intervertebral disc degeneration, lumbar region with discogenic back pain only"
    assert ("M51.360", display) in expected


def test_not_a_code_has_no_family():
    families = Families(cache_file=None)
    assert families.descendants("M99.99") is None
    assert families.descendants("M50-M54") is None  # a block of the tabular, not a code
