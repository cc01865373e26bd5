"""Build guideline_data/valuesets/*.json from the recipes and the copied sources.

`build.yaml` declares the sources (files under `sources/`: a CSV, a canvas-extracted VSAC CSV or a FHIR
ValueSet) and the build-wide settings; `recipes/<id>.yaml` says, per value set, which rows of which sources to
take and what to write in its provenance block. Both are checked against `schema.json` first. A recipe's
`parts` are unioned; each part is either listed `codes` or rows of a `source`, taken by these operations:

- `where` filters rows by column (`value`, or `not`, `in`, `not_in`, `contains`, `matches`); `expect_rows`
  checks how many matched; `keep` (only these codes) or `drop` (code: reason) must name codes that matched;
  `also_in` / `not_in` keep only the codes that are (are not) in another source;
- `columns`, `group` or `group_column` map a row to a code; `fill_display` fills a missing display from the
  display pool (build.yaml), else from a fallback column or table, each noted; `displays_agree_with` checks
  the displays against another source; `collapse_icd10cm_families` writes a whole ICD-10-CM family as its
  code with include_descendants (simple-icd-10-cm, as the service expands it); `rxnorm_component_of` keeps the
  rows whose display is, by RxNorm's naming, a component (SCDC) or branded component (SBDC) of a product of
  another source.

The union is deduplicated by (system, code), sorted, and checked (`expect_count`, `checks`). `facts` (a
`count`, `list` or `group` over `codes`, `parts`, a part, its `.dropped` rows or `source:<name>`) and every
source's fields fill the provenance templates. Last, one ICD-10-CM code gets one display across all value
sets. Nothing outside the repository is read: every source path must lie inside the sources folder.
"""

from __future__ import annotations

import argparse
import csv
import difflib
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import jsonschema
import yaml

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
DEFAULT_CONFIG = HERE / "build.yaml"
DEFAULT_OUT = REPO_ROOT / "guideline_data" / "valuesets"
SCHEMA = json.loads((HERE / "schema.json").read_text(encoding="utf-8"))
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CODE_FIELDS = ("system", "code", "display")
FHIR_XML = "{http://hl7.org/fhir}"  # the FHIR XML namespace, as ElementTree spells it

Item = dict[str, str]


class RecipeError(Exception):
    """A recipe, the build settings or a source is not what the build expects."""


