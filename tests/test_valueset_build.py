"""The value-set build (tools/valuesets): each engine operation on tiny sources, its errors, and the real build.

The operations run on fixture sources written into tmp_path; the last tests run the real recipes and prove they
reproduce guideline_data/valuesets/ byte for byte, so a recipe and the committed files cannot drift apart.
Nothing here reads outside the repository.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.valuesets import engine
from tools.valuesets.engine import RecipeError

# simple-icd-10-cm 1.5.0 reads its data with importlib.resources' legacy functions.
pytestmark = pytest.mark.filterwarnings(r"ignore:.*is deprecated\. Use files\(\) instead:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
VALUESETS = REPO / "guideline_data" / "valuesets"
BUILD_DIR = REPO / "tools" / "valuesets"
SNOMED = "http://snomed.info/sct"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"

PROVENANCE = {
    "publisher": "p",
    "identifier": "i",
    "version": "v",
    "retrieved_from": "{sample.path}",
    "notes": "n",
}
SAMPLE_CSV = """group,system,code,display,note,source
a,http://snomed.info/sct,3,Three,first note,repo@1
a,http://snomed.info/sct,1,One,,repo@1
b,http://snomed.info/sct,2,Two,second note,repo@1
b,http://snomed.info/sct,4,,,repo@1
"""


class World:
    """A build folder in tmp_path: build.yaml, sources/ and recipes/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "tools" / "vs"
        self.sources: dict[str, Any] = {}
        self.settings: dict[str, Any] = {}
        (self.dir / "sources").mkdir(parents=True)
        (self.dir / "recipes").mkdir()
        self.source("sample", "csv", "sample.csv", SAMPLE_CSV, columns=["group", "note"], single_valued=["source"])

    def file(self, rel: str, text: str) -> None:
        path = self.dir / "sources" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def source(self, name: str, kind: str, rel: str, text: str | None, **spec: Any) -> None:
        if text is not None:
            self.file(rel, text)
        self.sources[name] = {"kind": kind, "file": rel, **spec}

    def recipe(self, vs_id: str = "sample-set", **data: Any) -> None:
        body = {"id": vs_id, "title": "T", "purpose": "P", "source": dict(PROVENANCE), **data}
        (self.dir / "recipes" / f"{vs_id}.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")

    def build(self) -> list[engine.ValueSet]:
        config = {"sources_dir": "sources", "recipes_dir": "recipes", "sources": self.sources, **self.settings}
        (self.dir / "build.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
        return engine.build(self.dir / "build.yaml", root=self.root)

    def one(self, **recipe: Any) -> engine.ValueSet:
        self.recipe(**recipe)
        (vs,) = self.build()
        return vs


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def codes(vs: engine.ValueSet) -> list[tuple[str, str, str | None, str | None]]:
    return [(c.code, c.display, c.group, c.note) for c in vs.codes]


def error(world: World, **recipe: Any) -> str:
    world.recipe(**recipe)
    with pytest.raises(RecipeError) as caught:
        world.build()
    return str(caught.value)


# --------------------------------------------------------------------------
# Reading sources and filtering rows
# --------------------------------------------------------------------------


def test_a_csv_part_maps_rows_to_sorted_codes_with_groups(world):
    vs = world.one(parts=[{"name": "rows", "source": "sample", "where": {"group": "a"}, "group_column": "group"}])
    assert codes(vs) == [("1", "One", "a", None), ("3", "Three", "a", None)]
    assert vs.source["retrieved_from"] == "tools/vs/sources/sample.csv"


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"group": "b"}, ["2", "4"]),
        ({"group": {"not": "b"}}, ["1", "3"]),
        ({"code": {"in": ["1", "4"]}}, ["1", "4"]),
        ({"code": {"not_in": ["1", "4"]}}, ["2", "3"]),
        ({"note": {"contains": "note"}}, ["2", "3"]),
        ({"display": {"matches": "^T"}}, ["2", "3"]),
        ({"group": "b", "note": {"not": ""}}, ["2"]),
    ],
)
def test_where_conditions(world, where, expected):
    part = {"name": "rows", "source": "sample", "where": where, "columns": {"display": "code"}}
    assert [c.code for c in world.one(parts=[part]).codes] == expected


