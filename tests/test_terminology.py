"""Value-set lookups: one lookup per concept gives every set it is in; the memo changes no answer."""

from __future__ import annotations

import pytest

from hooks import terminology
from hooks.terminology import ICD10CM, ValueSets

SNOMED = "http://snomed.info/sct"


@pytest.fixture
def vs() -> ValueSets:
    return ValueSets({"lbp": [(ICD10CM, "M54.50"), (SNOMED, "279039007")], "back": [(ICD10CM, "M54.50")], "none": []})


def test_sets_of_names_every_set_holding_any_coding(vs):
    concept = {
        "coding": [{"system": "urn:oid:2.16.840.1.113883.6.90", "code": "m5450"}, {"system": SNOMED, "code": "x"}]
    }
    assert vs.sets_of(concept) == {"lbp", "back"}
    assert vs.sets_of([{"coding": [{"system": SNOMED, "code": " 279039007 "}]}]) == {"lbp"}
    assert vs.sets_of({"system": ICD10CM, "code": "M54.50"}) == {"lbp", "back"}  # a bare Coding
    assert vs.sets_of(None) == vs.sets_of({}) == vs.sets_of("M54.50") == frozenset()


def test_matches_and_has_any_agree_with_sets_of(vs):
    concept = {"coding": [{"system": ICD10CM, "code": "M5450"}]}
    assert vs.matches("back", concept) and vs.matches("lbp", concept) and not vs.matches("none", concept)
    assert vs.has_any("lbp", [(SNOMED, "279039007")]) and not vs.has_any("back", [(SNOMED, "279039007")])


def test_unknown_set_names_are_an_error_even_without_codes(vs):
    for concept in (None, {"coding": [{"system": ICD10CM, "code": "M54.50"}]}):
        with pytest.raises(KeyError):
            vs.matches("no-such-set", concept)


def test_the_memo_is_bounded_and_answers_stay_right(vs, monkeypatch):
    monkeypatch.setattr(terminology, "MEMO_SIZE", 3)
    for i in range(10):
        assert not vs.matches("lbp", {"coding": [{"system": SNOMED, "code": str(i)}]})
        assert len(vs._memo) <= 3
    assert vs.matches("lbp", {"coding": [{"system": ICD10CM, "code": "m54.50"}]})
