"""Loading guideline_data: value sets, card text, policy, order templates, MSC directory.

Everything is validated against its JSON Schema and cross-checked, at start-up and on every reload,
into immutable structures; nothing is read from disk per request. Problems are reported in plain
words with file, line and field (see problems.py), for the informatics staff who edit these files.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

import orjson
import yaml
from cachetools import LRUCache
from jsonschema import Draft202012Validator

from cards.model import LONGEST_APPOINTMENT, NO_END_DATE, NO_REGION, PLACEHOLDERS, SUMMARY_LIMIT, Region, sorted_json
from cds_service.content.crd import CRD, check_crd
from cds_service.content.forms import FORMS_DIR, PN_FORM_ID, Form, build_form
from cds_service.content.icd10cm import Families, default_families
from cds_service.content.problems import FieldPath, Problem, placeholders, schema_problems, with_lines
from cds_service.content.valueset_files import Concept, concepts, load_valuesets
from cds_service.settings import DEFAULT_CONTENT_DIR
from hooks.decisions import FORM_NEEDS, TOPICS, VARIANTS
from hooks.knowledge import VALUESETS_USED, Knowledge
from hooks.policy import Policy, Suspension
from hooks.terminology import ValueSets

CARDS, POLICY, ORDERS, DIRECTORY, HANDOUT = (
    "cards.yaml",
    "policy.yaml",
    "orders.yaml",
    "msc/directory.yaml",
    "msc/handout.md",
)


# Files in these folders share one schema; every other file has its own, named after it.
SCHEMA_OF_FOLDER = {"valuesets": "valueset", "overlays": "valueset-overlay", FORMS_DIR: "questionnaire"}


class ContentError(Exception):
    """guideline_data is invalid; `problems` says where and why, in plain words."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class ContentYamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """YAML as written: dates stay text (the schemas check them), everything else as safe_load reads it."""


ContentYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


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
    # Every value set as the rules see it (ICD-10-CM families expanded), for reviewers' diffs.
    valuesets: Mapping[str, tuple[Concept, ...]] = field(default_factory=dict)
    crd: Mapping[str, Any] = field(default_factory=dict)  # crd.yaml: CRD card types, options, coverage text
    forms: Mapping[str, Form] = field(default_factory=dict)  # forms/*.questionnaire.json, by Questionnaire id
    # The bytes of every file, as they were validated and hashed into `version`: what a snapshot saves.
    files: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    @cached_property
    def order_json(self) -> Mapping[str, bytes]:
        """Each order serialised once per content version: parsing it back is 4x cheaper than copying the
        frozen order (`cards.render.thaw`), and a card's order must be its own copy."""
        return MappingProxyType({name: orjson.dumps(order, default=dict) for name, order in self.orders.items()})

    @cached_property
    def order_names(self) -> Mapping[str, str]:
        """The orders.yaml order of each code (as `sorted_json`; the first order when two share one), once per
        content version: analytics tells a suggestion's order by its code."""
        names: dict[str, str] = {}
        for name, order in self.orders.items():
            names.setdefault(sorted_json(order.get("code")), name)
        return MappingProxyType(names)


def load_content(root: Path = DEFAULT_CONTENT_DIR, families: Families | None = None) -> Content:
    content, problems = check_content(root, families)
    if content is None:
        raise ContentError(problems)
    return content


def read_files(root: Path) -> dict[str, bytes]:
    """Every content file's bytes, read once: what is validated, hashed and saved are then the same
    bytes, whatever edit lands while the service starts or reloads. Keys are paths under root, in the
    order the version hashes them."""
    files: dict[str, bytes] = {}
    try:
        paths = sorted(p for p in root.rglob("*") if "__pycache__" not in p.parts and p.is_file())
    except OSError:
        return files
    for path in paths:
        try:
            files[path.relative_to(root).as_posix()] = path.read_bytes()
        except OSError:
            continue  # it vanished while being read: reported as missing if the content needs it
    return files