def test_a_vsac_source_takes_its_metadata_from_the_index_and_checks_its_row_count(world):
    index = [{"file": "vsac/x.csv", "oid": "1.2.3", "name": "X Set", "definition_version": "2020", "n": 1}]
    index[0] |= {"expansion": "eCQM 2025", "source": "canvas:x.py@abc"}
    world.file("vsac/_index.json", json.dumps(index))
    world.source("x", "vsac_csv", "vsac/x.csv", f"system,code,display\n{SNOMED},9,Nine\n")
    world.settings["vsac_index"] = "vsac/_index.json"
    source = dict(PROVENANCE, identifier="{x.oid}", version="{x.version}", retrieved_from="{x.source} ({x.path})")
    vs = world.one(parts=[{"name": "x", "source": "x"}], source=source)
    assert vs.source["identifier"] == "1.2.3"
    assert vs.source["version"] == "VSAC definition 2020, eCQM 2025 expansion"
    assert vs.source["retrieved_from"] == "canvas:x.py@abc (tools/vs/sources/vsac/x.csv)"
    index[0]["n"] = 2
    world.file("vsac/_index.json", json.dumps(index))
    assert "source 'x' (vsac/x.csv): 1 rows, vsac/_index.json says 2" in error(
        world, parts=[{"name": "x", "source": "x"}]
    )


FHIR_VS = {
    "resourceType": "ValueSet",
    "id": "demo",
    "url": "http://example.org/ValueSet/demo",
    "compose": {"include": [{"system": SNOMED, "concept": [{"code": "7", "display": "Compose only"}]}]},
    "expansion": {
        "timestamp": "2024-05-06T10:00:00Z",
        "total": 2,
        "contains": [
            {"abstract": True, "display": "header", "contains": [{"system": SNOMED, "code": "5", "display": " Five "}]},
            {"system": SNOMED, "code": "6", "display": "Six"},
        ],
    },
}
MANIFEST = """| file | url | codes | source |
|---|---|---|---|
| fhir/demo.json | u | 2 | org/repo : vs/demo.json @ abc123 (MIT) |
"""


def test_a_fhir_valueset_source_reads_the_expansion_and_names_its_repository_from_the_manifest(world):
    world.source("demo", "fhir_valueset", "fhir/demo.json", json.dumps(FHIR_VS))
    world.file("MANIFEST.md", MANIFEST)
    world.settings["manifest"] = "MANIFEST.md"
    source = dict(
        PROVENANCE, identifier="{demo.url}", version="{demo.expansion_date}", retrieved_from="{demo.retrieved_from}"
    )
    vs = world.one(parts=[{"name": "demo", "source": "demo"}], source=source)
    assert codes(vs) == [("5", "Five", None, None), ("6", "Six", None, None)]  # nested, stripped; abstract skipped
    assert [vs.source[k] for k in ("identifier", "version", "retrieved_from")] == [
        "http://example.org/ValueSet/demo",
        "2024-05-06",
        "org/repo:vs/demo.json@abc123",
    ]


def test_a_fhir_valueset_without_expansion_gives_its_compose_concepts(world):
    data = {k: v for k, v in FHIR_VS.items() if k != "expansion"}
    world.source("demo", "fhir_valueset", "fhir/demo.json", json.dumps(data))
    world.file("MANIFEST.md", MANIFEST)
    world.settings["manifest"] = "MANIFEST.md"
    assert codes(world.one(parts=[{"name": "demo", "source": "demo"}])) == [("7", "Compose only", None, None)]