def load_yaml(path: Path, definition: str) -> dict[str, Any]:
    """A YAML file, checked against schema.json's `definition`, with a message naming the file and place."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RecipeError(f"{path.name}: {exc}") from None
    _string_keys(data, path.name)
    validator = jsonschema.Draft202012Validator({**SCHEMA, "$ref": f"#/$defs/{definition}"})
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        at = "/".join(str(p) for p in error.absolute_path) or "top level"
        raise RecipeError(f"{path.name}: {at}: {error.message}")
    assert isinstance(data, dict)
    return data


def _string_keys(data: object, where: str) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            if not isinstance(key, str):
                raise RecipeError(f"{where}: key {key!r} must be quoted (codes are text)")
            _string_keys(value, where)
    elif isinstance(data, list):
        for value in data:
            _string_keys(value, where)


def fill(template: str, values: Mapping[str, Any], where: str) -> str:
    """str.format_map, with a message naming the template when a field is unknown."""
    try:
        return template.format_map(values)
    except KeyError as exc:
        raise RecipeError(f"{where}: unknown field {exc.args[0]!r} in {template!r}") from None
    except (AttributeError, IndexError) as exc:
        raise RecipeError(f"{where}: unknown field {exc} in {template!r}") from None
    except ValueError as exc:
        raise RecipeError(f"{where}: bad template {template!r}: {exc}") from None


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

    def as_item(self) -> Item:
        return {**{f: getattr(self, f) for f in CODE_FIELDS}, "group": self.group or "", "note": self.note or ""}

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
class ValueSet:
    id: str
    title: str
    purpose: str
    source: dict[str, str]
    codes: tuple[Code, ...]

    def as_json(self) -> dict[str, Any]:
        head = {"id": self.id, "title": self.title, "purpose": self.purpose, "source": self.source}
        return {**head, "codes": [c.as_json() for c in self.codes]}


@dataclass(frozen=True)
class Condition:
    column: str
    op: str
    values: tuple[str, ...]

    def test(self, item: Mapping[str, str]) -> bool:
        value, first = item[self.column], self.values[0]
        match self.op:
            case "eq":
                return value == first
            case "not":
                return value != first
            case "in":
                return value in self.values
            case "not_in":
                return value not in self.values
            case "contains":
                return first in value
            case _:  # matches
                return re.search(first, value) is not None


def parse_where(spec: Mapping[str, Any], where: str) -> tuple[Condition, ...]:
    out = []
    for column, cond in spec.items():
        op, arg = next(iter(cond.items())) if isinstance(cond, dict) else ("eq", cond)
        values = tuple(arg) if isinstance(arg, list) else (str(arg),)
        if op == "matches":
            try:
                re.compile(values[0])
            except re.error as exc:
                raise RecipeError(f"{where}: bad regular expression {values[0]!r}: {exc}") from None
        out.append(Condition(column, op, values))
    return tuple(out)


def select(items: Iterable[Item], conditions: Sequence[Condition], columns: Iterable[str], where: str) -> list[Item]:
    """The items that meet every condition; an error when a condition names an unknown column."""
    known = set(columns)
    for c in conditions:
        if c.column not in known:
            raise RecipeError(f"{where}: unknown column {c.column!r} (columns: {sorted(known)})")
    return [i for i in items if all(c.test(i) for c in conditions)]


@dataclass(frozen=True)
class FillDisplay:
    when: tuple[Condition, ...] | None  # None: when the display is blank
    column: str | None = None
    system: str | None = None
    displays: Mapping[str, str] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class Part:
    name: str
    source: str | None = None
    codes: tuple[Code, ...] = ()
    where: tuple[Condition, ...] = ()
    expect_rows: int | None = None
    keep: tuple[str, ...] | None = None
    drop: Mapping[str, str] = field(default_factory=dict)
    also_in: str | None = None
    not_in: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    group: str | None = None
    group_column: str | None = None
    fill_display: FillDisplay | None = None
    displays_agree_with: str | None = None
    collapse_icd10cm_families: bool = False
    rxnorm_component_of: str | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> Part:
        fd = data.get("fill_display")
        return cls(
            **{
                **data,
                "codes": tuple(Code(**c) for c in data.get("codes", ())),
                "where": parse_where(data.get("where", {}), where),
                "keep": tuple(data["keep"]) if "keep" in data else None,
                "fill_display": None
                if fd is None
                else FillDisplay(
                    None if fd["when"] == "blank" else parse_where(fd["when"], where), **fd.get("fallback", {})
                ),
            }
        )


@dataclass(frozen=True)
class Fact:
    op: str  # count, list or group
    of: str
    where: tuple[Condition, ...] = ()
    also_in: str | None = None
    not_in: str | None = None
    item: str | None = None
    sep: str = ", "
    sort: str | None = None
    by: str | None = None
    values: str | None = None
    values_sep: str = " / "
    format: str | None = None
    empty: str = ""

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> Fact:
        op = next(k for k in ("count", "list", "group") if k in data)
        rest = {k: v for k, v in data.items() if k != op}
        return cls(op, str(data[op]), **{**rest, "where": parse_where(data.get("where", {}), where)})


@dataclass(frozen=True)
class Recipe:
    file: str
    id: str
    title: str
    purpose: str
    parts: tuple[Part, ...]
    facts: Mapping[str, Fact]
    checks: tuple[Mapping[str, str], ...]
    expect_count: int | None
    source: Mapping[str, str]


def load_recipe(path: Path) -> Recipe:
    data = load_yaml(path, "recipe")
    where = path.name
    if data["id"] != path.stem:
        raise RecipeError(f"{where}: id {data['id']!r} differs from the file name")
    parts = tuple(Part.parse(p, f"{where}: part {p['name']!r}") for p in data["parts"])
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise RecipeError(f"{where}: part names repeat: {names}")
    facts = {n: Fact.parse(f, f"{where}: fact {n!r}") for n, f in data.get("facts", {}).items()}
    source = {k: data["source"][k] for k in ("publisher", "identifier", "version", "retrieved_from", "notes")}
    return Recipe(
        where,
        data["id"],
        data["title"],
        data["purpose"],
        parts,
        facts,
        tuple(data.get("checks", ())),
        data.get("expect_count"),
        source,
    )


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------


class Fields(dict[str, str]):
    """A source's facts for templates: `{name.field}`."""

    def __getattr__(self, name: str) -> str:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"{name!r}; the source has {', '.join(sorted(self))}") from None