def check_content(
    root: Path = DEFAULT_CONTENT_DIR, families: Families | None = None
) -> tuple[Content | None, list[Problem]]:
    """The content, or None with every problem found (each with its line). The files are read once
    (`read_files`)."""
    files = read_files(root)
    problems: list[Problem] = []
    reader = Reader(root, problems, files)
    data = {name: reader.read(root / name) for name in (CARDS, POLICY, ORDERS, DIRECTORY, CRD)}
    valuesets = load_valuesets(root, reader.read, families or default_families(), problems, files=files)
    handout = read_text(files, HANDOUT, problems)
    form_files = {file: reader.read(root / file) for file in form_names(files, problems)}
    if not problems:
        policy = build_policy(data[POLICY], problems)
        check_cards(data[CARDS], data[ORDERS], longest_values(data), problems)
        check_directory(data[DIRECTORY], problems)
        check_crd(data[CRD], problems)
        forms = build_forms(form_files, problems)
        problems += [
            Problem(f"valuesets/{name}.json", (), "this value set is missing, but the rules use it")
            for name in sorted(VALUESETS_USED - set(valuesets))
        ]
    if problems:
        return None, with_lines(problems, files)
    codes = {name: [item.concept for item in listed] for name, listed in valuesets.items()}
    content = Content(
        knowledge=Knowledge(
            valuesets=ValueSets({n: [(c.system, c.code) for c in cs] for n, cs in codes.items()}),
            policy=policy,
            msc_postal_prefixes=frozenset(
                p for region in data[DIRECTORY]["regions"] for p in region["postal_prefixes"]
            ),
        ),
        cards=freeze(data[CARDS]),
        orders=freeze(data[ORDERS]),
        directory=build_directory(data[DIRECTORY]),
        handout_markdown=handout,
        version=files_version(files),
        valuesets=MappingProxyType(concepts(valuesets)),
        crd=freeze(data[CRD]),
        forms=MappingProxyType(forms),
        files=MappingProxyType(dict(files)),
    )
    return content, []


def form_names(files: Mapping[str, bytes], problems: list[Problem]) -> list[str]:
    names = sorted(f for f in files if f.startswith(f"{FORMS_DIR}/") and f.endswith(".questionnaire.json"))
    if not names:
        problems.append(
            Problem(f"{FORMS_DIR}/", (), "there is no form (*.questionnaire.json), but the service serves one")
        )
    return names


def build_forms(files: Mapping[str, Any], problems: list[Problem]) -> dict[str, Form]:
    forms: dict[str, Form] = {}
    for file, data in files.items():
        form = build_form(file, data, problems)
        if form.id in forms:
            problems.append(Problem(file, ("id",), f'the Questionnaire id "{form.id}" is used by another form'))
        forms[form.id] = form
    if PN_FORM_ID not in forms:
        problems.append(
            Problem(f"{FORMS_DIR}/", (), f'the Prior Notification form (Questionnaire id "{PN_FORM_ID}") is missing')
        )
    return forms


# Files already parsed and checked, by (file, schema text, file text): a reload after one edit checks
# that file again, not every value set (most of the load time). Cached entries are never changed.
_checked: LRUCache[tuple[str, str, str], tuple[Any, tuple[Problem, ...]]] = LRUCache(maxsize=256)
_checked_lock = threading.Lock()


class Reader:
    """Parses YAML/JSON files and checks each against schemas/<kind>.schema.json."""

    def __init__(self, root: Path, problems: list[Problem], files: Mapping[str, bytes]) -> None:
        self.root = root
        self.problems = problems
        self.files = files
        self._schemas: dict[str, tuple[str, Draft202012Validator] | None] = {}

    def read(self, path: Path) -> Any:
        """The file's data, or None when it has problems (added to self.problems)."""
        file = path.relative_to(self.root).as_posix()
        text = self.text(path, file)
        schema = self.schema(SCHEMA_OF_FOLDER.get(path.parent.name, path.stem))
        if text is None or schema is None:
            return None
        key = (file, schema[0], text)
        with _checked_lock:
            known = _checked.get(key)
        if known is None:
            known = self.check(text, path, file, schema[1])
            with _checked_lock:
                _checked[key] = known
        self.problems += known[1]
        return known[0]

    def check(
        self, text: str, path: Path, file: str, validator: Draft202012Validator
    ) -> tuple[Any, tuple[Problem, ...]]:
        found: list[Problem] = []
        data = parse(text, path, file, found)
        if data is not None:
            found += schema_problems(file, validator.iter_errors(data))
        return (None if found else data), tuple(found)

    def text(self, path: Path, file: str) -> str | None:
        text, problem = decoded(self.files, file)
        if problem:
            self.problems.append(Problem(file, (), problem))
        return text

    def schema(self, kind: str) -> tuple[str, Draft202012Validator] | None:
        """The schema's text (part of the memo key) and its validator."""
        if kind not in self._schemas:
            file = f"schemas/{kind}.schema.json"
            text = self.text(self.root / file, file)
            schema = None if text is None else parse(text, self.root / file, file, self.problems)
            if text is not None and isinstance(schema, dict):
                self._schemas[kind] = (text, Draft202012Validator(schema))
            else:
                self._schemas[kind] = None
        return self._schemas[kind]


