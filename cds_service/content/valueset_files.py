"""Value set files (guideline_data/valuesets/*.json): ICD-10-CM families expanded, duplicates reported.

A code entry with `"include_descendants": true` stands for the code and every code below it in the
ICD-10-CM tabular (e.g. M51.36 and M51.360, M51.361, M51.362, M51.369), with the tabular's displays.

A published list that is wrong for the rules is kept as published and corrected by an overlay,
valuesets/overlays/<id>.json: the codes it removes are taken out and the codes it adds put in, each
with its note saying why (e.g. sickle cell trait out of the CDC sickle cell disease list).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cds_service.content.icd10cm import TABULAR, Families
from cds_service.content.problems import Problem
from hooks.terminology import ICD10CM, normalize

# Reads and schema-checks one file, adding any problems; None when the file is unusable.
Reader = Callable[[Path], Any]
SYSTEM_NAMES = {
    ICD10CM: "ICD-10-CM",
    "http://snomed.info/sct": "SNOMED CT",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "RxNorm",
    "http://www.ama-assn.org/go/cpt": "CPT",
    "http://nucc.org/provider-taxonomy": "NUCC",
    "https://nahdo.org/sopt": "SOPT",
}


@dataclass(frozen=True)
class Concept:
    system: str
    code: str
    display: str

    def __str__(self) -> str:
        return f"{self.code} ({SYSTEM_NAMES.get(self.system, self.system)})"


@dataclass(frozen=True)
class Listed:
    """A concept of a value set and the entry of the file that brings it in."""

    concept: Concept
    entry: int  # position in `codes`, from 0
    family: str | None = None  # the code whose descendants include it, if it came from an expansion

    @property
    def key(self) -> tuple[str, str]:
        return normalize(self.concept.system, self.concept.code)


def load_valuesets(
    root: Path, read: Reader, families: Families, problems: list[Problem], files: Collection[str]
) -> dict[str, list[Listed]]:
    """Every valuesets/*.json, corrected by valuesets/overlays/*.json; `files` (paths under root, as
    read) lists them, so the sets are built from the same bytes as the rest of the content."""
    sets: dict[str, list[Listed]] = {}
    for path in json_files(root, files, "valuesets"):
        data = read(path)
        if not (isinstance(data, dict) and isinstance(data.get("codes"), list)):
            continue
        file = path.relative_to(root).as_posix()
        if data.get("id") != path.stem:
            problems.append(
                Problem(file, ("id",), f'the id "{data.get("id")}" must be the file name without .json ("{path.stem}")')
            )
        listed = [
            item for index, entry in enumerate(data["codes"]) for item in expand(file, index, entry, families, problems)
        ]
        problems += duplicates_within(file, listed)
        sets[path.stem] = listed
    for path in json_files(root, files, "valuesets/overlays"):
        apply_overlay(root, path, read(path), sets, families, problems)
    families.save()
    problems += different_meanings(sets)
    return sets


def json_files(root: Path, files: Iterable[str], folder: str) -> list[Path]:
    """The *.json of `files` directly in `folder`, sorted."""
    return sorted(
        root / name for name in files if PurePosixPath(name).parent == PurePosixPath(folder) and name.endswith(".json")
    )


def apply_overlay(
    root: Path, path: Path, data: Any, sets: dict[str, list[Listed]], families: Families, problems: list[Problem]
) -> None:
    """The published set as corrected: `remove` taken out, `add` put in (families expanded)."""
    if not isinstance(data, dict):
        return
    file = path.relative_to(root).as_posix()
    base = sets.get(path.stem)
    if data.get("id") != path.stem or base is None:
        problems.append(
            Problem(
                file,
                ("id",),
                f'an overlay corrects the value set named by its file name ("{path.stem}"), '
                f'so its id must be "{path.stem}" and valuesets/{path.stem}.json must exist',
            )
        )
        return
    present = {item.key for item in base}
    removed: set[tuple[str, str]] = set()
    for index, entry in enumerate(data["remove"]):
        for item in expand(file, index, entry, families, problems):
            if item.key not in present and item.family is None:
                message = f"{item.concept} is not in valuesets/{path.stem}.json, so there is nothing to remove"
                problems.append(Problem(file, ("remove", index, "code"), message))
            removed.add(item.key)
    added: list[Listed] = []
    for index, entry in enumerate(data["add"]):
        for item in expand(file, index, entry, families, problems):
            if item.key in present - removed:
                if item.family is None:
                    message = f"{item.concept} is already in valuesets/{path.stem}.json; remove this entry"
                    problems.append(Problem(file, ("add", index, "code"), message))
                continue
            added.append(item)
    problems += duplicates_within(file, added)
    sets[path.stem] = [item for item in base if item.key not in removed] + added


def expand(
    file: str, index: int, entry: Mapping[str, Any], families: Families, problems: list[Problem]
) -> list[Listed]:
    listed = [Listed(Concept(entry["system"], entry["code"], entry["display"]), index)]
    if not entry.get("include_descendants"):
        return listed
    members = families.descendants(entry["code"])
    if members is None:
        problems.append(
            Problem(
                file,
                ("codes", index, "code"),
                f'"{entry["code"]}" is not an ICD-10-CM code in the {TABULAR}, so it has no descendants to include',
            )
        )
        return listed
    return listed + [Listed(Concept(ICD10CM, code, display), index, entry["code"]) for code, display in members]


def duplicates_within(file: str, listed: list[Listed]) -> list[Problem]:
    first: dict[tuple[str, str], Listed] = {}
    problems = []
    for item in listed:
        earlier = first.setdefault(item.key, item)
        if earlier is not item:
            problems.append(Problem(file, ("codes", item.entry), f"{item.concept} {twice(earlier, item)}"))
    return problems


def twice(earlier: Listed, later: Listed) -> str:
    """Why a code appears twice, in the words of the file."""
    if later.family and earlier.family:
        return f"is included twice, as a descendant of {earlier.family} and of {later.family}"
    if later.family:
        return f"is listed at entry {earlier.entry + 1} and again as a descendant of {later.family}; list it once"
    if earlier.family:
        return f"is already included as a descendant of {earlier.family} (entry {earlier.entry + 1}); remove this entry"
    return f"is listed twice, at entries {earlier.entry + 1} and {later.entry + 1}; list it once"


def different_meanings(sets: Mapping[str, list[Listed]]) -> list[Problem]:
    """One (system, code) must have one display in every value set, or reviewers read different things.

    (Twice in the same set is already a duplicate.)
    """
    seen: dict[tuple[str, str], tuple[str, Listed]] = {}
    problems = []
    for name, listed in sets.items():
        for item in listed:
            other_name, other = seen.setdefault(item.key, (name, item))
            if other_name != name and other.concept.display != item.concept.display:
                problems.append(
                    Problem(
                        f"valuesets/{name}.json",
                        ("codes", item.entry, "display"),
                        f'{item.concept} is "{item.concept.display}" here but "{other.concept.display}" in '
                        f"valuesets/{other_name}.json (codes > entry {other.entry + 1}); one code must have one "
                        "display everywhere",
                    )
                )
    return problems


def concepts(sets: Mapping[str, list[Listed]]) -> dict[str, tuple[Concept, ...]]:
    return {name: tuple(item.concept for item in listed) for name, listed in sets.items()}