@dataclass(frozen=True)
class Source:
    file: str
    columns: tuple[str, ...]
    rows: tuple[Item, ...]
    fields: Fields
    display_rows: tuple[Item, ...]

    def keyset(self) -> set[tuple[str, str]]:
        return {(r["system"], r["code"]) for r in self.rows}


@dataclass(frozen=True)
class Settings:
    root: Path
    sources_dir: Path
    recipes_dir: Path
    sources: Mapping[str, Mapping[str, Any]]
    manifest: str | None = None
    vsac_index: str | None = None
    pool: Sequence[str] = ()
    pool_note: str = ""
    icd10cm_note: str = "display from the ICD-10-CM tabular (the source says '{display}')"


def load_settings(config: Path, root: Path = REPO_ROOT) -> Settings:
    data = load_yaml(config, "build")
    sources_dir = (config.parent / data["sources_dir"]).resolve()
    if not sources_dir.is_relative_to(root.resolve()):
        raise RecipeError(f"{config.name}: sources_dir {sources_dir} is outside {root}")
    pool = data.get("display_pool", {"sources": [], "note": ""})
    unknown = [n for n in pool["sources"] if n not in data["sources"]]
    if unknown:
        raise RecipeError(f"{config.name}: display_pool: unknown source(s) {unknown}")
    return Settings(
        root,
        sources_dir,
        (config.parent / data["recipes_dir"]).resolve(),
        data["sources"],
        data.get("manifest"),
        data.get("vsac_index"),
        pool["sources"],
        pool["note"],
        data.get("icd10cm_display_conflict_note", Settings.icd10cm_note),
    )