def test_a_fhir_valueset_whose_total_is_wrong_or_that_the_manifest_does_not_list_is_refused(world):
    wrong = json.loads(json.dumps(FHIR_VS))
    wrong["expansion"]["total"] = 3
    world.source("demo", "fhir_valueset", "fhir/demo.json", json.dumps(wrong))
    world.file("MANIFEST.md", MANIFEST.replace("fhir/demo.json", "fhir/other.json"))
    world.settings["manifest"] = "MANIFEST.md"
    assert "expansion.total 3 != 2 codes" in error(world, parts=[{"name": "demo", "source": "demo"}])
    world.file("fhir/demo.json", json.dumps(FHIR_VS))
    assert "MANIFEST.md has no row for fhir/demo.json" in error(world, parts=[{"name": "demo", "source": "demo"}])


def test_a_csv_of_one_code_system_names_it_once_in_the_build_settings(world):
    table = "rxcui,name\n7804,oxycodone\n2670,codeine\n"
    world.source("omtk", "csv", "omtk.csv", table, columns=["rxcui", "name"], system="http://rx")
    vs = world.one(parts=[{"name": "p", "source": "omtk", "columns": {"code": "rxcui", "display": "name"}}])
    assert [(c.system, c.code, c.display) for c in vs.codes] == [
        ("http://rx", "2670", "codeine"),
        ("http://rx", "7804", "oxycodone"),
    ]
    world.source("omtk", "csv", "omtk.csv", "system,code\nhttp://x,1\n", system="http://rx")
    assert "`system` is given, but the file has a system column" in error(
        world, parts=[{"name": "p", "source": "omtk"}]
    )


def test_rxnorm_components_are_read_from_the_products_names(world):
    products = (
        "system,code,display\n"
        "rx,1,Abuse-Deterrent 12 HR oxycodone hydrochloride 10 MG Extended Release Oral Tablet [Oxycontin]\n"
        "rx,2,acetaminophen 325 MG / hydrocodone bitartrate 5 MG Oral Tablet\n"
    )
    candidates = (
        "system,code,display\n"
        "rx,10,Oxycodone Hydrochloride 10 MG\n"  # SCDC of 1
        "rx,11,oxycodone hydrochloride 10 MG [OxyContin]\n"  # SBDC of 1
        "rx,12,Hydrocodone Bitartrate 5 MG\n"  # SCDC of 2
        "rx,13,oxycodone hydrochloride 10 MG [Roxicodone]\n"  # another brand
        "rx,14,Hydrocodone Bitartrate 5 MG/ML\n"  # another strength
        "rx,15,oxycodone hydrochloride 10 MG Oral Tablet\n"  # a product, not a component
    )
    world.source("products", "csv", "products.csv", products)
    world.source("candidates", "csv", "candidates.csv", candidates)
    vs = world.one(parts=[{"name": "c", "source": "candidates", "rxnorm_component_of": "products"}])
    assert [c.code for c in vs.codes] == ["10", "11", "12"]


CODE_SYSTEM_XML = """<?xml version="1.0" encoding="UTF-8"?>
<CodeSystem xmlns="http://hl7.org/fhir">
  <id value="demo-cs"/>
  <url value="http://example.org/CodeSystem/demo"/>
  <version value="1.0.0"/>
  <title value="Demo Types"/>
  <concept>
    <code value="a"/>
    <display value=" Alpha "/>
    <concept><code value="a1"/><display value="Alpha one"/></concept>
  </concept>
  <concept><code value="b"/><display value="Beta"/></concept>
</CodeSystem>
"""


def test_a_fhir_codesystem_in_xml_gives_every_concept_and_names_its_repository_from_the_manifest(world):
    world.source("demo", "fhir_codesystem_xml", "tho/demo.xml", CODE_SYSTEM_XML)
    world.file("MANIFEST.md", MANIFEST.replace("fhir/demo.json", "tho/demo.xml"))
    world.settings["manifest"] = "MANIFEST.md"
    source = dict(PROVENANCE, identifier="{demo.url}", version="{demo.title} {demo.version}")
    vs = world.one(parts=[{"name": "demo", "source": "demo", "keep": ["a", "a1"]}], source=source)
    assert codes(vs) == [("a", "Alpha", None, None), ("a1", "Alpha one", None, None)]  # nested, stripped
    assert {c.system for c in vs.codes} == {"http://example.org/CodeSystem/demo"}
    assert [vs.source[k] for k in ("identifier", "version")] == [
        "http://example.org/CodeSystem/demo",
        "Demo Types 1.0.0",
    ]


