#!/usr/bin/env python3
"""Regenerate guideline_data/valuesets/*.json from the shared reference folder.

The service never reads the reference folder: this script copies the code
lists it needs into the repository, one JSON file per value set, each with its
provenance (publisher, identifier, version, retrieved_from, notes), so every
file can be rebuilt and reviewed.

Usage (from the repository root):
    python tools/build_valuesets.py [SOURCE_DIR] [--out DIR] [--check]

SOURCE_DIR defaults to ../shared/valuesets relative to the repository root.
--check writes nothing and exits 1 when a file is missing or out of date.
Needs simple-icd-10-cm (requirements.txt): where a curated ICD-10-CM list holds a
whole family, the file says "this code and its descendants" (include_descendants)
and the service expands it from the same tabular at load time.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import simple_icd_10_cm as icd10cm

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO_ROOT.parent / "shared" / "valuesets"
DEFAULT_OUT = REPO_ROOT / "guideline_data" / "valuesets"

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NUCC = "http://nucc.org/provider-taxonomy"
SOPT = "https://nahdo.org/sopt"
CPT = "http://www.ama-assn.org/go/cpt"

CDC_DIR = "cdc-opioid-cds-r4"
VSAC_DIR = "vsac-ecqm-via-canvas"
DERIVED_DIR = "derived"

LBP_CSV = f"{DERIVED_DIR}/icd10cm_low_back_pain.csv"
RED_FLAGS_CSV = f"{DERIVED_DIR}/icd10cm_red_flags.csv"
REFERRAL_CSV = f"{DERIVED_DIR}/snomed_referral_codes_subset.csv"
NUCC_CSV = f"{DERIVED_DIR}/nucc_taxonomy_subset.csv"
PRACTICE_CSV = f"{DERIVED_DIR}/snomed_practice_setting_c80_subset.csv"
AHRQ_1021_95_CSV = f"{DERIVED_DIR}/ahrq_conditions_associated_with_chronic_pain_2.16.840.1.113762.1.4.1021.95.csv"

AHRQ_REPO = (
    "AHRQ-CDS/AHRQ-CDS-Connect-PAIN-MANAGEMENT-SUMMARY:src/cql/valueset-db.json"
    "@f9f63c6c9400e9c4844d47dedf364d8347e360ad"
)
FHIR_TS_COMMIT = "598941e214cc7e2f59741134e225db7041cd0784"
REFERRAL_REPO = f"fhir-typescript/fhir-typescript:core/r3/dist/fhirValueSets/ReferralTypeCodes.d.ts@{FHIR_TS_COMMIT}"
NGC_ICSI_URL = "https://www.guideline.gov/summaries/summary/39319"
UNVERIFIED_LABEL = "UNVERIFIED display"
PARAPHRASE_NOTE = "display paraphrased by lbp-cds (CPT descriptor blanked in source for AMA copyright); not AMA text"


class SourceError(Exception):
    """The reference folder does not look the way this script expects."""


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str
    group: str | None = None
    note: str | None = None
    include_descendants: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.system, self.code)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"system": self.system, "code": self.code, "display": self.display}
        if self.include_descendants:
            out["include_descendants"] = True
        if self.group:
            out["group"] = self.group
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class Source:
    publisher: str
    identifier: str
    version: str
    retrieved_from: str
    notes: str

    def as_json(self) -> dict[str, str]:
        return {
            "publisher": self.publisher,
            "identifier": self.identifier,
            "version": self.version,
            "retrieved_from": self.retrieved_from,
            "notes": self.notes,
        }


@dataclass(frozen=True)
class ValueSet:
    id: str
    title: str
    purpose: str
    source: Source
    codes: tuple[Code, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "purpose": self.purpose,
            "source": self.source.as_json(),
            "codes": [c.as_json() for c in self.codes],
        }


@dataclass(frozen=True)
class FhirValueSet:
    """The parts of a FHIR ValueSet file this script uses."""

    file: str
    id: str
    url: str
    title: str
    expansion_date: str
    codes: tuple[Code, ...]


@dataclass(frozen=True)
class VsacCsv:
    """One canvas-extracted VSAC expansion with its _index.json metadata."""

    file: str
    oid: str
    name: str
    definition_version: str
    expansion: str
    source: str
    codes: tuple[Code, ...]

    @property
    def version(self) -> str:
        return f"VSAC definition {self.definition_version}, {self.expansion} expansion"


@dataclass
class Context:
    """Source folder plus lazily built lookups shared by the builders."""

    root: Path
    _displays: dict[tuple[str, str], str] | None = field(default=None, repr=False)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def displays(self) -> dict[tuple[str, str], str]:
        if self._displays is None:
            self._displays = build_display_index(self.root)
        return self._displays


# --------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------


def read_csv(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    """Rows of a CSV file after checking that the header has the needed columns."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = set(reader.fieldnames or [])
        missing = set(required) - header
        if missing:
            raise SourceError(f"{path}: missing columns {sorted(missing)} (header: {reader.fieldnames})")
        return [{k: (v or "").strip() for k, v in row.items()} for row in reader]