def read_csv(path: Path, required: Iterable[str], where: str) -> tuple[tuple[str, ...], list[Item]]:
    """Header and rows (values stripped) of a CSV file, after checking that the header has the needed columns."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = tuple(reader.fieldnames or ())
        missing = [c for c in required if c not in header]
        if missing:
            raise RecipeError(f"{where}: missing column(s) {missing} (header: {list(header)})")
        return header, [{k: (v or "").strip() for k, v in row.items() if k is not None} for row in reader]


def flatten_contains(entries: Sequence[Any]) -> list[dict[str, Any]]:
    """expansion.contains entries, descending into nested contains; abstract entries skipped."""
    out: list[dict[str, Any]] = []
    for entry in entries:
        if entry.get("code") and not entry.get("abstract"):
            out.append(entry)
        out.extend(flatten_contains(entry.get("contains", [])))
    return out


def compose_concepts(vs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """compose.include.concept entries with their system filled in."""
    includes = vs.get("compose", {}).get("include", [])
    return [{"system": inc.get("system", ""), **concept} for inc in includes for concept in inc.get("concept", [])]


def as_rows(entries: Iterable[Mapping[str, Any]]) -> list[Item]:
    return [{"system": e["system"], "code": e["code"], "display": e.get("display", "").strip()} for e in entries]


class Sources:
    """The declared sources, each read on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._loaded: dict[str, Source] = {}
        self._pool: dict[tuple[str, str], str] | None = None

    def path(self, rel: str, where: str) -> Path:
        path = (self.settings.sources_dir / rel).resolve()
        if not path.is_relative_to(self.settings.sources_dir):
            raise RecipeError(f"{where}: {rel} is outside the sources folder {self.settings.sources_dir}")
        if not path.is_file():
            raise RecipeError(f"{where}: no file {rel} in {self.settings.sources_dir}")
        return path

    def get(self, name: str, where: str) -> Source:
        if name not in self._loaded:
            if name not in self.settings.sources:
                raise RecipeError(f"{where}: unknown source {name!r} (declared: {sorted(self.settings.sources)})")
            self._loaded[name] = self._load(name, self.settings.sources[name])
        return self._loaded[name]

    def _load(self, name: str, spec: Mapping[str, Any]) -> Source:
        kind, rel = spec["kind"], spec["file"]
        where = f"source {name!r} ({rel})"
        path = self.path(rel, where)
        cited = Path(os.path.relpath(self.settings.sources_dir, self.settings.root)).as_posix()
        fields = Fields(kind=kind, file=rel, path=f"{cited}/{rel}")
        if kind == "fhir_valueset":
            columns: tuple[str, ...] = CODE_FIELDS
            rows, display_rows = self._fhir(path, rel, fields, where)
        elif kind == "fhir_codesystem_xml":
            columns = CODE_FIELDS
            rows = display_rows = self._codesystem_xml(path, rel, fields, where)
        else:
            required = spec.get("columns", [])
            columns, rows = read_csv(path, required if kind == "csv" else [*CODE_FIELDS, *required], where)
            if "system" in spec:  # a table of one code system that does not name it in a column
                if "system" in columns:
                    raise RecipeError(f"{where}: `system` is given, but the file has a system column")
                columns, rows = (*columns, "system"), [{**r, "system": spec["system"]} for r in rows]
            display_rows = rows
            if kind == "vsac_csv":
                self._vsac_fields(rel, len(rows), fields, where)
        for column in spec.get("single_valued", []):
            values = sorted({r[column] for r in rows}) if column in columns else ["<no such column>"]
            if len(values) != 1:
                raise RecipeError(f"{where}: expected one distinct {column!r}, found {values}")
            fields[column] = values[0]
        fields["count"] = str(len(rows))
        return Source(rel, columns, tuple(rows), fields, tuple(display_rows))

    def _fhir(self, path: Path, rel: str, fields: Fields, where: str) -> tuple[list[Item], list[Item]]:
        """Codes of expansion.contains, else of compose; the pool reads both."""
        data = json.loads(path.read_text(encoding="utf-8"))
        expansion = data.get("expansion", {})
        expanded, composed = flatten_contains(expansion.get("contains", [])), compose_concepts(data)
        rows = as_rows(expanded or composed)
        if not rows:
            raise RecipeError(f"{where}: no codes in expansion or compose")
        if expansion.get("total", len(rows)) != len(rows):
            raise RecipeError(f"{where}: expansion.total {expansion['total']} != {len(rows)} codes")
        fields.update(
            id=data["id"],
            url=data["url"],
            title=data.get("title", data["id"]),
            expansion_date=str(expansion.get("timestamp", data.get("date", "")))[:10],
            retrieved_from=self._manifest_source(rel, where),
        )
        return rows, as_rows(expanded + composed)

    def _codesystem_xml(self, path: Path, rel: str, fields: Fields, where: str) -> list[Item]:
        """The concepts of a FHIR CodeSystem in XML (HL7 THO's source of truth), nested ones included."""
        root = ElementTree.parse(path).getroot()

        def value(element: ElementTree.Element, name: str) -> str:
            found = element.find(f"{FHIR_XML}{name}")
            return (found.get("value") or "").strip() if found is not None else ""

        url = value(root, "url")
        rows = [
            {"system": url, "code": value(c, "code"), "display": value(c, "display")}
            for c in root.iter(f"{FHIR_XML}concept")
        ]
        if not url or not rows:
            raise RecipeError(f"{where}: a CodeSystem with a url and concepts was expected")
        fields.update(
            id=value(root, "id"),
            url=url,
            title=value(root, "title") or value(root, "name"),
            version=value(root, "version"),
            retrieved_from=self._manifest_source(rel, where),
        )
        return rows

    def _manifest_source(self, rel: str, where: str) -> str:
        """The last cell of the manifest's table row for a file, as owner/repo:path@commit."""
        if self.settings.manifest is None:
            raise RecipeError(f"{where}: a FHIR ValueSet or CodeSystem source needs `manifest` in the build settings")
        for line in self.path(self.settings.manifest, where).read_text(encoding="utf-8").splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and cells[0] == rel:
                return re.sub(r"\s*([:@])\s*", r"\1", re.sub(r"\s*\(.*\)\s*$", "", cells[-1]))
        raise RecipeError(f"{where}: {self.settings.manifest} has no row for {rel}")

    def _vsac_fields(self, rel: str, n: int, fields: Fields, where: str) -> None:
        """OID, name, versions and canvas-plugins file from the VSAC index; its row count must agree."""
        if self.settings.vsac_index is None:
            raise RecipeError(f"{where}: a vsac_csv source needs `vsac_index` in the build settings")
        index = json.loads(self.path(self.settings.vsac_index, where).read_text(encoding="utf-8"))
        entries = [e for e in index if e["file"] == rel or e["file"].endswith("/" + rel)]
        if len(entries) != 1:
            raise RecipeError(f"{where}: {len(entries)} entries for it in {self.settings.vsac_index}")
        entry = entries[0]
        if entry["n"] != n:
            raise RecipeError(f"{where}: {n} rows, {self.settings.vsac_index} says {entry['n']}")
        fields.update({k: str(entry[k]) for k in ("oid", "name", "definition_version", "expansion", "source")})
        fields["version"] = f"VSAC definition {entry['definition_version']}, {entry['expansion']} expansion"

    def pool_display(self, key: tuple[str, str]) -> str | None:
        """The first non-empty display of a code in the display-pool sources, in their listed order."""
        if self._pool is None:
            self._pool = {}
            for name in self.settings.pool:
                src = self.get(name, "display_pool")
                if not set(CODE_FIELDS) <= set(src.columns):
                    raise RecipeError(f"display_pool: source {name!r} has no {list(CODE_FIELDS)} columns")
                for row in src.display_rows:
                    if row["display"]:
                        self._pool.setdefault((row["system"], row["code"]), row["display"])
        return self._pool.get(key)