def test_an_xml_file_that_is_no_codesystem_is_refused(world):
    world.source("demo", "fhir_codesystem_xml", "tho/demo.xml", '<ValueSet xmlns="http://hl7.org/fhir"/>')
    world.file("MANIFEST.md", MANIFEST.replace("fhir/demo.json", "tho/demo.xml"))
    world.settings["manifest"] = "MANIFEST.md"
    assert "a CodeSystem with a url and concepts was expected" in error(world, parts=[{"name": "d", "source": "demo"}])


# --------------------------------------------------------------------------
# Union, subtraction, intersection
# --------------------------------------------------------------------------


def test_parts_are_unioned_keeping_the_first_display_and_every_group_and_note(world):
    listed = {"system": SNOMED, "code": "1", "display": "Uno", "group": "listed", "note": "added by hand"}
    vs = world.one(
        parts=[
            {"name": "rows", "source": "sample", "where": {"group": "a"}, "group": "csv"},
            {"name": "extra", "codes": [listed, {"system": SNOMED, "code": "10", "display": "Ten"}]},
        ]
    )
    assert codes(vs) == [
        ("1", "One", "csv; listed", "added by hand"),
        ("10", "Ten", None, None),
        ("3", "Three", "csv", None),
    ]


def test_keep_and_drop_say_what_they_left_out_and_must_name_selected_codes(world):
    facts = {"removed": {"list": "rows.dropped", "item": "{code} ({why})", "sep": "; "}}
    drop = {"name": "rows", "source": "sample", "where": {"group": "a"}, "drop": {"3": "not wanted"}}
    vs = world.one(parts=[drop], facts=facts, source=dict(PROVENANCE, notes="minus {removed}"))
    assert [c.code for c in vs.codes] == ["1"]
    assert vs.source["notes"] == "minus 3 (not wanted)"
    keep = {"name": "rows", "source": "sample", "keep": ["2", "3"]}
    vs = world.one(
        parts=[keep], facts={"left": {"list": "rows.dropped", "sep": " "}}, source=dict(PROVENANCE, notes="{left}")
    )
    assert [c.code for c in vs.codes] == ["2", "3"]
    assert vs.source["notes"] == "1 4"
    message = error(world, parts=[{"name": "rows", "source": "sample", "where": {"group": "a"}, "keep": ["1", "2"]}])
    assert "part 'rows': listed code(s) ['2'] are not among the selected rows of sample.csv" in message


def test_also_in_and_not_in_intersect_and_subtract_another_source(world):
    world.source("other", "csv", "other.csv", f"system,code,display\n{SNOMED},1,One\n{SNOMED},2,Two\n")
    both = world.one(parts=[{"name": "rows", "source": "sample", "also_in": "other"}])
    assert [c.code for c in both.codes] == ["1", "2"]
    only = world.one(parts=[{"name": "rows", "source": "sample", "where": {"display": {"not": ""}}, "not_in": "other"}])
    assert [c.code for c in only.codes] == ["3"]


# --------------------------------------------------------------------------
# Displays
# --------------------------------------------------------------------------


