"""Loading guideline_data: value sets, card text, policy, order templates, MSC directory.

Everything is validated against its JSON Schema and cross-checked once, at start-up, into
immutable structures; nothing is read from disk per request.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from hooks.decisions import TOPICS
from hooks.facts import Knowledge
from hooks.policy import Policy, Suspension
from hooks.terminology import ValueSets

DEFAULT_CONTENT_DIR = Path(__file__).resolve().parent.parent / "guideline_data"
PLACEHOLDERS = frozenset({"region", "notice", "suspended_since", "suspended_until", "basis"})
# The value sets the rules in hooks/ look up by name.
REQUIRED_VALUESETS = frozenset(
    {
        "lbp-trigger",
        "lbp-context",
        "red-flags-emergent",
        "red-flags-emergent-non-spine",
        "red-flags-urgent",
        "red-flags-review",
        "spine-surgery-referral",
        "spine-surgeon-specialty",
        "ortho-nonspine-specialty",
        "msc-specialty",
        "msc-referral",
        "pt-referral",
        "pt-evaluation",
        "pt-specialty",
        "medicare-advantage-payer",
        "opioid-analgesics",
        "moud",
        "opioid-exclusion-conditions",
        "opioid-exclusion-procedures",
    }
)


class ContentError(Exception):
    """guideline_data is invalid; `problems` says where and why, in plain words."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Region:
    id: str
    name: str


@dataclass(frozen=True)
class Directory:
    notice: str
    regions: tuple[Region, ...]
    centers: tuple[Mapping[str, Any], ...]
    region_by_prefix: Mapping[str, Region]

    def region_for(self, postal_code: str | None) -> Region | None:
        return self.region_by_prefix.get((postal_code or "")[:3])

    def region(self, region_id: str | None) -> Region | None:
        return next((r for r in self.regions if r.id == region_id), None)


@dataclass(frozen=True)
class Content:
    knowledge: Knowledge
    cards: Mapping[str, Any]  # cards.yaml, validated
    orders: Mapping[str, Any]  # orders.yaml: FHIR resources that suggestions create
    directory: Directory
    handout_markdown: str
    version: str  # hash of every content file: ties feedback to the exact wording shown


def load_content(root: Path = DEFAULT_CONTENT_DIR) -> Content:
    problems: list[str] = []
    cards = read_validated(root / "cards.yaml", root, problems)
    policy_data = read_validated(root / "policy.yaml", root, problems)
    orders = read_validated(root / "orders.yaml", root, problems)
    directory_data = read_validated(root / "msc" / "directory.yaml", root, problems)
    valuesets = load_valuesets(root, problems)
    if problems:
        raise ContentError(problems)
    policy = build_policy(policy_data, problems)
    check_cards(cards, orders, problems)
    missing = REQUIRED_VALUESETS - set(valuesets)
    problems += [f"valuesets/{name}.json: missing, but the rules use it" for name in sorted(missing)]
    if problems:
        raise ContentError(problems)
    return Content(
        knowledge=Knowledge(valuesets=ValueSets(valuesets), policy=policy),
        cards=freeze(cards),
        orders=freeze(orders),
        directory=build_directory(directory_data),
        handout_markdown=(root / "msc" / "handout.md").read_text(encoding="utf-8"),
        version=content_version(root),
    )


def read_validated(path: Path, root: Path, problems: list[str]) -> Any:
    """Parse a YAML/JSON file and check it against schemas/<kind>.schema.json."""
    relative = path.relative_to(root)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as error:
        problems.append(f"{relative}: cannot be read: {error}")
        return None
    kind = "valueset" if path.parent.name == "valuesets" else path.stem
    for error in schema_validator(root, kind).iter_errors(data):
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"{relative}: {where}: {error.message}")
    return data


