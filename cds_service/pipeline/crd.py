"""Da Vinci CRD (STU 2.2.1) on top of CDS Hooks: the version and configuration extensions.

Discovery declares, for each CRD service, the CRD versions it answers (`davinci-crd.version`, dev-1)
and its configuration options (`davinci-crd.configuration-options`, dev-4/dev-5): `coverage-info` for
the Coverage Information system action and one boolean per CRD card type it can answer with. A
request's `davinci-crd.configuration` is honoured (dev-14): an option set to false withholds that
card type (or the system action); options the service does not offer are ignored (dev-17); an
offered option with a value of the wrong type is refused with 422 (hook-13: valid CDS Hooks, but not
what this specification allows), as is a `davinci-crd.requestedVersion` the service does not answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.errors import Unprocessable
from hooks.decisions import Decision
from hooks.service import ServiceDefinition

CRD_VERSIONS = ("2.2",)  # major.minor only (CRD: "the third 'patch' portion ... should never impact interoperability")
VERSION = "davinci-crd.version"
OPTIONS = "davinci-crd.configuration-options"
CONFIGURATION = "davinci-crd.configuration"
REQUESTED_VERSION = "davinci-crd.requestedVersion"
COVERAGE_INFO = "coverage-info"


@dataclass(frozen=True)
class Configuration:
    """What the client asked for: coverage information or not, and the card types it switched off."""

    coverage_info: bool = True
    card_types_off: frozenset[str] = field(default_factory=frozenset)

    def allows(self, decision: Decision, crd: Mapping[str, Any]) -> bool:
        return crd["card_types"].get(decision.topic) not in self.card_types_off


def option_codes(service: ServiceDefinition, crd: Mapping[str, Any]) -> list[str]:
    """coverage-info (when the service supplies coverage information), then each card type, once."""
    codes = [COVERAGE_INFO] if service.coverage_information else []
    for topic in service.crd_topics:
        kind = crd["card_types"][topic]
        if kind not in codes:
            codes.append(kind)
    return codes


def discovery_extension(service: ServiceDefinition, crd: Mapping[str, Any]) -> dict[str, Any] | None:
    if not service.crd_topics:
        return None  # not a CRD service (patient-view is not a CRD hook)
    options = [
        {
            "code": code,
            "type": "boolean",
            "name": crd["configuration_options"][code]["name"],
            "description": crd["configuration_options"][code]["description"],
            "default": True,
        }
        for code in option_codes(service, crd)
    ]
    return {VERSION: list(CRD_VERSIONS), OPTIONS: options}


def read_configuration(service: ServiceDefinition, body: Mapping[str, Any], crd: Mapping[str, Any]) -> Configuration:
    """The request's CRD configuration for this service; the defaults when it sends none."""
    if not service.crd_topics:
        return Configuration()
    extension = body.get("extension") or {}
    requested = extension.get(REQUESTED_VERSION)
    if requested is not None and requested not in CRD_VERSIONS:
        raise Unprocessable(
            f"extension/{REQUESTED_VERSION}: this service answers CRD version {', '.join(CRD_VERSIONS)} only."
        )
    given = extension.get(CONFIGURATION)
    if given is None:
        return Configuration()
    if not isinstance(given, dict):
        raise Unprocessable(f"extension/{CONFIGURATION} must be an object of option codes and values.")
    offered = option_codes(service, crd)
    for code in offered:
        if code in given and not isinstance(given[code], bool):
            raise Unprocessable(f"extension/{CONFIGURATION}/{code}: expected true or false.")
    off = frozenset(code for code in offered if given.get(code) is False)
    return Configuration(coverage_info=COVERAGE_INFO not in off, card_types_off=off - {COVERAGE_INFO})