def parse(text: str, path: Path, file: str, problems: list[Problem]) -> Any:
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, Loader=ContentYamlLoader)
    except json.JSONDecodeError as error:
        problems.append(Problem(file, (), f"this is not valid JSON: {error.msg} (column {error.colno})", error.lineno))
        return None
    except yaml.YAMLError as error:
        problems.append(yaml_problem(file, error))
        return None
    if data is None:
        problems.append(Problem(file, (), "the file is empty"))
    return data


def plain_os_error(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return "the file does not exist"
    if isinstance(error, UnicodeDecodeError):
        return "the file is not UTF-8 text"
    return str(error)


def yaml_problem(file: str, error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None)
    what = getattr(error, "problem", None) or str(error)
    column = f" (column {mark.column + 1})" if mark else ""
    return Problem(file, (), f"this is not valid YAML: {what}{column}", mark.line + 1 if mark else None)


def decoded(files: Mapping[str, bytes], file: str) -> tuple[str | None, str | None]:
    """A file's text, or why it cannot be read."""
    data = files.get(file)
    if data is None:
        return None, f"cannot be read: {plain_os_error(FileNotFoundError())}"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as error:
        return None, f"cannot be read: {plain_os_error(error)}"


def read_text(files: Mapping[str, bytes], file: str, problems: list[Problem]) -> str:
    text, problem = decoded(files, file)
    if problem:
        problems.append(Problem(file, (), problem))
    return text or ""


# --------------------------------------------------------------------------
# policy.yaml
# --------------------------------------------------------------------------


def build_policy(data: Mapping[str, Any], problems: list[Problem]) -> Policy:
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
        physical_therapy_text=compile_patterns(data["referral_text"]["physical_therapy"], "physical_therapy", problems),
        spine_care_lookback_days=lookback["spine_surgeon_care"],
        long_term_opioid_days=lookback["long_term_opioid"],
        later_encounter_characters=frozenset(data["red_flag_history"]["later_encounter_characters"]),
        red_flag_initial_days=MappingProxyType(dict(data["red_flag_history"]["initial_encounter_days"])),
        plan_payer_ids=frozenset(data["plan_payer_identifiers"]),
        suspensions=tuple(
            build_suspension(s, index, problems) for index, s in enumerate(data["msc_requirement_suspensions"])
        ),
        prior_notification_window_days=lookback["prior_notification"],
        follow_up_text_patterns=compile_patterns(data["visit_text"]["follow_up"], "follow_up", problems, "visit_text"),
        medicare_advantage_text=compile_patterns(
            data["coverage_text"]["medicare_advantage"], "medicare_advantage", problems, "coverage_text"
        ),
        medicare_advantage_text_together=tuple(
            compile_patterns(entry, "medicare_advantage_together", problems, "coverage_text")
            for entry in data["coverage_text"].get("medicare_advantage_together", [])
        ),
    )


def build_suspension(data: Mapping[str, Any], index: int, problems: list[Problem]) -> Suspension:
    at: FieldPath = ("msc_requirement_suspensions", index)
    start = as_date(data["from"], (*at, "from"), problems) or date.min
    end = as_date(data["until"], (*at, "until"), problems) if data.get("until") else None
    if end and end < start:
        problems.append(Problem(POLICY, (*at, "until"), f"the suspension ends ({end}) before it starts ({start})"))
    return Suspension(start=start, end=end, notice=data["notice"])