def test_fill_display_takes_the_pool_first_then_the_fallback_column_or_table(world):
    world.source("pool", "csv", "pool.csv", f"system,code,display\n{SNOMED},4,Four from the pool\n")
    world.settings["display_pool"] = {"note": "from the pool", "sources": ["pool"]}
    fallback = {"column": "note", "note": "label only"}
    part = {"name": "rows", "source": "sample", "fill_display": {"when": {"group": "b"}, "fallback": fallback}}
    assert codes(world.one(parts=[part])) == [
        ("1", "One", None, None),
        ("2", "second note", None, "label only"),
        ("3", "Three", None, None),
        ("4", "Four from the pool", None, "from the pool"),
    ]
    world.settings["display_pool"]["sources"] = []
    table = {"system": SNOMED, "displays": {"4": "Four, paraphrased"}, "note": "paraphrase"}
    part = {"name": "rows", "source": "sample", "fill_display": {"when": "blank", "fallback": table}}
    assert codes(world.one(parts=[part]))[-1] == ("4", "Four, paraphrased", None, "paraphrase")


def test_a_blank_display_nobody_fills_is_an_error(world):
    message = error(world, parts=[{"name": "rows", "source": "sample", "fill_display": {"when": "blank"}}])
    assert "no display for http://snomed.info/sct 4 (none in the display pool, no fallback)" in message
    assert "codes without a display: 4" in error(world, parts=[{"name": "rows", "source": "sample"}])


def test_displays_agree_with_refuses_a_display_another_source_spells_differently(world):
    world.source("other", "csv", "other.csv", f"system,code,display\n{SNOMED},1,One\n{SNOMED},3,3\n")
    part = {"name": "rows", "source": "sample", "where": {"group": "a"}, "displays_agree_with": "other"}
    assert "3 is 'Three' here, '3' in other.csv" in error(world, parts=[part])


def tabular(*entries: str) -> str:
    """A CSV of ICD-10-CM codes with the tabular's displays, all in group g."""
    import simple_icd_10_cm as icd10cm

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(
        [("system", "code", "display", "group")] + [(ICD, c, icd10cm.get_description(c), "g") for c in entries]
    )
    return out.getvalue()


def test_a_whole_icd10cm_family_is_written_once_with_include_descendants(world):
    world.source("icd", "csv", "icd.csv", tabular("M51.36", "M51.360", "M51.361", "M51.362", "M51.369", "M54.50"))
    part = {"name": "icd", "source": "icd", "group_column": "group", "collapse_icd10cm_families": True}
    vs = world.one(parts=[part])
    assert [(c.code, c.include_descendants) for c in vs.codes] == [("M51.36", True), ("M54.50", False)]
    assert '"include_descendants": true' in engine.render(vs)


def test_a_partial_icd10cm_family_stays_explicit_and_a_changed_member_is_an_error(world):
    world.source("icd", "csv", "icd.csv", tabular("M51.36", "M51.360", "M51.361"))
    part = {"name": "icd", "source": "icd", "group_column": "group", "collapse_icd10cm_families": True}
    assert [c.code for c in world.one(parts=[part]).codes] == ["M51.36", "M51.360", "M51.361"]
    lines = tabular("M51.36", "M51.360", "M51.361", "M51.362", "M51.369").splitlines()
    lines[2] = lines[2].removesuffix(",g") + ",other"  # M51.360 in another group than its family
    world.source("icd", "csv", "icd.csv", "\n".join(lines) + "\n")
    assert "M51.360: display or group differs from its family M51.36" in error(world, parts=[part])


def test_one_icd10cm_code_gets_the_tabular_display_in_every_value_set(world):
    world.source("icd", "csv", "icd.csv", f"system,code,display\n{ICD},Z51.5,Palliative care\n")
    world.recipe("first", parts=[{"name": "icd", "source": "icd"}])
    world.recipe(
        "second",
        parts=[{"name": "z", "codes": [{"system": ICD, "code": "Z51.5", "display": "Encounter for palliative care"}]}],
    )
    world.settings["icd10cm_display_conflict_note"] = "tabular display (the source says '{display}')"
    first, second = world.build()
    assert codes(first) == [
        ("Z51.5", "Encounter for palliative care", None, "tabular display (the source says 'Palliative care')")
    ]
    assert codes(second) == [("Z51.5", "Encounter for palliative care", None, None)]