# --------------------------------------------------------------------------
# Operations on codes
# --------------------------------------------------------------------------


def join_unique(values: Iterable[str | None], sep: str = "; ") -> str | None:
    seen: list[str] = []
    for value in values:
        for part in (value or "").split(sep):
            if part and part not in seen:
                seen.append(part)
    return sep.join(seen) or None


def merge_codes(codes: Iterable[Code]) -> tuple[Code, ...]:
    """Union: one entry per (system, code) with the first display and every group and note; sorted."""
    merged: dict[tuple[str, str], Code] = {}
    for c in codes:
        prev = merged.get(c.key)
        merged[c.key] = (
            c
            if prev is None
            else replace(
                prev,
                display=prev.display or c.display,
                group=join_unique([prev.group, c.group]),
                note=join_unique([prev.note, c.note]),
            )
        )
    return tuple(sorted(merged.values(), key=lambda c: c.key))


def collapse_families(codes: Sequence[Code], where: str) -> list[Code]:
    """Write "X and its descendants" where the list holds X and every ICD-10-CM code below it.

    The service expands these entries with the same package, so the displays and groups of the collapsed
    codes must be exactly what the expansion gives back.
    """
    import simple_icd_10_cm as icd10cm  # imported only here: it takes 1.5 s

    def below(code: str) -> set[str]:
        return {str(d) for d in icd10cm.get_descendants(code)}

    listed = {c.code for c in codes if c.system == ICD10CM}
    whole = [c for c in codes if c.system == ICD10CM and below(c.code) and below(c.code) <= listed]
    roots = [c for c in whole if not any(icd10cm.is_ancestor(r.code, c.code) for r in whole)]
    covered = {d: root for root in roots for d in below(root.code)}
    for c in codes:
        root = covered.get(c.code) if c.system == ICD10CM else None
        if root and (c.display != icd10cm.get_description(c.code) or c.group != root.group):
            raise RecipeError(f"{where}: {c.code}: display or group differs from its family {root.code}; list it")
    return [replace(c, include_descendants=c in roots) for c in codes if c.system != ICD10CM or c.code not in covered]


def harmonize_icd10cm_displays(valuesets: Sequence[ValueSet], note: str) -> list[ValueSet]:
    """One ICD-10-CM code, one display in every set (the service refuses two): the tabular's, when sources differ."""
    displays: dict[str, set[str]] = {}
    for vs in valuesets:
        for c in vs.codes:
            if c.system == ICD10CM:
                displays.setdefault(c.code, set()).add(c.display)
    conflicting = {code for code, found in displays.items() if len(found) > 1}
    if not conflicting:
        return list(valuesets)
    import simple_icd_10_cm as icd10cm

    def fixed(c: Code) -> Code:
        if c.system != ICD10CM or c.code not in conflicting:
            return c
        tabular = str(icd10cm.get_description(c.code))
        if c.display == tabular:
            return c
        why = fill(note, {"display": c.display, "code": c.code}, "icd10cm_display_conflict_note")
        return replace(c, display=tabular, note=join_unique([c.note, why]))

    return [replace(vs, codes=tuple(fixed(c) for c in vs.codes)) for vs in valuesets]


def fill_display(c: Code, row: Item, rule: FillDisplay, sources: Sources, where: str) -> Code:
    """The pool's display, else the fallback column or table (with the rule's note); an error if none."""
    wanted = not c.display if rule.when is None else all(cond.test(row) for cond in rule.when)
    if not wanted:
        return c
    found = sources.pool_display(c.key)
    if found:
        return replace(c, display=found, note=join_unique([c.note, sources.settings.pool_note]))
    if rule.column is not None:
        return replace(c, display=row[rule.column], note=join_unique([c.note, rule.note]))
    if c.system == rule.system and c.code in rule.displays:
        return replace(c, display=rule.displays[c.code], note=join_unique([c.note, rule.note]))
    raise RecipeError(f"{where}: no display for {c.system} {c.code} (none in the display pool, no fallback)")