def compile_patterns(
    patterns: list[str], field: str, problems: list[Problem], section: str = "referral_text"
) -> tuple[re.Pattern[str], ...]:
    compiled = []
    for index, pattern in enumerate(patterns):
        try:
            compiled.append(re.compile(pattern, re.IGNORECASE))
        except re.error as error:
            message = f"'{pattern}' is not a valid text pattern: {error}"
            problems.append(Problem(POLICY, (section, field, index), message))
    return tuple(compiled)


def as_date(value: Any, path: FieldPath, problems: list[Problem]) -> date | None:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        problems.append(Problem(POLICY, path, f'"{value}" is not a real date (write it as YYYY-MM-DD)'))
        return None


# --------------------------------------------------------------------------
# cards.yaml
# --------------------------------------------------------------------------


def check_cards(
    cards: Mapping[str, Any], orders: Mapping[str, Any], longest: Mapping[str, str], problems: list[Problem]
) -> None:
    """Cross-references the schemas cannot express: topics, names, placeholders, summary length."""
    problems += [
        Problem(CARDS, ("cards",), f'the card "{topic}" is missing, but the rules issue this topic')
        for topic in TOPICS
        if topic not in cards["cards"]
    ]
    for topic, card in cards["cards"].items():
        check_card(topic, card, cards, orders, longest, problems)
    for name, link in cards["links"].items():
        check_placeholders(("links", name, "label"), link["label"], problems)
    for name, text in cards["bases"].items():
        check_placeholders(("bases", name), text, problems)
    for name, text in cards["form_needs"].items():
        check_placeholders(("form_needs", name), text, problems)
    problems += [
        Problem(CARDS, ("form_needs",), f'"{name}" is missing, but the rules use it')
        for name in sorted(FORM_NEEDS - set(cards["form_needs"]))
    ]
    for name, link in cards["links"].items():
        if link.get("signed_form") and "path" not in link:
            problems.append(
                Problem(CARDS, ("links", name), "a signed_form link is a page of this service: give it a path")
            )


def check_card(
    topic: str,
    card: Mapping[str, Any],
    cards: Mapping[str, Any],
    orders: Mapping[str, Any],
    longest: Mapping[str, str],
    problems: list[Problem],
) -> None:
    at: FieldPath = ("cards", topic)
    if topic not in TOPICS:
        problems.append(
            Problem(CARDS, at, f'"{topic}" is not a card the rules issue (they issue: {", ".join(TOPICS)})')
        )
    check_names(at, "links", card["links"], cards["links"], "under links in cards.yaml", problems)
    check_names(
        at,
        "override_reasons",
        card["override_reasons"],
        cards["override_reasons"],
        "under override_reasons in cards.yaml",
        problems,
    )
    variants = [(f"when_{name}", card[f"when_{name}"]) for name in VARIANTS if f"when_{name}" in card]
    for when, texts in variants:  # a variant may name its own links and dismiss reasons
        for names in ("links", "override_reasons"):
            if names in texts:
                check_names((*at, when), names, texts[names], cards[names], f"under {names} in cards.yaml", problems)
    for where, fields in [((), card), *(((name,), variant) for name, variant in variants)]:
        for index, suggestion in enumerate(fields.get("suggestions", [])):
            for number, action in enumerate(suggestion["actions"]):
                if "resource" in action and action["resource"] not in orders:
                    path = (*at, *where, "suggestions", index, "actions", number, "resource")
                    problems.append(
                        Problem(
                            CARDS,
                            path,
                            f'"{action["resource"]}" is not an order defined in orders.yaml '
                            f"(defined: {', '.join(orders)})",
                        )
                    )
    texts = [((*at, name), card[name]) for name in ("summary", "detail")]
    texts += [((*at, where, name), fields[name]) for where, fields in variants for name in ("summary", "detail")]
    for path, text in texts:
        if check_placeholders(path, text, problems) and path[-1] == "summary":
            check_summary(path, text, longest, problems)


def check_names(
    at: FieldPath, field: str, names: list[str], defined: Mapping[str, Any], where: str, problems: list[Problem]
) -> None:
    for index, name in enumerate(names):
        if name not in defined:
            message = f'"{name}" is not defined {where}{did_you_mean(name, defined)} (defined: {", ".join(defined)})'
            problems.append(Problem(CARDS, (*at, field, index), message))


