"""The clinical content the rules read: value sets and policy, and the names of the sets they use."""

from __future__ import annotations

from dataclasses import dataclass, field

from hooks.policy import Policy
from hooks.terminology import ValueSets

# The value sets the rules look up by name: the content must provide every one of them.
VALUESETS_USED = frozenset(
    {
        "lbp-trigger",
        "lbp-context",
        "generic-pain",
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
        "pt-treatment",
        "pt-specialty",
        "medicare-advantage-payer",
        "non-medical-coverage",
        "medicare-unspecified-payer",
        "opioid-analgesics",
        "opioid-non-analgesic-products",
        "moud",
        "opioid-exclusion-conditions",
        "opioid-exclusion-procedures",
        "moud-only-products",
        "opioid-use-disorder",
        "lumbar-spine-surgery-status",
        "lumbar-spine-surgery",
        "visit-follow-up",
        "visit-emergency",
    }
)


@dataclass(frozen=True)
class Knowledge:
    """The clinical content the rules use: value sets, policy, and where MSC access exists."""

    valuesets: ValueSets
    policy: Policy
    # The postal-code prefixes of the MSC directory's regions (msc/directory.yaml): members living
    # elsewhere have no MSC access, so the MSC step does not apply to them.
    msc_postal_prefixes: frozenset[str] = field(default_factory=frozenset)
    msc_prefix_length: int = 3