@dataclass(frozen=True)
class PartResult:
    codes: list[Code]
    items: list[Item]  # the kept rows: their columns, plus the code's fields where the row has none
    dropped: list[Item]  # the rows keep/drop removed, with `why`
    meta: Item  # the source's fields, the part's name and literal group (the `parts` selection)


# RxNorm's normalized names: a clinical drug (SCD) is its components (SCDC, "oxycodone hydrochloride 5 MG") joined
# by " / ", then its dose form; a branded drug (SBD) adds "[Brand]", and its branded component (SBDC) is the
# components with the same brand. Leading qualifiers ("Abuse-Deterrent", "12 HR", a quantity "1 ML") are no part
# of a component.
RXNORM_BRANDED = re.compile(r"^(.*?)\s*\[([^\]]+)\]$")
RXNORM_QUALIFIERS = re.compile(r"^(?:Abuse-Deterrent |\d+ HR |[\d.]+ (?:ML|ACTUAT) )+", re.IGNORECASE)
RXNORM_COMPONENT = re.compile(
    r"^(.*?\d+(?:\.\d+)? (?:MG|MCG|ML|UNT|MEQ|%)(?:/(?:ML|HR|ACTUAT|MG|SQCM))?)(?= |$)", re.IGNORECASE
)


def rxnorm_component_key(name: str) -> tuple[str, str | None]:
    """A component's name as compared: lower case, with its brand apart (SBDC) or None (SCDC)."""
    branded = RXNORM_BRANDED.match(name)
    return (branded[1].lower(), branded[2].lower()) if branded else (name.lower(), None)


def rxnorm_components(product_names: Iterable[str]) -> set[tuple[str, str | None]]:
    """The component keys (SCDC and SBDC) of these clinical and branded drugs, read from their RxNorm names."""
    keys: set[tuple[str, str | None]] = set()
    for name in product_names:
        base, brand = rxnorm_component_key(name)
        segments = [RXNORM_COMPONENT.match(s) for s in RXNORM_QUALIFIERS.sub("", base).split(" / ")]
        if not all(segments):
            continue  # not a drug with strengths (a pack, a kit)
        components = [m[1].lower() for m in segments if m]
        keys.update((c, None) for c in components)
        if brand:
            keys.add((" / ".join(components), brand))
    return keys


def build_part(part: Part, sources: Sources, where: str) -> PartResult:
    where = f"{where}: part {part.name!r}"
    if part.source is None:
        return PartResult(list(part.codes), [c.as_item() for c in part.codes], [], {"part": part.name})
    src = sources.get(part.source, where)
    rows = select(src.rows, part.where, src.columns, where)
    if part.expect_rows is not None and len(rows) != part.expect_rows:
        raise RecipeError(f"{where}: {len(rows)} rows of {src.file} match, the recipe expects {part.expect_rows}")
    col = {f: part.columns.get(f, f) for f in CODE_FIELDS}
    rule = part.fill_display
    needed = [col["system"], col["code"], part.columns.get("display"), part.group_column]
    needed += [rule.column, *(c.column for c in rule.when or ())] if rule else []
    for column in needed:
        if column is not None and column not in src.columns:
            raise RecipeError(f"{where}: unknown column {column!r} (columns: {list(src.columns)})")
    for other, wanted in ((part.also_in, True), (part.not_in, False)):
        if other is not None:
            keys = sources.get(other, where).keyset()
            rows = [r for r in rows if ((r[col["system"]], r[col["code"]]) in keys) == wanted]
    if part.rxnorm_component_of is not None:
        products = sources.get(part.rxnorm_component_of, where).rows
        components = rxnorm_components([p["display"] for p in products])
        rows = [r for r in rows if rxnorm_component_key(r[col["display"]]) in components]
    listed = part.keep if part.keep is not None else tuple(part.drop)
    missing = [c for c in listed if c not in {r[col["code"]] for r in rows}]
    if missing:
        raise RecipeError(f"{where}: listed code(s) {missing} are not among the selected rows of {src.file}")
    dropped = [
        {**r, "why": part.drop.get(r[col["code"]], "")}
        for r in rows
        if (part.keep is not None and r[col["code"]] not in part.keep) or r[col["code"]] in part.drop
    ]
    gone = {d[col["code"]] for d in dropped}
    codes: list[Code] = []
    items: list[Item] = []
    for r in rows:
        if r[col["code"]] in gone:
            continue
        group = part.group if part.group_column is None else r[part.group_column]
        c = Code(r[col["system"]], r[col["code"]], r.get(col["display"], ""), group=group or None)
        if rule is not None:
            c = fill_display(c, r, rule, sources, f"{where} ({src.file})")
        codes.append(c)
        items.append({**c.as_item(), **r})
    if part.displays_agree_with is not None:
        them = sources.get(part.displays_agree_with, where)
        theirs = {(r["system"], r["code"]): r["display"] for r in them.rows}
        for c in codes:
            if theirs.get(c.key, c.display) != c.display:
                raise RecipeError(f"{where}: {c.code} is {c.display!r} here, {theirs[c.key]!r} in {them.file}")
    if part.collapse_icd10cm_families:
        codes = collapse_families(codes, where)
    return PartResult(codes, items, dropped, {**src.fields, "part": part.name, "group": part.group or ""})