def check_placeholders(path: FieldPath, text: str, problems: list[Problem]) -> bool:
    """Whether `text` uses only the allowed {placeholders} (else a problem is added)."""
    try:
        names = placeholders(text)
    except ValueError:
        problems.append(
            Problem(CARDS, path, "a { or } is not paired: write placeholders as {region}, and never use a single brace")
        )
        return False
    unknown = names - PLACEHOLDERS
    if unknown:
        allowed = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
        used = ", ".join("{" + u + "}" for u in sorted(unknown))
        hint = "".join(did_you_mean(name, PLACEHOLDERS, "{", "}") for name in sorted(unknown))
        problems.append(Problem(CARDS, path, f"unknown placeholder {used}{hint}; the placeholders are {allowed}"))
    return not unknown


def did_you_mean(name: str, known: Iterable[str], before: str = '"', after: str = '"') -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {before}{close[0]}{after}?)" if close else ""


def check_summary(path: FieldPath, summary: str, longest: Mapping[str, str], problems: list[Problem]) -> None:
    """The spec caps a summary under 140 characters: check it with each placeholder at its longest."""
    filled = fill(summary, longest)
    if len(filled) <= SUMMARY_LIMIT:
        return
    used = sorted(placeholders(summary))
    filling = "; ".join(f'{{{name}}} as "{longest[name]}"' for name in used)
    when = f" with {filling}" if used else ""
    problems.append(
        Problem(
            CARDS,
            path,
            f"the summary is {len(filled)} characters long{when}; a card summary must be at most {SUMMARY_LIMIT} "
            f"characters, so shorten it by {len(filled) - SUMMARY_LIMIT}",
        )
    )


def longest_values(data: Mapping[str, Any]) -> dict[str, str]:
    """The longest text each placeholder can take with this content (what render.py fills in)."""
    regions = [NO_REGION, *(region["name"] for region in data[DIRECTORY]["regions"])]
    notices = ["", *(s["notice"] for s in data[POLICY]["msc_requirement_suspensions"])]
    values = {
        "region": max(regions, key=len),
        "notice": max(notices, key=len),
        "suspended_since": "2000-01-01",
        "suspended_until": max([NO_END_DATE, "2000-01-01"], key=len),
        "basis": "",
    }
    bases = [fill(text, values) for text in data[CARDS]["bases"].values()]
    values["basis"] = max(bases, key=len)
    values["appointment_date"], values["appointment_with"] = LONGEST_APPOINTMENT
    values["form_needs"] = max(data[CARDS]["form_needs"].values(), key=len)
    return values


def fill(text: str, values: Mapping[str, str]) -> str:
    try:
        return text.format_map(values)
    except (KeyError, ValueError, IndexError, AttributeError):
        return text  # reported by check_placeholders


# --------------------------------------------------------------------------
# msc/directory.yaml
# --------------------------------------------------------------------------


def check_directory(data: Mapping[str, Any], problems: list[Problem]) -> None:
    regions = [region["id"] for region in data["regions"]]
    for index, center in enumerate(data["centers"]):
        if center["region"] not in regions:
            message = f'"{center["region"]}" is not one of the regions listed above ({", ".join(regions)})'
            problems.append(Problem(DIRECTORY, ("centers", index, "region"), message))


def build_directory(data: Mapping[str, Any]) -> Directory:
    regions = tuple(Region(id=r["id"], name=r["name"]) for r in data["regions"])
    by_prefix = {p: region for region, r in zip(regions, data["regions"], strict=True) for p in r["postal_prefixes"]}
    return Directory(
        notice=data["notice"],
        regions=regions,
        centers=tuple(freeze(c) for c in data["centers"]),
        region_by_prefix=MappingProxyType(by_prefix),
    )


def files_version(files: Mapping[str, bytes]) -> str:
    """A hash of every file's path and bytes, in path order."""
    digest = hashlib.sha256()
    for name in sorted(files, key=PurePosixPath):
        digest.update(name.encode())
        digest.update(files[name])
    return digest.hexdigest()[:12]


def freeze(value: Any) -> Any:
    """Read-only views, so no request can change shared content."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value