# --------------------------------------------------------------------------
# Facts and provenance templates
# --------------------------------------------------------------------------


def test_facts_count_list_and_group(world):
    world.source("other", "csv", "other.csv", f"system,code,display\n{SNOMED},2,Two\n{SNOMED},10,Ten\n")
    facts = {
        "n": {"count": "rows"},
        "noted": {"count": "codes", "where": {"group": {"contains": "b"}}},
        "shared": {"list": "source:other", "also_in": "source:sample", "item": "{code}={display}"},
        "numeric": {"list": "source:other", "sort": "numeric"},
        "alpha": {"list": "source:other", "sort": "alpha"},
        "notes": {"group": "rows", "by": "group", "values": "note", "item": "{key}: {values}", "sep": "; "},
        "sizes": {
            "group": "rows",
            "by": "group",
            "sort": "alpha",
            "format": "({items}; {count} groups, first {first})",
        },
        "none": {"list": "rows", "where": {"code": "99"}, "format": "never {items}", "empty": "nothing"},
    }
    notes = "{n}|{noted}|{shared}|{numeric}|{alpha}|{notes}|{sizes}|{none}|{sample.source} {sample.count} {sample.file}"
    part = {"name": "rows", "source": "sample", "group_column": "group", "columns": {"display": "code"}}
    vs = world.one(parts=[part], facts=facts, source=dict(PROVENANCE, notes=notes))
    assert vs.source["notes"] == (
        "4|2|2=Two|2, 10|10, 2|a: first note; b: second note|(a 2, b 2; 2 groups, first a 2)|nothing"
        "|repo@1 4 sample.csv"
    )


def test_an_unknown_template_field_or_selection_is_named(world):
    part = [{"name": "rows", "source": "sample", "where": {"group": "a"}}]
    message = error(world, parts=part, source=dict(PROVENANCE, notes="{sample.sourc}"))
    assert "source.notes: unknown field 'sourc'; the source has count, file, kind, path, source" in message
    assert "source.notes: unknown field 'nope'" in error(world, parts=part, source=dict(PROVENANCE, notes="{nope}"))
    facts = {"x": {"count": "rowz"}}
    assert "fact 'x': unknown selection 'rowz'" in error(world, parts=part, facts=facts)


# --------------------------------------------------------------------------
# Checks and a bad recipe
# --------------------------------------------------------------------------


def test_count_checks(world):
    part = {"name": "rows", "source": "sample", "where": {"group": "a"}, "expect_rows": 3}
    assert "part 'rows': 2 rows of sample.csv match, the recipe expects 3" in error(world, parts=[part])
    part = {"name": "rows", "source": "sample", "where": {"group": "a"}}
    assert "sample-set.yaml: 2 codes, the recipe expects 5" in error(world, parts=[part], expect_count=5)


def test_membership_checks(world):
    part = [{"name": "rows", "source": "sample", "where": {"group": "a"}}]
    present = [{"in_source": "sample", "system": SNOMED, "code": "99", "why": "w"}]
    assert f"check failed: {SNOMED} 99 is missing from sample.csv" in error(world, parts=part, checks=present)
    absent = [{"not_in_source": "sample", "system": SNOMED, "code": "1"}]
    assert f"check failed: {SNOMED} 1 is unexpectedly in sample.csv" in error(world, parts=part, checks=absent)


def test_an_unknown_source_or_source_file_is_named(world):
    assert "part 'rows': unknown source 'nope'" in error(world, parts=[{"name": "rows", "source": "nope"}])
    world.source("gone", "csv", "gone.csv", None)
    assert "source 'gone' (gone.csv): no file gone.csv" in error(world, parts=[{"name": "rows", "source": "gone"}])


def test_a_source_outside_the_sources_folder_is_refused(world):
    (world.root / "outside.csv").write_text(SAMPLE_CSV)
    world.source("outside", "csv", "../../../outside.csv", None)
    message = error(world, parts=[{"name": "rows", "source": "outside"}])
    assert "../../../outside.csv is outside the sources folder" in message