def flatten_contains(items: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """expansion.contains entries, descending into nested contains."""
    out: list[dict[str, Any]] = []
    for item in items:
        if item.get("code") and not item.get("abstract"):
            out.append(item)
        out.extend(flatten_contains(item.get("contains", [])))
    return out


def compose_concepts(vs: dict[str, Any]) -> list[dict[str, Any]]:
    """compose.include.concept entries with their system filled in."""
    out: list[dict[str, Any]] = []
    for inc in vs.get("compose", {}).get("include", []):
        for concept in inc.get("concept", []):
            out.append({"system": inc.get("system", ""), **concept})
    return out


def read_fhir_valueset(ctx: Context, name: str) -> FhirValueSet:
    """Codes of a CDC FHIR ValueSet: expansion.contains, else compose concepts."""
    rel = f"{CDC_DIR}/{name}.json"
    data = json.loads(ctx.path(rel).read_text(encoding="utf-8"))
    expansion = data.get("expansion", {})
    entries = flatten_contains(expansion.get("contains", [])) or compose_concepts(data)
    if not entries:
        raise SourceError(f"{rel}: no codes in expansion or compose")
    total = expansion.get("total")
    if total is not None and total != len(entries):
        raise SourceError(f"{rel}: expansion.total {total} != {len(entries)} codes")
    codes = tuple(Code(e["system"], e["code"], e.get("display", "").strip()) for e in entries)
    return FhirValueSet(
        file=rel,
        id=data["id"],
        url=data["url"],
        title=data.get("title", data["id"]),
        expansion_date=str(expansion.get("timestamp", data.get("date", "")))[:10],
        codes=codes,
    )


def read_vsac_csv(ctx: Context, oid: str) -> VsacCsv:
    """A canvas-extracted VSAC csv, found by OID through _index.json."""
    index = json.loads(ctx.path(f"{VSAC_DIR}/_index.json").read_text(encoding="utf-8"))
    matches = [e for e in index if e["oid"] == oid]
    if len(matches) != 1:
        raise SourceError(f"{VSAC_DIR}/_index.json: {len(matches)} entries for OID {oid}")
    meta = matches[0]
    rows = read_csv(ctx.path(meta["file"]), ["system", "code", "display"])
    if len(rows) != meta["n"]:
        raise SourceError(f"{meta['file']}: {len(rows)} rows, _index.json says {meta['n']}")
    return VsacCsv(
        file=meta["file"],
        oid=oid,
        name=meta["name"],
        definition_version=meta["definition_version"],
        expansion=meta["expansion"],
        source=meta["source"],
        codes=tuple(Code(r["system"], r["code"], r["display"]) for r in rows),
    )


def manifest_source(ctx: Context, rel: str) -> str:
    """The 'source' cell of MANIFEST.md's row for a copied file, as owner/repo:path@commit."""
    for line in ctx.path("MANIFEST.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == rel:
            source = re.sub(r"\s*\(.*\)\s*$", "", cells[-1])
            return re.sub(r"\s*([:@])\s*", r"\1", source)
    raise SourceError(f"MANIFEST.md: no row for {rel}")


def single_value(rows: Sequence[dict[str, str]], column: str, where: str) -> str:
    """The one distinct value of a column (e.g. a csv's 'source'); error if several."""
    values = {r[column] for r in rows}
    if len(values) != 1:
        raise SourceError(f"{where}: expected one distinct {column!r}, found {sorted(values)}")
    return values.pop()


def build_display_index(root: Path) -> dict[tuple[str, str], str]:
    """(system, code) -> first non-empty display seen in any copied/extracted file."""
    index: dict[tuple[str, str], str] = {}
    for path in sorted((root / VSAC_DIR).glob("*.csv")):
        for row in read_csv(path, ["system", "code", "display"]):
            if row["display"]:
                index.setdefault((row["system"], row["code"]), row["display"])
    for path in sorted((root / CDC_DIR).glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for e in flatten_contains(data.get("expansion", {}).get("contains", [])) + compose_concepts(data):
            if e.get("display"):
                index.setdefault((e["system"], e["code"]), e["display"].strip())
    return index


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def join_unique(values: Iterable[str | None], sep: str = "; ") -> str | None:
    seen: list[str] = []
    for v in values:
        for part in (v or "").split(sep):
            if part and part not in seen:
                seen.append(part)
    return sep.join(seen) or None


def merge_codes(codes: Iterable[Code]) -> tuple[Code, ...]:
    """Dedupe by (system, code), keeping the first display and joining groups/notes; sort."""
    merged: dict[tuple[str, str], Code] = {}
    for c in codes:
        prev = merged.get(c.key)
        if prev is None:
            merged[c.key] = c
            continue
        merged[c.key] = replace(
            prev,
            display=prev.display or c.display,
            group=join_unique([prev.group, c.group]),
            note=join_unique([prev.note, c.note]),
        )
    return tuple(sorted(merged.values(), key=lambda c: (c.system, c.code)))


def with_group(codes: Iterable[Code], group: str) -> list[Code]:
    return [replace(c, group=group) for c in codes]


def expect_count(what: str, actual: int, expected: int) -> None:
    """Guard against a silently changed source: counts stated in MANIFEST/clinical notes."""
    if actual != expected:
        raise SourceError(f"{what}: {actual} codes, expected {expected}")


def fill_display(ctx: Context, code: Code, fallback_label: str, why: str) -> Code:
    """Use a display from another shared file if one exists, else the source label + a note."""
    found = ctx.displays().get(code.key)
    if found:
        return replace(
            code,
            display=found,
            note=join_unique([code.note, "display from another VSAC/CDC value set"]),
        )
    return replace(code, display=fallback_label, note=join_unique([code.note, why]))


def count_by(codes: Iterable[Code], attr: str) -> str:
    counts: dict[str, int] = {}
    for c in codes:
        key = getattr(c, attr) or "-"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} {n}" for k, n in counts.items())


# --------------------------------------------------------------------------
# Low back pain diagnoses
# --------------------------------------------------------------------------

LBP_COLUMNS = [
    "system",
    "code",
    "display",
    "billable_leaf",
    "group",
    "role",
    "note",
    "source",
    "in_VSAC_conditions_assoc_chronic_pain_1021.95",
]

NGC_SNOMED = [
    ("279039007", "Low back pain", "nonspecific_lbp"),
    ("278862001", "Acute low back pain", "nonspecific_lbp"),
    ("278860009", "Chronic low back pain", "nonspecific_lbp"),
    ("307176005", "Acute sciatica", "sciatica"),
    ("307177001", "Chronic sciatica", "sciatica"),
]
SCIATICA_SNOMED = "23056005"


def lbp_rows(ctx: Context, role: str) -> tuple[list[dict[str, str]], str]:
    rows = read_csv(ctx.path(LBP_CSV), LBP_COLUMNS)
    tabular = single_value(rows, "source", LBP_CSV)
    return [r for r in rows if r["role"] == role], tabular


def icd_codes(rows: Iterable[dict[str, str]], group_column: str) -> list[Code]:
    return [Code(r["system"], r["code"], r["display"], group=r[group_column]) for r in rows]


def group_notes(rows: Iterable[dict[str, str]], group_column: str) -> str:
    notes: dict[str, list[str]] = {}
    for r in rows:
        if r["note"] and r["note"] not in notes.setdefault(r[group_column], []):
            notes[r[group_column]].append(r["note"])
    return "; ".join(f"{g}: {' / '.join(n)}" for g, n in notes.items() if n)


def collapse_families(codes: Sequence[Code]) -> list[Code]:
    """Write "X and its descendants" where the curated list holds X and every code below it in the tabular.

    The service expands these entries with the same package, so the displays and groups of the
    collapsed codes must be exactly what the expansion gives back.
    """
    listed = {c.code for c in codes if c.system == ICD10CM}
    whole = [c for c in codes if c.code in listed and set(icd10cm.get_descendants(c.code) or ["-"]) <= listed]
    roots = [c for c in whole if not any(icd10cm.is_ancestor(r.code, c.code) for r in whole)]
    covered = {d: root for root in roots for d in icd10cm.get_descendants(root.code)}
    for c in codes:
        root = covered.get(c.code)
        if root and (c.display != icd10cm.get_description(c.code) or c.group != root.group):
            raise SourceError(f"{c.code}: display or group differs from its family {root.code}; list it explicitly")
    return [replace(c, include_descendants=c in roots) for c in codes if c.code not in covered]


def harmonize_icd_displays(valuesets: Sequence[ValueSet]) -> list[ValueSet]:
    """One ICD-10-CM code, one display in every set (the service refuses two): the tabular's, when sources differ."""
    displays: dict[str, set[str]] = {}
    for vs in valuesets:
        for c in vs.codes:
            if c.system == ICD10CM:
                displays.setdefault(c.code, set()).add(c.display)
    conflicting = {code for code, found in displays.items() if len(found) > 1}

    def fixed(c: Code) -> Code:
        if c.system != ICD10CM or c.code not in conflicting or c.display == icd10cm.get_description(c.code):
            return c
        note = f"display from the ICD-10-CM April 2026 tabular (the source says '{c.display}')"
        return replace(c, display=icd10cm.get_description(c.code), note=join_unique([c.note, note]))

    return [replace(vs, codes=tuple(fixed(c) for c in vs.codes)) for vs in valuesets]


def tabular_retrieved_from(tabular: str, rel: str) -> str:
    return f"{tabular}; curated as shared/valuesets/{rel}"


def sciatica_in_vsac_1021_95(ctx: Context) -> bool:
    rows = read_csv(ctx.path(AHRQ_1021_95_CSV), ["system", "code"])
    return any(r["system"] == SNOMED and r["code"] == SCIATICA_SNOMED for r in rows)


def build_lbp_trigger(ctx: Context) -> ValueSet:
    rows, tabular = lbp_rows(ctx, "trigger")
    expect_count("lbp trigger rows", len(rows), 89)
    if not sciatica_in_vsac_1021_95(ctx):
        raise SourceError(f"SNOMED {SCIATICA_SNOMED} not found in {AHRQ_1021_95_CSV}")
    snomed = [
        Code(
            SNOMED,
            c,
            d,
            group=g,
            note=f"NGC UMLS concept list for ICSI LBP guideline ({NGC_ICSI_URL})",
        )
        for c, d, g in NGC_SNOMED
    ]
    snomed.append(
        Code(
            SNOMED,
            SCIATICA_SNOMED,
            "Sciatica",
            group="sciatica",
            note="member of VSAC 2.16.840.1.113762.1.4.1021.95; display UNVERIFIED (label from clinical-notes §2a)",
        )
    )
    non_billable = ", ".join(r["code"] for r in rows if r["billable_leaf"] != "Y")
    missing_vsac = sum(1 for r in rows if r["in_VSAC_conditions_assoc_chronic_pain_1021.95"] != "Y")
    notes = (
        f"{len(rows)} ICD-10-CM rows with role=trigger from {LBP_CSV}; where they hold a whole family it is "
        f"written as the family's code with include_descendants (expanded by lbp-cds at load time from the same "
        f"April 2026 tabular); group = csv group. Non-billable parent/header codes kept on "
        f"purpose (legacy and parent-level coding): {non_billable} (M54.5 split FY2022, M51.36/M51.37 FY2025; "
        f"effective dates UNVERIFIED). {missing_vsac} of the ICD codes "
        f"are not in VSAC 1021.95 (Conditions associated with chronic pain). Curator notes by group: "
        f"{group_notes(rows, 'group')}. SNOMED: 279039007, 278862001, 278860009, 307176005, 307177001 with displays "
        f"from the NGC UMLS concept list for ICSI Adult Acute and Subacute LBP ({NGC_ICSI_URL}); 23056005 from "
        f"VSAC 1021.95 membership ({AHRQ_REPO}), display 'Sciatica' UNVERIFIED. 279039007 is not in 1021.95. "
        f"The SNOMED list is not a full expansion: match descendants by subsumption on a terminology server where "
        f"available. The CMS166 Low Back Pain value set (2.16.840.1.113883.3.464.1003.113.12.1001) was not "
        f"available (VSAC licence). Context-only codes are in lbp-context."
    )
    return ValueSet(
        id="lbp-trigger",
        title="Low back pain diagnoses (trigger)",
        purpose=(
            "Low back pain rule: an active Condition or encounter diagnosis with a code in this set makes the "
            "patient an adult with low back pain, so the MSC, PT and opioid-alternative rules can fire."
        ),
        source=Source(
            publisher=(
                "derived by lbp-cds from the CDC ICD-10-CM April 2026 tabular; SNOMED CT codes from the NGC "
                "UMLS concept list for the ICSI guideline and NLM VSAC 2.16.840.1.113762.1.4.1021.95"
            ),
            identifier="none (curated list)",
            version="ICD-10-CM April 1, 2026 tabular (FY2026); SNOMED CT codes unversioned",
            retrieved_from=(
                f"{tabular_retrieved_from(tabular, LBP_CSV)}; SNOMED: {NGC_ICSI_URL} and {AHRQ_REPO} "
                "(per clinical-notes §2a)"
            ),
            notes=notes,
        ),
        codes=merge_codes(collapse_families(icd_codes(rows, "group")) + snomed),
    )


def build_lbp_context(ctx: Context) -> ValueSet:
    rows, tabular = lbp_rows(ctx, "context_only")
    expect_count("lbp context_only rows", len(rows), 7)
    notes = (
        f"{len(rows)} ICD-10-CM rows with role=context_only from {LBP_CSV}, no whole family among them; group = csv "
        f"group. These say 'back "
        f"problem' but must not trigger alone: {group_notes(rows, 'group')}."
    )
    return ValueSet(
        id="lbp-context",
        title="Back problem diagnoses that must not trigger alone (context only)",
        purpose=(
            "Low back pain rule: codes that support a back-pain context (prior lumbar surgery/fusion, "
            "region-unspecified dorsalgia) but never make the patient an LBP patient on their own."
        ),
        source=Source(
            publisher="derived by lbp-cds from the CDC ICD-10-CM April 2026 tabular",
            identifier="none (curated list)",
            version="ICD-10-CM April 1, 2026 tabular (FY2026)",
            retrieved_from=tabular_retrieved_from(tabular, LBP_CSV),
            notes=notes,
        ),
        codes=merge_codes(collapse_families(icd_codes(rows, "group"))),
    )


# --------------------------------------------------------------------------
# Red flags
# --------------------------------------------------------------------------

RED_FLAG_COLUMNS = [
    "system",
    "code",
    "display",
    "seventh_char_encounter",
    "category",
    "tier",
    "note",
    "source",
]
CAUDA_EQUINA_SNOMED = Code(
    SNOMED,
    "192970008",
    "Cauda equina syndrome",
    group="cauda_equina",
    note="display UNVERIFIED (consistent across community repos; clinical-notes §2b)",
)


@dataclass(frozen=True)
class RedFlagSpec:
    id: str
    tier: str
    title: str
    purpose: str
    expected: int
    extra: tuple[Code, ...] = ()


RED_FLAG_SPECS = [
    RedFlagSpec(
        "red-flags-emergent",
        "emergent",
        "Red flags: emergent (spine)",
        (
            "Red-flag rule: a diagnosis in this set (cauda equina, cord compression/myelopathy, spinal cord or nerve "
            "root injury, spinal infection) makes the presentation emergent: no MSC card; consider ED or same-day "
            "surgical contact."
        ),
        536,
        (CAUDA_EQUINA_SNOMED,),
    ),
    RedFlagSpec(
        "red-flags-emergent-non-spine",
        "emergent_non_spine",
        "Red flags: emergent, not spine (vascular mimics)",
        (
            "Red-flag rule: an aortic aneurysm or dissection diagnosis in this set (can present as back pain) "
            "suppresses the MSC card; route to the ED."
        ),
        19,
    ),
    RedFlagSpec(
        "red-flags-urgent",
        "urgent",
        "Red flags: urgent (vertebral fracture, spinal malignancy)",
        (
            "Red-flag rule: a vertebral fracture or spinal malignancy diagnosis in this set exempts the patient from "
            "the MSC-before-surgeon step (program: cancer, trauma or infection)."
        ),
        773,
    ),
    RedFlagSpec(
        "red-flags-review",
        "flag_for_review",
        "Red flags: symptoms to review",
        (
            "Red-flag rule: a neurologic-deficit symptom in this set (urinary retention/incontinence, faecal "
            "incontinence, saddle anaesthesia, foot drop, difficulty walking) adds an informational 'rule out red "
            "flags' card; it is not a hard stop and does not exempt."
        ),
        20,
    ),
]


def seventh_char_summary(rows: Sequence[dict[str, str]]) -> str:
    counts: dict[str, int] = {}
    for r in rows:
        if r["seventh_char_encounter"]:
            counts[r["seventh_char_encounter"]] = counts.get(r["seventh_char_encounter"], 0) + 1
    if not counts:
        return ""
    parts = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
    return (
        f" Injury/fracture codes by 7th character ({parts}): the set keeps subsequent-encounter (D/G/K/P) and "
        f"sequela (S) codes as the source does; a rule wanting acute events only must filter on the 7th "
        f"character (A/B = initial)."
    )


def build_red_flags(ctx: Context, spec: RedFlagSpec) -> ValueSet:
    all_rows = read_csv(ctx.path(RED_FLAGS_CSV), RED_FLAG_COLUMNS)
    tabular = single_value(all_rows, "source", RED_FLAGS_CSV)
    rows = [r for r in all_rows if r["tier"] == spec.tier]
    expect_count(f"red flags tier {spec.tier}", len(rows), spec.expected)
    extra = "".join(f" Added SNOMED CT {c.code} '{c.display}': {c.note}." for c in spec.extra)
    notes = (
        f"{len(rows)} ICD-10-CM rows of {RED_FLAGS_CSV} with tier={spec.tier}; group = csv category "
        f"({count_by(icd_codes(rows, 'category'), 'group')}). Tier risk_factor rows are not used here (context "
        f"only). Curator notes by category: {group_notes(rows, 'category')}.{seventh_char_summary(rows)}{extra}"
    )
    return ValueSet(
        id=spec.id,
        title=spec.title,
        purpose=spec.purpose,
        source=Source(
            publisher=(
                "derived by lbp-cds from the CDC ICD-10-CM April 2026 tabular (ICSI 2018 red-flag list + "
                "HEDIS/CMS166 exclusion categories)"
            ),
            identifier="none (curated list)",
            version="ICD-10-CM April 1, 2026 tabular (FY2026)",
            retrieved_from=tabular_retrieved_from(tabular, RED_FLAGS_CSV),
            notes=notes,
        ),
        codes=merge_codes(icd_codes(rows, "category") + list(spec.extra)),
    )


# --------------------------------------------------------------------------
# Referrals and specialties
# --------------------------------------------------------------------------

REFERRAL_COLUMNS = ["group", "system", "code", "label", "label_source"]
NUCC_COLUMNS = ["group", "system", "code", "display", "source"]
PRACTICE_COLUMNS = [
    "group",
    "system",
    "code",
    "label_derived_from_identifier(UNVERIFIED display)",
    "source",
]
PRACTICE_LABEL = PRACTICE_COLUMNS[3]
MSC_REFERRAL_CODES = [
    "306289000",
    "306298002",
    "715962007",
    "307374004",
    "183868005",
    "306152009",
    "183612004",
]
PT_REFERRAL_EXCLUDED = {"309628002": "Child Referral Physiotherapy: a child referral, and lbp-cds is for adults"}
VSAC_REFERRAL_OID = "2.16.840.1.113883.3.464.1003.101.12.1046"


def referral_rows(ctx: Context) -> list[dict[str, str]]:
    rows = read_csv(ctx.path(REFERRAL_CSV), REFERRAL_COLUMNS)
    if any(r["system"] != SNOMED for r in rows):
        raise SourceError(f"{REFERRAL_CSV}: non-SNOMED rows")
    return rows


def referral_code(ctx: Context, row: dict[str, str], group: bool = False) -> Code:
    code = Code(row["system"], row["code"], row["label"], group=row["group"] if group else None)
    if "UNVERIFIED" in row["label_source"]:
        return fill_display(
            ctx,
            replace(code, display=""),
            row["label"],
            "display UNVERIFIED: label derived from the fhir-typescript identifier",
        )
    return code


def referral_source(ctx: Context, notes: str) -> Source:
    vsac = read_vsac_csv(ctx, VSAC_REFERRAL_OID)
    return Source(
        publisher=(
            "SNOMED International (SNOMED CT), curated by lbp-cds from the HL7 FHIR R3 referral-type value "
            "set; displays from NLM VSAC Referral where present"
        ),
        identifier=f"none (curated list); displays cross-checked against VSAC {VSAC_REFERRAL_OID} ({vsac.name})",
        version=f"FHIR R3 referral-type (fhir-typescript@{FHIR_TS_COMMIT[:8]}); Referral {vsac.version}",
        retrieved_from=f"{REFERRAL_REPO}; displays {vsac.source}; curated as shared/valuesets/{REFERRAL_CSV}",
        notes=notes,
    )


def unverified_note(codes: Iterable[Code]) -> str:
    unverified = [c.code for c in codes if c.note and "UNVERIFIED" in c.note]
    if not unverified:
        return "All displays from VSAC."
    return f"Display UNVERIFIED (label derived from the source identifier) for: {', '.join(unverified)}."


def build_referral_group(
    ctx: Context,
    vs_id: str,
    title: str,
    purpose: str,
    group: str,
    expected: int,
    extra_notes: str,
) -> ValueSet:
    rows = [r for r in referral_rows(ctx) if r["group"] == group]
    expect_count(f"referral group {group}", len(rows), expected)
    codes = merge_codes(referral_code(ctx, r) for r in rows)
    notes = f"SNOMED rows of {REFERRAL_CSV} with group={group}. {unverified_note(codes)} {extra_notes}"
    return ValueSet(vs_id, title, purpose, referral_source(ctx, notes.strip()), codes)


def build_spine_surgery_referral(ctx: Context) -> ValueSet:
    return build_referral_group(
        ctx,
        "spine-surgery-referral",
        "Referral to a spine surgeon (orthopaedic surgeon or neurosurgeon)",
        (
            "Spine-surgery referral rule: a ServiceRequest.code in this set is a referral to an orthopaedic surgeon "
            "or neurosurgeon, which starts the MSC-before-first-spine-surgeon-visit check."
        ),
        "spine_surgery",
        6,
        (
            "Orthopaedic referrals also cover non-spine orthopaedics: a performer whose specialty is in "
            "ortho-nonspine-specialty should not be treated as a spine surgeon. 183545006/183546007 are service-level "
            "referrals (FHIR R3 referral-type only, not in VSAC Referral)."
        ),
    )


def build_surgeon_referral_ambiguous(ctx: Context) -> ValueSet:
    return build_referral_group(
        ctx,
        "surgeon-referral-ambiguous",
        "Referral to a surgeon of unspecified specialty",
        (
            "Spine-surgery referral rule: a referral to 'a surgeon' counts as a spine-surgery referral only when the "
            "performer or performerType is in spine-surgeon-specialty; otherwise it is ignored."
        ),
        "surgeon_generic_ambiguous",
        2,
        "",
    )


def build_msc_referral(ctx: Context) -> ValueSet:
    rows = [r for r in referral_rows(ctx) if r["group"] == "pmr_msk_medicine"]
    chosen = [r for r in rows if r["code"] in MSC_REFERRAL_CODES]
    expect_count("msc referral codes", len(chosen), len(MSC_REFERRAL_CODES))
    left_out = ", ".join(f"{r['code']} {r['label']}" for r in rows if r["code"] not in MSC_REFERRAL_CODES)
    codes = merge_codes(referral_code(ctx, r) for r in chosen)
    notes = (
        f"Seven SNOMED referral codes for MSC-type care (rehabilitation / PM&R, occupational health, sport and "
        f"exercise medicine, back-pain clinic) chosen from the pmr_msk_medicine group of {REFERRAL_CSV}. "
        f"{unverified_note(codes)} Left out of the same csv group (pain, chiropractic, osteopathy: not MSC "
        f"specialties per the program page): {left_out}."
    )
    return ValueSet(
        "msc-referral",
        "Referral for Medical Spine Center-type care",
        (
            "MSC rule: a ServiceRequest.code in this set is a referral to MSC-type care (PM&R / rehabilitation, "
            "occupational medicine, sports medicine, back-pain clinic): it satisfies or suggests the MSC step."
        ),
        referral_source(ctx, notes),
        codes,
    )


def build_pt_referral(ctx: Context) -> ValueSet:
    rows = [r for r in referral_rows(ctx) if r["group"] == "physical_therapy"]
    expect_count("referral group physical_therapy", len(rows), 15)
    kept = [r for r in rows if r["code"] not in PT_REFERRAL_EXCLUDED]
    codes = merge_codes(referral_code(ctx, r) for r in kept)
    removed = "; ".join(f"{c} ({why})" for c, why in PT_REFERRAL_EXCLUDED.items())
    notes = (
        f"SNOMED rows of {REFERRAL_CSV} with group=physical_therapy, minus {removed}. {unverified_note(codes)} "
        f"390864007 (exercise therapy) and 390893007 (physical activity program) are broader than PT but kept "
        f"as the source groups them."
    )
    return ValueSet(
        "pt-referral",
        "Referral to physical therapy",
        (
            "PT rule: a ServiceRequest.code in this set is a referral to physical therapy; the card offers it as "
            "the first-line alternative and an existing one counts as PT already ordered."
        ),
        referral_source(ctx, notes),
        codes,
    )


def nucc_rows(ctx: Context, groups: Sequence[str]) -> tuple[list[dict[str, str]], str]:
    rows = read_csv(ctx.path(NUCC_CSV), NUCC_COLUMNS)
    repo = single_value(rows, "source", NUCC_CSV)
    return [r for r in rows if r["group"] in groups], repo


def practice_rows(ctx: Context, groups: Sequence[str]) -> tuple[list[dict[str, str]], str]:
    rows = read_csv(ctx.path(PRACTICE_CSV), PRACTICE_COLUMNS)
    repo = single_value(rows, "source", PRACTICE_CSV)
    return [r for r in rows if r["group"] in groups], repo


def practice_code(ctx: Context, row: dict[str, str]) -> Code:
    code = Code(row["system"], row["code"], "", group=row["group"])
    return fill_display(
        ctx,
        code,
        row[PRACTICE_LABEL],
        "display UNVERIFIED: label derived from the FHIR c80-practice-codes identifier",
    )


def build_specialty(
    ctx: Context,
    vs_id: str,
    title: str,
    purpose: str,
    nucc_groups: Sequence[str],
    practice_groups: Sequence[str],
    expected: int,
    extra_notes: str,
) -> ValueSet:
    nucc, nucc_repo = nucc_rows(ctx, nucc_groups)
    codes = [Code(r["system"], r["code"], r["display"], group=r["group"]) for r in nucc]
    retrieved = [f"NUCC displays: {nucc_repo} (via shared/valuesets/{NUCC_CSV})"]
    publisher = "NUCC Health Care Provider Taxonomy"
    version = "NUCC code set as in HL7 Da Vinci PDex Plan-Net IndividualAndGroupSpecialties.fsh"
    notes = f"NUCC rows of {NUCC_CSV} with group in {list(nucc_groups)}; group = csv group."
    if practice_groups:
        practice, practice_repo = practice_rows(ctx, practice_groups)
        codes += [practice_code(ctx, r) for r in practice]
        retrieved.append(f"SNOMED practice settings: {practice_repo} (via shared/valuesets/{PRACTICE_CSV})")
        publisher += "; SNOMED CT practice settings from HL7 FHIR R4 c80-practice-codes"
        version += f"; FHIR R4 c80-practice-codes (fhir-typescript@{FHIR_TS_COMMIT[:8]})"
        notes += (
            f" Plus SNOMED practice-setting rows of {PRACTICE_CSV} with group in {list(practice_groups)}: "
            f"their displays are UNVERIFIED (labels derived from the FHIR identifiers)."
        )
    merged = merge_codes(codes)
    expect_count(vs_id, len(merged), expected)
    return ValueSet(
        vs_id,
        title,
        purpose,
        Source(
            publisher,
            "none (curated list)",
            version,
            "; ".join(retrieved),
            f"{notes} {extra_notes}".strip(),
        ),
        merged,
    )


def build_spine_surgeon_specialty(ctx: Context) -> ValueSet:
    return build_specialty(
        ctx,
        "spine-surgeon-specialty",
        "Spine surgeon specialties (performer)",
        (
            "Spine-surgery referral rule: a performerType or performer PractitionerRole.specialty in this set makes "
            "a referral (or an ambiguous 'referral to surgeon') a spine-surgeon referral."
        ),
        ["spine_surgeon"],
        ["spine_surgeon"],
        5,
        (
            "207X00000X (general orthopaedic surgery) and 394801008 (trauma & orthopaedics) also cover non-spine "
            "surgeons; the non-spine orthopaedic subspecialties are in ortho-nonspine-specialty."
        ),
    )


def build_ortho_nonspine_specialty(ctx: Context) -> ValueSet:
    return build_specialty(
        ctx,
        "ortho-nonspine-specialty",
        "Orthopaedic subspecialties that are not spine surgery",
        (
            "Spine-surgery referral rule: a referral whose performer specialty is in this set (hand, adult "
            "reconstructive, foot & ankle, sports, trauma, paediatric orthopaedics) is not a spine-surgeon referral "
            "and must not raise the MSC card."
        ),
        ["ortho_nonspine_subspecialty"],
        [],
        6,
        "",
    )


def build_msc_specialty(ctx: Context) -> ValueSet:
    return build_specialty(
        ctx,
        "msc-specialty",
        "Medical Spine Center specialties (PM&R, occupational medicine, sports medicine)",
        (
            "MSC rule: an encounter with, or referral to, a performer whose specialty is in this set counts as "
            "MSC-type care (program: PM&R, Occupational Medicine, Sports Medicine)."
        ),
        ["msc_pmr", "msc_occ_med", "msc_sports_med"],
        ["msc"],
        14,
        (
            "Not included: pain medicine (208VP0000X, 208VP0014X, 207LP2900X, SNOMED 394882004), chiropractic "
            "111N00000X and neuromusculoskeletal medicine & OMM 204D00000X: the program names only PM&R, "
            "occupational medicine and sports medicine (plus clinicians with advanced spine training, which no code "
            "expresses). 2081P2900X Pain Medicine (PM&R) is kept as a PM&R subspecialty. Membership in the "
            "designated MSC network is a roster question, not a specialty code."
        ),
    )


def build_pt_specialty(ctx: Context) -> ValueSet:
    return build_specialty(
        ctx,
        "pt-specialty",
        "Physical therapist specialties",
        (
            "PT rule: an encounter with, or referral to, a performer whose specialty is in this set counts as "
            "physical therapy."
        ),
        ["physical_therapy"],
        [],
        3,
        "",
    )


# --------------------------------------------------------------------------
# PT evaluation (CPT paraphrased)
# --------------------------------------------------------------------------

PT_EVAL_OID = "2.16.840.1.113883.3.526.3.1022"
CPT_PARAPHRASES = {
    "97161": "Physical therapy evaluation, low complexity",
    "97162": "Physical therapy evaluation, moderate complexity",
    "97163": "Physical therapy evaluation, high complexity",
    "97164": "Physical therapy re-evaluation",
    "99377": "Physician supervision of a hospice patient (patient not present), 15-29 minutes in a calendar month",
    "99378": "Physician supervision of a hospice patient (patient not present), 30 minutes or more in a calendar month",
}


def vsac_codes(ctx: Context, vs: VsacCsv, group: str | None = None) -> list[Code]:
    """VSAC csv codes with blank displays filled from another file or a paraphrase (noted)."""
    out: list[Code] = []
    for c in vs.codes:
        if not c.display:
            found = ctx.displays().get(c.key)
            if found:
                c = replace(c, display=found, note="display from another VSAC/CDC value set")
            elif c.system == CPT and c.code in CPT_PARAPHRASES:
                c = replace(c, display=CPT_PARAPHRASES[c.code], note=PARAPHRASE_NOTE)
            else:
                raise SourceError(f"{vs.file}: no display for {c.system} {c.code}")
        out.append(replace(c, group=group))
    return out


def vsac_source(vs: VsacCsv, publisher: str, notes: str) -> Source:
    return Source(
        publisher=publisher,
        identifier=vs.oid,
        version=vs.version,
        retrieved_from=f"{vs.source} (extracted as shared/valuesets/{vs.file})",
        notes=notes,
    )


def build_pt_evaluation(ctx: Context) -> ValueSet:
    vs = read_vsac_csv(ctx, PT_EVAL_OID)
    codes = merge_codes(vsac_codes(ctx, vs))
    notes = (
        f"VSAC '{vs.name}' expansion as embedded in canvas-plugins. CPT 97161-97164 descriptors were blanked in "
        f"the source (AMA copyright): their displays here are lbp-cds paraphrases, not AMA text. SNOMED "
        f"displays are the VSAC ones."
    )
    return ValueSet(
        "pt-evaluation",
        "Physical therapy evaluation",
        (
            "PT rule: a Procedure or Encounter with a code in this set is evidence that a physical therapy "
            "evaluation already took place (PT first-line satisfied)."
        ),
        vsac_source(vs, "NLM VSAC (eCQM value set, steward per VSAC)", notes),
        codes,
    )


# --------------------------------------------------------------------------
# Medicare Advantage (SOPT)
# --------------------------------------------------------------------------

MA_OID = "2.16.840.1.113762.1.4.1104.12"
FFS_OID = "2.16.840.1.113762.1.4.1104.10"
PAYER_TYPE_OID = "2.16.840.1.114222.4.11.3591"
MA_CODES = ["11", "111", "1111", "1112", "112", "113", "119", "123", "141", "142"]
MA_AMBIGUOUS = ["14", "19", "191"]


def sopt_codes(ctx: Context, wanted: Sequence[str]) -> list[Code]:
    """SOPT codes with displays from the MA csv, checked against the Payer Type csv."""
    ma = {c.code: c for c in read_vsac_csv(ctx, MA_OID).codes}
    payer = {c.code: c for c in read_vsac_csv(ctx, PAYER_TYPE_OID).codes}
    out: list[Code] = []
    for code in wanted:
        c = ma.get(code) or payer.get(code)
        if c is None or c.system != SOPT:
            raise SourceError(f"SOPT {code} not in the Medicare Advantage / Payer Type csvs")
        if code in payer and payer[code].display != c.display:
            raise SourceError(f"SOPT {code}: display differs between MA and Payer Type csvs")
        out.append(c)
    return out


def ma_overlap_notes(ctx: Context) -> str:
    ma = read_vsac_csv(ctx, MA_OID)
    ffs = read_vsac_csv(ctx, FFS_OID)
    shared = sorted(
        {c.code for c in ma.codes} & {c.code for c in ffs.codes},
        key=lambda s: (len(s), s),
    )
    return (
        f"VSAC Medicare Advantage Payer ({MA_OID}, {len(ma.codes)} codes) and Medicare FFS Payer ({FFS_OID}, "
        f"{len(ffs.codes)} codes) share {len(shared)} codes: {', '.join(shared)}. Resolution (clinical-notes §2e): "
        f"141 D-SNP and 142 FIDE-SNP are Medicare Advantage plans and are kept as MA; 13 Medicare Hospice is not "
        f"MA and is left out; 14, 19, 191 are ambiguous (medicare-advantage-ambiguous) and need the configured "
        f"payer/plan identifiers (Coverage.payor, Coverage.class plan). Which HealthPartners products are MA is "
        f"UNVERIFIED. The SOPT system URI https://nahdo.org/sopt is community usage; the canonical HL7 THO entry "
        f"is UNVERIFIED. Displays from the MA csv, identical in Payer Type {PAYER_TYPE_OID}."
    )


def ma_source(ctx: Context, identifier: str, notes: str) -> Source:
    ma = read_vsac_csv(ctx, MA_OID)
    ffs = read_vsac_csv(ctx, FFS_OID)
    return Source(
        publisher="NLM VSAC (PHDSC Source of Payment Typology codes); MA/ambiguous split by lbp-cds",
        identifier=identifier,
        version=f"Medicare Advantage Payer: {ma.version}; Medicare FFS Payer: {ffs.version}",
        retrieved_from=f"{ma.source} (extracted as shared/valuesets/{ma.file} and {ffs.file})",
        notes=notes,
    )


def build_medicare_advantage(ctx: Context) -> ValueSet:
    notes = f"Subset of VSAC {MA_OID}: {', '.join(MA_CODES)}. {ma_overlap_notes(ctx)}"
    return ValueSet(
        "medicare-advantage-payer",
        "Medicare Advantage coverage (SOPT)",
        (
            "Medicare Advantage exemption: a current Coverage.type with a code in this set exempts the patient from "
            "the MSC visit before an initial spine-surgeon visit."
        ),
        ma_source(ctx, MA_OID, notes),
        merge_codes(sopt_codes(ctx, MA_CODES)),
    )


def build_medicare_advantage_ambiguous(ctx: Context) -> ValueSet:
    notes = f"SOPT {', '.join(MA_AMBIGUOUS)}: members of both VSAC MA and FFS sets. {ma_overlap_notes(ctx)}"
    return ValueSet(
        "medicare-advantage-ambiguous",
        "Medicare coverage types that may or may not be Medicare Advantage (SOPT)",
        (
            "Medicare Advantage exemption: a Coverage.type in this set is MA only if Coverage.payor or the plan "
            "class matches a configured Medicare Advantage plan identifier."
        ),
        ma_source(ctx, f"none (curated intersection of VSAC {MA_OID} and {FFS_OID})", notes),
        merge_codes(sopt_codes(ctx, MA_AMBIGUOUS)),
    )


# --------------------------------------------------------------------------
# Opioids (CDC opioid CDS R4 + VSAC)
# --------------------------------------------------------------------------

CDC_PUBLISHER = "CDC (opioid CDS R4 implementation guide, cqframework/opioid-cds-r4)"
MOUD_OID = "2.16.840.1.113762.1.4.1046.269"
CONDITION_SOURCES = [
    "cdc-malignant-cancer-conditions",
    "sickle-cell-diseases",
    "conditions-likely-terminal-for-opioid-prescribing",
    "limited-life-expectancy-conditions",
    "hospice-finding",
]
PROCEDURE_CDC_SOURCES = ["hospice-procedure", "therapies-indicating-end-of-life-care"]
PROCEDURE_VSAC_SOURCES = [
    ("2.16.840.1.113883.3.464.1003.1003", "vsac-hospice-encounter"),
    ("2.16.840.1.113883.3.464.1003.101.12.1090", "vsac-palliative-care-encounter"),
    ("2.16.840.1.113883.3.526.3.1584", "vsac-hospice-care-ambulatory"),
    ("2.16.840.1.113883.3.464.1003.198.12.1135", "vsac-palliative-care-intervention"),
]


def cdc_line(ctx: Context, vs: FhirValueSet) -> str:
    return f"{vs.id}: {vs.url}, {len(vs.codes)} codes, expansion {vs.expansion_date}"


def cdc_retrieved(ctx: Context, sets: Sequence[FhirValueSet]) -> str:
    return "; ".join(manifest_source(ctx, vs.file) for vs in sets)


def build_opioid_analgesics(ctx: Context) -> ValueSet:
    vs = read_fhir_valueset(ctx, "opioid-analgesics-with-ambulatory-misuse-potential")
    expect_count(vs.file, len(vs.codes), 557)
    moud = read_fhir_valueset(ctx, "buprenorphine-and-methadone-medications")
    overlap = len({c.key for c in vs.codes} & {c.key for c in moud.codes})
    notes = (
        f"Full CDC expansion ({len(vs.codes)} SCD/SBD/GPCK/BPCK codes, {vs.expansion_date}); built by CDC from "
        f"SNOMED 360204007 via RxMix with cough/antispasmodic combinations and injectables removed. {overlap} "
        f"codes are buprenorphine or methadone products (also in {moud.id}): subtract moud before any "
        f"opioid-for-LBP card. 27 codes are absent from the 2020 OMTK ingredient table "
        f"(derived/cdc_opioid_analgesics_not_in_OMTK.csv)."
    )
    return ValueSet(
        "opioid-analgesics",
        "Opioid analgesics with ambulatory misuse potential",
        (
            "Opioid rule: a MedicationRequest for a code in this set, minus moud, is an opioid analgesic order; the "
            "card suggests non-opioid and non-drug alternatives (PT, CBT)."
        ),
        Source(
            CDC_PUBLISHER,
            vs.url,
            f"expansion {vs.expansion_date}",
            cdc_retrieved(ctx, [vs]),
            notes,
        ),
        merge_codes(vs.codes),
    )


def build_moud(ctx: Context) -> ValueSet:
    cdc = read_fhir_valueset(ctx, "buprenorphine-and-methadone-medications")
    vsac = read_vsac_csv(ctx, MOUD_OID)
    expect_count(cdc.file, len(cdc.codes), 85)
    expect_count(vsac.file, len(vsac.codes), 30)
    cdc_codes = with_group(cdc.codes, cdc.id)
    vsac_list = vsac_codes(ctx, vsac, group="vsac-moud")
    cdc_keys = {c.key for c in cdc_codes}
    only_vsac = [f"{c.code} {c.display}" for c in vsac_list if c.key not in cdc_keys]
    merged = merge_codes(cdc_codes + vsac_list)
    analgesic = analgesic_formulations(merged)
    in_vsac = sum(1 for c in analgesic if c.group and "vsac-moud" in c.group)
    notes = (
        f"Union of CDC {cdc_line(ctx, cdc)} and VSAC {MOUD_OID} '{vsac.name}' ({len(vsac.codes)} codes, "
        f"{vsac.version}); group = source ({cdc.id} / vsac-moud, '; '-joined when in both). Codes only in the VSAC "
        f"set: {'; '.join(only_vsac) or 'none'}. Displays from the CDC file where both "
        f"have one. Caveat: the CDC set is ALL buprenorphine and methadone products, so {len(analgesic)} codes here "
        f"are analgesic formulations (buprenorphine transdermal systems and buprenorphine-only buccal films, "
        f"{in_vsac} of them also in VSAC MOUD); methadone tablets are in both sets. Subtracting this set from "
        f"opioid-analgesics therefore also hides those pain prescriptions from the opioid rule."
    )
    return ValueSet(
        "moud",
        "Medications for opioid use disorder (buprenorphine, methadone)",
        (
            "Opioid rule: codes subtracted from opioid-analgesics so that an MOUD order (buprenorphine, methadone) "
            "does not raise the opioid-for-LBP card."
        ),
        Source(
            publisher=f"{CDC_PUBLISHER}; NLM VSAC",
            identifier=f"{cdc.url}; {MOUD_OID}",
            version=f"CDC expansion {cdc.expansion_date}; MOUD {vsac.version}",
            retrieved_from=f"{cdc_retrieved(ctx, [cdc])}; {vsac.source} (extracted as shared/valuesets/{vsac.file})",
            notes=notes,
        ),
        merged,
    )


def analgesic_formulations(codes: Iterable[Code]) -> list[Code]:
    """Buprenorphine products marketed for pain: transdermal systems, buprenorphine-only buccal films."""
    pattern = re.compile(r"Transdermal System|^buprenorphine [0-9.]+ MG Buccal Film")
    return [c for c in codes if pattern.search(c.display)]


def range_code_note(codes: Iterable[Code]) -> str:
    ranges = [c.code for c in codes if "-" in c.code]
    if not ranges:
        return ""
    return (
        f" {len(ranges)} ICD-10-CM chapter/block range entries from the CDC expansion (e.g. {ranges[0]}) are "
        f"kept as in the source; they never match a coded diagnosis."
    )


def build_opioid_exclusion_conditions(ctx: Context) -> ValueSet:
    sets = [read_fhir_valueset(ctx, name) for name in CONDITION_SOURCES]
    codes = merge_codes(c for vs in sets for c in with_group(vs.codes, vs.id))
    multi = sum(1 for c in codes if c.group and ";" in c.group)
    notes = (
        "Union of CDC opioid CDS R4 exclusion value sets (group = source value set id, '; '-joined for the "
        f"{multi} codes in more than one): "
        + "; ".join(cdc_line(ctx, vs) for vs in sets)
        + "."
        + range_code_note(codes)
        + " Malignant-cancer and terminal-condition expansions are FY2021 ICD-10-CM / SNOMED 2021-03: newer codes "
        "are missing (match ICD-10-CM by prefix where possible)."
    )
    return ValueSet(
        "opioid-exclusion-conditions",
        "Conditions that exclude the opioid card (cancer, sickle cell, end of life)",
        (
            "Opioid rule: an active condition in this set (malignant cancer, sickle-cell disease, likely-terminal "
            "condition, limited life expectancy, hospice finding) suppresses the opioid-alternatives card, as in "
            "the CDC 2022 guideline scope."
        ),
        Source(
            CDC_PUBLISHER,
            "; ".join(vs.url for vs in sets),
            "; ".join(f"{vs.id} expansion {vs.expansion_date}" for vs in sets),
            cdc_retrieved(ctx, sets),
            notes,
        ),
        codes,
    )


def build_opioid_exclusion_procedures(ctx: Context) -> ValueSet:
    cdc_sets = [read_fhir_valueset(ctx, name) for name in PROCEDURE_CDC_SOURCES]
    vsac_sets = [(read_vsac_csv(ctx, oid), group) for oid, group in PROCEDURE_VSAC_SOURCES]
    codes = merge_codes(
        [c for vs in cdc_sets for c in with_group(vs.codes, vs.id)]
        + [c for vs, group in vsac_sets for c in vsac_codes(ctx, vs, group=group)]
    )
    multi = sum(1 for c in codes if c.group and ";" in c.group)
    paraphrased = [c.code for c in codes if c.note == PARAPHRASE_NOTE]
    notes = (
        f"Union (group = source, '; '-joined for the {multi} codes in more than one) of CDC "
        + "; ".join(cdc_line(ctx, vs) for vs in cdc_sets)
        + "; and VSAC eCQM sets "
        + "; ".join(f"{g} = {vs.oid} '{vs.name}' ({len(vs.codes)} codes, {vs.version})" for vs, g in vsac_sets)
        + f". Systems include HCPCS and CPT; CPT {', '.join(paraphrased)} displays are lbp-cds paraphrases "
        "(descriptors blanked for AMA copyright), not AMA text. Contains findings as well as procedures and "
        "encounters (e.g. 'Seen in hospice'), as the sources do."
    )
    return ValueSet(
        "opioid-exclusion-procedures",
        "Hospice, palliative and end-of-life care (procedures, encounters)",
        (
            "Opioid rule: a Procedure, Encounter or ServiceRequest code in this set (hospice, palliative or "
            "end-of-life care) suppresses the opioid-alternatives card."
        ),
        Source(
            publisher=f"{CDC_PUBLISHER}; NLM VSAC (eCQM value sets)",
            identifier="; ".join([vs.url for vs in cdc_sets] + [vs.oid for vs, _ in vsac_sets]),
            version="; ".join(
                [f"{vs.id} expansion {vs.expansion_date}" for vs in cdc_sets]
                + [f"{vs.oid} {vs.version}" for vs, _ in vsac_sets]
            ),
            retrieved_from=cdc_retrieved(ctx, cdc_sets)
            + f"; {vsac_sets[0][0].source} (extracted as "
            + ", ".join(f"shared/valuesets/{vs.file}" for vs, _ in vsac_sets)
            + ")",
            notes=notes,
        ),
        codes,
    )


# --------------------------------------------------------------------------
# Registry, checks, output
# --------------------------------------------------------------------------


def red_flag_builder(spec: RedFlagSpec) -> Callable[[Context], ValueSet]:
    return lambda ctx: build_red_flags(ctx, spec)


BUILDERS: list[Callable[[Context], ValueSet]] = [
    build_lbp_trigger,
    build_lbp_context,
    *[red_flag_builder(spec) for spec in RED_FLAG_SPECS],
    build_spine_surgery_referral,
    build_surgeon_referral_ambiguous,
    build_spine_surgeon_specialty,
    build_ortho_nonspine_specialty,
    build_msc_specialty,
    build_msc_referral,
    build_pt_referral,
    build_pt_evaluation,
    build_pt_specialty,
    build_medicare_advantage,
    build_medicare_advantage_ambiguous,
    build_opioid_analgesics,
    build_moud,
    build_opioid_exclusion_conditions,
    build_opioid_exclusion_procedures,
]


def check_valueset(vs: ValueSet) -> None:
    """Invariants the JSON Schema cannot express: order, uniqueness, displays."""
    if not vs.codes:
        raise SourceError(f"{vs.id}: no codes")
    keys = [c.key for c in vs.codes]
    if keys != sorted(set(keys)):
        raise SourceError(f"{vs.id}: codes not sorted or duplicated")
    blank = [c.code for c in vs.codes if not c.display.strip()]
    if blank:
        raise SourceError(f"{vs.id}: codes without display: {blank}")


def render(vs: ValueSet) -> str:
    """Pretty JSON with one code per line, so diffs stay readable."""
    head = vs.as_json()
    codes = head.pop("codes")
    text = json.dumps(head, indent=1, ensure_ascii=False)
    lines = ",\n  ".join(json.dumps(c, ensure_ascii=False) for c in codes)
    return text[:-2] + ',\n "codes": [\n  ' + lines + "\n ]\n}\n"


def write_all(valuesets: Sequence[ValueSet], out_dir: Path, check_only: bool) -> int:
    """Write (or compare) every file; return the number of files that differ."""
    if not check_only:
        out_dir.mkdir(parents=True, exist_ok=True)
    stale = 0
    for vs in valuesets:
        path = out_dir / f"{vs.id}.json"
        text = render(vs)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            print(f"ok       {path.name:40} {len(vs.codes):5d} codes")
            continue
        stale += 1
        if check_only:
            print(f"STALE    {path.name:40} {len(vs.codes):5d} codes")
        else:
            path.write_text(text, encoding="utf-8")
            print(f"written  {path.name:40} {len(vs.codes):5d} codes")
    return stale


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "source",
        nargs="?",
        type=Path,
        default=DEFAULT_SOURCE,
        help=f"shared valuesets folder (default: {DEFAULT_SOURCE})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"output folder (default: {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if any file is out of date",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (args.source / "MANIFEST.md").is_file():
        print(
            f"error: {args.source} has no MANIFEST.md (pass the shared valuesets folder)",
            file=sys.stderr,
        )
        return 2
    ctx = Context(args.source)
    try:
        valuesets = harmonize_icd_displays([build(ctx) for build in BUILDERS])
        for vs in valuesets:
            check_valueset(vs)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ids = [vs.id for vs in valuesets]
    if len(ids) != len(set(ids)):
        print("error: duplicate value set ids", file=sys.stderr)
        return 2
    stale = write_all(valuesets, args.out, args.check)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
