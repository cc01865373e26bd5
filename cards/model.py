"""What the renderer reads from the content, and the rules card text must follow.

The content loader (cds_service/content) builds objects of this shape from guideline_data and checks
card text against these rules, so the renderer never meets text it cannot fill in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

# The content (guideline_data YAML, checked against its JSON Schemas when loaded) and the JSON of an answer are
# not FHIR data the rules read: these three names are the only `Any` in cards/ and hooks/ (FHIR data is typed,
# hooks/model.py; mypy refuses any other explicit Any there).
Content = Mapping[str, Any]  # type: ignore[explicit-any]
JsonObject = dict[str, Any]  # type: ignore[explicit-any]
JsonValue = Any  # type: ignore[explicit-any]

# The {placeholders} card summaries, details, link labels and bases may use.
PLACEHOLDERS = frozenset(
    {
        "region",
        "notice",
        "suspended_since",
        "suspended_until",
        "basis",
        "appointment_date",
        "appointment_with",
        "form_needs",
    }
)
NO_REGION = "all regions"  # {region} when the patient's region is not known
NO_END_DATE = "further notice"  # {suspended_until} of a suspension without an end date
NO_APPOINTMENT_DATE = "a date not given"  # {appointment_date} of an Appointment without a start
NO_APPOINTMENT_WITH = "the spine surgeon"  # {appointment_with} when the Appointment names nobody
APPOINTMENT_WITH_LIMIT = 120  # {appointment_with} is cut to this many characters
# The longest {appointment_date} and {appointment_with}, for the summary length check.
LONGEST_APPOINTMENT = ("2026-12-31 23:59", "x" * APPOINTMENT_WITH_LIMIT)
# Card source extension: the card's Da Vinci CRD card type (source.topic keeps the lbp-cds topic).
CRD_CARD_TYPE_EXTENSION = "lbp-cds-crd-card-type"
CRD_CARD_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
# Card extension (Da Vinci CRD): the context resource(s) the card is about.
ASSOCIATED_RESOURCE_EXTENSION = "davinci-crd.associated-resource"
SUMMARY_LIMIT = 139  # CDS Hooks: a card summary is "<140 characters"
# Card source extension: the content version whose wording the card shows, so feedback can be tied to it.
CONTENT_VERSION_EXTENSION = "lbp-cds-content-version"


@dataclass(frozen=True)
class Region:
    """An MSC region of the directory: card links to the directory are filtered by it."""

    id: str
    name: str


class CardContent(Protocol):
    """The parts of the content a card is made of (read-only)."""

    @property
    def cards(self) -> Content:
        """cards.yaml: card text, links, override reasons, bases."""
        ...

    @property
    def orders(self) -> Content:
        """orders.yaml: the FHIR resources that suggestions create."""
        ...

    @property
    def order_json(self) -> Mapping[str, bytes]:
        """Each order of orders.yaml serialised as JSON once: a suggestion's new order is parsed from it."""
        ...

    @property
    def crd(self) -> Content:
        """crd.yaml: the CRD card type of each topic, configuration options, coverage-information text."""
        ...

    @property
    def version(self) -> str:
        """A hash of every content file: ties feedback to the exact wording shown."""
        ...


def sorted_json(value: object) -> str:
    """JSON with sorted keys, the same for read-only content (mapping proxies, tuples) and for a rendered card's
    plain JSON: what tells which orders.yaml order a suggestion creates."""
    return orjson.dumps(value, default=dict, option=orjson.OPT_SORT_KEYS).decode()
