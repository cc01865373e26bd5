"""What the renderer reads from the content, and the rules card text must follow.

The content loader (cds_service/content) builds objects of this shape from guideline_data and checks
card text against these rules, so the renderer never meets text it cannot fill in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# The {placeholders} card summaries, details, link labels and bases may use.
PLACEHOLDERS = frozenset({"region", "notice", "suspended_since", "suspended_until", "basis"})
NO_REGION = "all regions"  # {region} when the patient's region is not known
NO_END_DATE = "further notice"  # {suspended_until} of a suspension without an end date
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
    def cards(self) -> Mapping[str, Any]:
        """cards.yaml: card text, links, override reasons, bases."""
        ...

    @property
    def orders(self) -> Mapping[str, Any]:
        """orders.yaml: the FHIR resources that suggestions create."""
        ...

    @property
    def version(self) -> str:
        """A hash of every content file: ties feedback to the exact wording shown."""
        ...