# --------------------------------------------------------------------------
# Facts, value sets, output
# --------------------------------------------------------------------------


def selection(
    name: str, parts: Mapping[str, PartResult], codes: Sequence[Code], sources: Sources, where: str
) -> list[Item]:
    """`codes`, `parts` (one item per part read from a source), `<part>`, `<part>.dropped` or `source:<name>`."""
    if name == "codes":
        return [c.as_item() for c in codes]
    if name == "parts":
        return [p.meta for p in parts.values() if "kind" in p.meta]
    if name.startswith("source:"):
        return list(sources.get(name.removeprefix("source:"), where).rows)
    part, _, sub = name.partition(".")
    if part not in parts or sub not in ("", "dropped"):
        raise RecipeError(f"{where}: unknown selection {name!r} (codes, parts, source:<name>, {sorted(parts)})")
    return parts[part].dropped if sub else parts[part].items


def compute_fact(
    fact: Fact, parts: Mapping[str, PartResult], codes: Sequence[Code], sources: Sources, where: str
) -> str:
    """A count, a list of items, or the items grouped by a column, as text for the templates."""
    items = selection(fact.of, parts, codes, sources, where)
    if items:  # (nothing to check the columns against otherwise)
        columns: set[str] = set().union(*items)
        for column in (fact.by, fact.values):
            if column is not None and column not in columns:
                raise RecipeError(f"{where}: unknown column {column!r} (columns: {sorted(columns)})")
        items = select(items, fact.where, columns, where)
    for other, wanted in ((fact.also_in, True), (fact.not_in, False)):
        if other is not None:
            keys = {(i.get("system"), i.get("code")) for i in selection(other, parts, codes, sources, where)}
            items = [i for i in items if ((i.get("system"), i.get("code")) in keys) == wanted]
    numeric = (lambda s: (len(s), s)) if fact.sort == "numeric" else None
    if fact.op == "count":
        return str(len(items))
    if fact.op == "list":
        texts = [fill(fact.item or "{code}", i, where) for i in items]
        texts = sorted(texts, key=numeric) if fact.sort else texts
    else:
        assert fact.by is not None
        groups: dict[str, list[Item]] = {}
        for i in items:
            if i[fact.by]:  # blank values form no group
                groups.setdefault(i[fact.by], []).append(i)
        texts = []
        for key in sorted(groups, key=numeric) if fact.sort else groups:
            values = list(dict.fromkeys(i[fact.values] for i in groups[key] if i[fact.values])) if fact.values else []
            if not fact.values or values:  # with `values`, a group without any is left out
                entry = {"key": key, "count": str(len(groups[key])), "values": fact.values_sep.join(values)}
                texts.append(fill(fact.item or "{key} {count}", entry, where))
    if not texts:
        return fact.empty
    joined = fact.sep.join(texts)
    return (
        joined
        if fact.format is None
        else fill(fact.format, {"items": joined, "count": len(texts), "first": texts[0]}, where)
    )


class Namespace(dict[str, Any]):
    """What the provenance templates see: the facts, and every declared source by name (read when named)."""

    def __init__(self, sources: Sources, where: str) -> None:
        super().__init__()
        self.sources, self.where = sources, where

    def __missing__(self, key: str) -> Fields:
        if key not in self.sources.settings.sources:
            raise KeyError(key)
        return self.sources.get(key, self.where).fields