def schema_validator(root: Path, kind: str) -> Draft202012Validator:
    schema = json.loads((root / "schemas" / f"{kind}.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def load_valuesets(root: Path, problems: list[str]) -> dict[str, list[tuple[str, str]]]:
    sets: dict[str, list[tuple[str, str]]] = {}
    for path in sorted((root / "valuesets").glob("*.json")):
        data = read_validated(path, root, problems)
        if isinstance(data, dict) and isinstance(data.get("codes"), list):
            if data.get("id") != path.stem:
                problems.append(f"valuesets/{path.name}: id '{data.get('id')}' differs from the file name")
            codes = [(c["system"], c["code"]) for c in data["codes"]]
            duplicates = sorted(code for code, count in Counter(codes).items() if count > 1)
            problems += [f"valuesets/{path.name}: {code} ({system}) is listed twice" for system, code in duplicates]
            sets[path.stem] = codes
    return sets


def build_policy(data: Mapping[str, Any], problems: list[str]) -> Policy:
    lookback = data["lookback_days"]
    return Policy(
        adult_age=data["adult_age"],
        msc_lookback_days=lookback["msc_evaluation"],
        pt_lookback_days=lookback["physical_therapy"],
        red_flag_review_days=lookback["red_flag_finding"],
        exclusion_lookback_days=lookback["opioid_exclusion"],
        emergent_priorities=frozenset(data["emergent_order_priorities"]),
        medicare_advantage_plan_ids=frozenset(data["medicare_advantage_plan_identifiers"]),
        referral_text_patterns=compile_patterns(data["referral_text"]["include"], "include", problems),
        referral_text_exclusions=compile_patterns(data["referral_text"]["exclude"], "exclude", problems),
        suspensions=tuple(
            Suspension(
                start=as_date(s["from"]), end=as_date(s["until"]) if s.get("until") else None, notice=s["notice"]
            )
            for s in data["msc_requirement_suspensions"]
        ),
    )


def compile_patterns(patterns: list[str], field: str, problems: list[str]) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for pattern in patterns:
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as error:
            problems.append(f"policy.yaml: referral_text/{field}: '{pattern}' is not a valid pattern: {error}")
    return tuple(compiled)


def as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def check_cards(cards: Mapping[str, Any], orders: Mapping[str, Any], problems: list[str]) -> None:
    """Cross-references the schemas cannot express: topics, names, placeholders."""
    for topic in TOPICS:
        if topic not in cards["cards"]:
            problems.append(f"cards.yaml: cards/{topic}: missing, but the rules issue this topic")
    for topic, card in cards["cards"].items():
        where = f"cards.yaml: cards/{topic}"
        if topic not in TOPICS:
            problems.append(f"{where}: not a topic the rules issue ({', '.join(TOPICS)})")
        for name in card.get("links", []):
            if name not in cards["links"]:
                problems.append(f"{where}/links: '{name}' is not defined under links")
        for name in card.get("override_reasons", []):
            if name not in cards["override_reasons"]:
                problems.append(f"{where}/override_reasons: '{name}' is not defined under override_reasons")
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                if "resource" in action and action["resource"] not in orders:
                    name, label = action["resource"], suggestion["label"]
                    problems.append(
                        f"{where}: suggestion '{label}' creates '{name}', which orders.yaml does not define"
                    )
        texts = [card["summary"], card["detail"], *(card.get("when_suspended") or {}).values()]
        check_placeholders(where, texts, problems)
    check_placeholders("cards.yaml: links", [link["label"] for link in cards["links"].values()], problems)
    check_placeholders("cards.yaml: bases", list(cards["bases"].values()), problems)


def check_placeholders(where: str, texts: list[str], problems: list[str]) -> None:
    for text in texts:
        try:
            names = {name for _literal, name, _spec, _conv in string.Formatter().parse(text) if name is not None}
        except ValueError as error:
            problems.append(f"{where}: a brace is not closed: {error}")
            continue
        unknown = names - PLACEHOLDERS
        if unknown:
            allowed = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
            problems.append(
                f"{where}: unknown placeholder {', '.join('{' + u + '}' for u in sorted(unknown))} (allowed: {allowed})"
            )


def build_directory(data: Mapping[str, Any]) -> Directory:
    regions = tuple(Region(id=r["id"], name=r["name"]) for r in data["regions"])
    by_prefix = {p: region for region, r in zip(regions, data["regions"], strict=True) for p in r["postal_prefixes"]}
    return Directory(
        notice=data["notice"],
        regions=regions,
        centers=tuple(freeze(c) for c in data["centers"]),
        region_by_prefix=MappingProxyType(by_prefix),
    )


def content_version(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def freeze(value: Any) -> Any:
    """Read-only views, so no request can change shared content."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value