def test_an_unknown_column_is_named(world):
    message = error(world, parts=[{"name": "rows", "source": "sample", "where": {"grup": "a"}}])
    assert (
        "part 'rows': unknown column 'grup' (columns: ['code', 'display', 'group', 'note', 'source', 'system'])"
        in message
    )
    assert "unknown column 'label'" in error(
        world, parts=[{"name": "rows", "source": "sample", "columns": {"display": "label"}}]
    )
    world.source("short", "csv", "short.csv", "system,code\n", columns=["display"])
    assert "source 'short' (short.csv): missing column(s) ['display']" in error(
        world, parts=[{"name": "r", "source": "short"}]
    )


def test_a_column_said_to_hold_one_value_must(world):
    world.source("mixed", "csv", "mixed.csv", SAMPLE_CSV.replace("repo@1\n", "repo@2\n", 1), single_valued=["source"])
    assert "expected one distinct 'source', found ['repo@1', 'repo@2']" in error(
        world, parts=[{"name": "r", "source": "mixed"}]
    )


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        (
            {"parts": [{"name": "rows", "sourc": "sample"}]},
            "parts/0: Additional properties are not allowed ('sourc' was unexpected)",
        ),
        ({"parts": []}, "parts: [] should be non-empty"),
        (
            {"parts": [{"name": "rows", "source": "sample", "expect_rows": "2"}]},
            "parts/0/expect_rows: '2' is not of type 'integer'",
        ),
        ({"parts": [{"name": "r", "source": "sample", "where": {"group": {"like": "a"}}}]}, "parts/0/where/group"),
        ({"parts": [{"name": "r", "source": "sample", "drop": {3: "why"}}]}, "key 3 must be quoted (codes are text)"),
        (
            {"parts": [{"name": "r", "source": "sample", "where": {"code": {"matches": "("}}}]},
            "bad regular expression '('",
        ),
        ({"parts": [{"name": "r", "source": "sample"}, {"name": "r", "source": "sample"}]}, "part names repeat"),
    ],
)
def test_a_malformed_recipe_says_where(world, recipe, message):
    assert message in error(world, **recipe)


def test_a_recipe_must_be_named_after_its_value_set(world):
    world.recipe("sample-set", parts=[{"name": "r", "source": "sample"}])
    path = world.dir / "recipes" / "sample-set.yaml"
    path.rename(path.with_name("other.yaml"))
    with pytest.raises(RecipeError, match=r"other\.yaml: id 'sample-set' differs from the file name"):
        world.build()


# --------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------


def test_render_writes_one_code_per_line():
    vs = engine.ValueSet("x", "T", "P", {"notes": "n"}, (engine.Code(SNOMED, "1", "Ünö", group="g"),))
    assert engine.render(vs) == (
        '{\n "id": "x",\n "title": "T",\n "purpose": "P",\n "source": {\n  "notes": "n"\n },\n "codes": [\n'
        '  {"system": "http://snomed.info/sct", "code": "1", "display": "Ünö", "group": "g"}\n ]\n}\n'
    )


def test_check_mode_names_each_stale_missing_or_extra_file_and_writes_nothing(tmp_path, capsys):
    one = engine.ValueSet("one", "T", "P", {"notes": "n"}, (engine.Code(SNOMED, "1", "One"),))
    two = engine.ValueSet("two", "T", "P", {"notes": "n"}, (engine.Code(SNOMED, "2", "Two"),))
    assert engine.write_all([one, two], tmp_path, check_only=False) == 2
    (tmp_path / "two.json").write_text(engine.render(two).replace("Two", "Deux"))
    (tmp_path / "three.json").write_text("{}")
    assert engine.write_all([one, two], tmp_path, check_only=True) == 2
    out = capsys.readouterr().out
    assert re.search(r"^ok +one\.json", out, re.M)
    assert re.search(r"^STALE +two\.json +differs from what its recipe gives", out, re.M)
    assert '-  {"system": "http://snomed.info/sct", "code": "2", "display": "Deux"}' in out
    assert re.search(r"^EXTRA +three\.json +has no recipe", out, re.M)
    assert "Deux" in (tmp_path / "two.json").read_text()


