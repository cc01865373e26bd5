"""crd.yaml cross-checks: every card topic has a CRD card type, and each coverage-information state obeys
the invariants of the CRD `ext-coverage-information` extension.

The invariants are those of HL7 Da Vinci CRD STU 2.2.1, fsh/CoverageInformation.fsh (crd-ci-q1..q9), as
the states of crd.yaml can break them (the service never emits satisfied-pa-id or a coded reason
outside CRDCoverageAssertionReasons; the schema already keeps reasons coded from that value set).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cds_service.content.problems import Problem, placeholders
from hooks.decisions import TOPICS

CRD = "crd.yaml"
ON_FILE_PLACEHOLDERS = frozenset({"filed_on", "record_id"})


def check_crd(data: Mapping[str, Any], problems: list[Problem]) -> None:
    types = data["card_types"]
    problems += [
        Problem(CRD, ("card_types",), f'the card "{topic}" has no CRD card type')
        for topic in TOPICS
        if topic not in types
    ]
    problems += [
        Problem(
            CRD, ("card_types", topic), f'"{topic}" is not a card the rules issue (they issue: {", ".join(TOPICS)})'
        )
        for topic in types
        if topic not in TOPICS
    ]
    options = data["configuration_options"]
    problems += [
        Problem(CRD, ("card_types", topic), f'"{kind}" needs a configuration option under configuration_options')
        for topic, kind in types.items()
        if kind not in options
    ]
    info = data["coverage_information"]
    for name, state in info["states"].items():
        for message in invariant_problems(state):
            problems.append(Problem(CRD, ("coverage_information", "states", name), message))
        allowed = ON_FILE_PLACEHOLDERS if name == "pn-on-file" else frozenset()
        for path, text in texts(state, ("coverage_information", "states", name)):
            check_placeholders(path, text, allowed, problems)
    for key in ("msc_expected", "policy_link", "action_description"):
        value = info[key]
        check_placeholders(
            ("coverage_information", key), value if isinstance(value, str) else value["value"], frozenset(), problems
        )


def invariant_problems(state: Mapping[str, Any]) -> list[str]:
    """The crd-ci-q* invariants a state breaks, each in plain words."""
    covered, pa, doc = state["covered"], state.get("pa-needed"), state.get("doc-needed")
    purposes, info_needed, reasons = state.get("doc-purpose", []), state.get("info-needed", []), state["reasons"]
    found = []
    if state["questionnaire"] and doc is None:
        found.append("crd-ci-q1: a questionnaire is named only when doc-needed is given")
    if covered == "not-covered" and pa is not None:
        found.append("crd-ci-q2: with covered not-covered, pa-needed must not be given")
    if "conditional" in (covered, pa, doc) and not info_needed:
        found.append("crd-ci-q3: a conditional covered, pa-needed or doc-needed needs info-needed")
    if info_needed and "conditional" not in (covered, pa, doc):
        found.append("crd-ci-q3: info-needed is given only when covered, pa-needed or doc-needed is conditional")
    if pa in ("satisfied", "no-auth", "not-covered") and "withpa" in purposes:
        found.append(f"crd-ci-q4: with pa-needed {pa}, doc-purpose cannot be withpa")
    if pa == "satisfied":
        found.append("crd-ci-q5: pa-needed satisfied needs a satisfied-pa-id, which this program never has")
    if "OTH" in info_needed and not reasons:
        found.append("crd-ci-q6: info-needed OTH needs a reason")
    if any(p != "conditional" for p in purposes) and not reasons:
        found.append("crd-ci-q8: a doc-purpose needs a reason")
    if "indeterminate" in (covered, pa, doc) and not reasons:
        found.append("crd-ci-q9: an indeterminate covered, pa-needed or doc-needed needs a reason")
    return found


def texts(state: Mapping[str, Any], at: tuple[Any, ...]) -> list[tuple[tuple[Any, ...], str]]:
    found = []
    for index, reason in enumerate(state["reasons"]):
        found.append(((*at, "reasons", index), reason if isinstance(reason, str) else reason["text"]))
    for index, detail in enumerate(state["details"]):
        found.append(((*at, "details", index, "value"), detail["value"]))
    return found


def check_placeholders(path: tuple[Any, ...], text: str, allowed: frozenset[str], problems: list[Problem]) -> None:
    try:
        names = placeholders(text)
    except ValueError:
        problems.append(Problem(CRD, path, "a { or } is not paired: write placeholders as {filed_on}"))
        return
    unknown = names - allowed
    if unknown:
        may = ", ".join("{" + n + "}" for n in sorted(allowed)) or "none"
        used = ", ".join("{" + n + "}" for n in sorted(unknown))
        problems.append(Problem(CRD, path, f"unknown placeholder {used}; here the placeholders are: {may}"))