def build_valueset(recipe: Recipe, sources: Sources) -> ValueSet:
    where = recipe.file
    parts = {p.name: build_part(p, sources, where) for p in recipe.parts}
    codes = merge_codes(c for p in parts.values() for c in p.codes)
    if recipe.expect_count is not None and len(codes) != recipe.expect_count:
        raise RecipeError(f"{where}: {len(codes)} codes, the recipe expects {recipe.expect_count}")
    for check in recipe.checks:
        present = "in_source" in check
        src = sources.get(check["in_source"] if present else check["not_in_source"], f"{where}: checks")
        if ((check["system"], check["code"]) in src.keyset()) != present:
            state = "missing from" if present else "unexpectedly in"
            raise RecipeError(f"{where}: check failed: {check['system']} {check['code']} is {state} {src.file}")
    values = Namespace(sources, where)
    for name, fact in recipe.facts.items():
        if name in sources.settings.sources:
            raise RecipeError(f"{where}: fact {name!r} has the name of a source")
        values[name] = compute_fact(fact, parts, codes, sources, f"{where}: fact {name!r}")
    provenance = {k: fill(v, values, f"{where}: source.{k}") for k, v in recipe.source.items()}
    blank = [c.code for c in codes if not c.display.strip()]
    if not codes or blank:
        raise RecipeError(f"{where}: {'codes without a display: ' + ', '.join(blank) if blank else 'no codes'}")
    return ValueSet(recipe.id, recipe.title, recipe.purpose, provenance, codes)


def build(config: Path = DEFAULT_CONFIG, root: Path = REPO_ROOT) -> list[ValueSet]:
    """Every value set the recipes describe, in recipe file order."""
    settings = load_settings(config, root)
    sources = Sources(settings)
    recipes = [load_recipe(p) for p in sorted(settings.recipes_dir.glob("*.yaml"))]
    if not recipes:
        raise RecipeError(f"no recipes in {settings.recipes_dir}")
    return harmonize_icd10cm_displays([build_valueset(r, sources) for r in recipes], settings.icd10cm_note)


def render(vs: ValueSet) -> str:
    """Pretty JSON with one code per line, so diffs stay readable."""
    head = vs.as_json()
    codes = head.pop("codes")
    text = json.dumps(head, indent=1, ensure_ascii=False)
    lines = ",\n  ".join(json.dumps(c, ensure_ascii=False) for c in codes)
    return text[:-2] + ',\n "codes": [\n  ' + lines + "\n ]\n}\n"


def write_all(valuesets: Sequence[ValueSet], out_dir: Path, check_only: bool) -> int:
    """Write (or, with check_only, compare) every file; return how many differ, extra files included."""
    if not check_only:
        out_dir.mkdir(parents=True, exist_ok=True)
    stale = 0
    for vs in valuesets:
        path, text = out_dir / f"{vs.id}.json", render(vs)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            print(f"ok       {path.name:40} {len(vs.codes):5d} codes")
            continue
        stale += 1
        if not check_only:
            path.write_text(text, encoding="utf-8")
            print(f"written  {path.name:40} {len(vs.codes):5d} codes")
            continue
        print(f"STALE    {path.name:40} {'missing' if current is None else 'differs from what its recipe gives'}")
        diff = difflib.unified_diff(
            (current or "").splitlines(), text.splitlines(), "committed", "recipe", n=0, lineterm=""
        )
        for line in list(diff)[2:14]:
            print(f"         {line[:160]}")
    expected = {f"{vs.id}.json" for vs in valuesets}
    for extra in sorted(p.name for p in out_dir.glob("*.json") if p.name not in expected):
        print(f"{'EXTRA   ' if check_only else 'warning:'} {extra:40} has no recipe")
        stale += check_only
    return stale


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build guideline_data/valuesets/*.json from tools/valuesets/recipes.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if any file differs")
    args = parser.parse_args(argv)
    try:
        valuesets = build()
    except RecipeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = write_all(valuesets, args.out, args.check)
    if args.check and stale:
        print(
            f"error: {stale} file(s) in {args.out} differ from what the recipes give: fix the recipe, or run "
            "`python tools/build_valuesets.py` and commit the result",
            file=sys.stderr,
        )
        return 1
    return 0