# --------------------------------------------------------------------------
# The real build
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_build() -> list[engine.ValueSet]:
    return engine.build()


def test_the_recipes_reproduce_the_committed_value_sets(tmp_path, monkeypatch, real_build, capsys):
    monkeypatch.setattr(engine, "build", lambda *a, **k: real_build)
    assert engine.main(["--out", str(tmp_path / "out")]) == 0
    built = {p.name: p.read_bytes() for p in (tmp_path / "out").glob("*.json")}
    committed = {p.name: p.read_bytes() for p in VALUESETS.glob("*.json")}
    assert sorted(built) == sorted(committed)
    differ = sorted(name for name in built if built[name] != committed[name])
    assert not differ, (
        f"guideline_data/valuesets differs from the recipes: {differ}; run python tools/build_valuesets.py"
    )
    assert engine.main(["--check"]) == 0


def test_check_fails_naming_the_file_when_a_committed_value_set_was_edited_by_hand(
    tmp_path, monkeypatch, real_build, capsys
):
    out = tmp_path / "valuesets"
    shutil.copytree(VALUESETS, out)
    edited = out / "pt-specialty.json"
    edited.write_text(edited.read_text().replace("Physical Therapist", "Physiotherapist"))
    monkeypatch.setattr(engine, "build", lambda *a, **k: real_build)
    assert engine.main(["--check", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert re.search(r"^STALE +pt-specialty\.json", captured.out, re.M)
    assert "1 file(s)" in captured.err


def test_the_sources_folder_holds_exactly_the_files_the_build_reads_with_their_fingerprints():
    settings = yaml.safe_load((BUILD_DIR / "build.yaml").read_text())
    read = {s["file"] for s in settings["sources"].values()} | {settings["vsac_index"], settings["manifest"]}
    sources = BUILD_DIR / "sources"
    present = {p.relative_to(sources).as_posix() for p in sources.rglob("*") if p.is_file()}
    assert present == read
    manifest = (sources / "MANIFEST.md").read_text()
    fingerprints = dict(re.findall(r"^\| (\S+) \| `([0-9a-f]{64})` \|$", manifest, re.M))
    assert set(fingerprints) == read - {"MANIFEST.md"}
    for rel, digest in fingerprints.items():
        assert hashlib.sha256((sources / rel).read_bytes()).hexdigest() == digest, rel


def test_no_recipe_or_value_set_points_at_the_reference_folder():
    texts = [
        p.read_text() for p in [*BUILD_DIR.glob("*.yaml"), *BUILD_DIR.glob("recipes/*.yaml"), *VALUESETS.glob("*.json")]
    ]
    assert not [t for t in texts if "shared/" in t]


def test_every_declared_source_is_used_by_a_recipe():
    settings = yaml.safe_load((BUILD_DIR / "build.yaml").read_text())
    recipes = "\n".join(p.read_text() for p in BUILD_DIR.glob("recipes/*.yaml"))
    unused = [n for n in settings["sources"] if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", recipes)]
    assert not unused


def test_every_value_set_has_a_recipe_and_a_row_in_the_sources_index():
    """Traceability for informatics staff: SOURCES.md indexes each file the rules read, and each is built."""
    sources_md = (REPO / "guideline_data" / "SOURCES.md").read_text()
    indexed = set(re.findall(r"^\| (?:overlay )?`([\w/-]+)` \|", sources_md, flags=re.MULTILINE))
    files = {p.stem for p in VALUESETS.glob("*.json")}
    overlays = {f"overlays/{p.stem}" for p in (VALUESETS / "overlays").glob("*.json")}
    recipes = {p.stem for p in BUILD_DIR.glob("recipes/*.yaml")}
    assert files | overlays == indexed
    assert files == recipes
