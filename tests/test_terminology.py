"""Value-set lookups: one lookup per concept gives every set it is in; the memo changes no answer."""

from __future__ import annotations

import msgspec
import pytest

from hooks import terminology
from hooks.model import CodeableConcept
from hooks.terminology import ICD10CM, ValueSets

SNOMED = "http://snomed.info/sct"


def cc(*codings: tuple[str, str]) -> CodeableConcept:
    return msgspec.convert({"coding": [{"system": s, "code": c} for s, c in codings]}, CodeableConcept)


@pytest.fixture
def vs() -> ValueSets:
    return ValueSets({"lbp": [(ICD10CM, "M54.50"), (SNOMED, "279039007")], "back": [(ICD10CM, "M54.50")], "none": []})


def test_sets_of_names_every_set_holding_any_coding(vs):
    concept = cc(("urn:oid:2.16.840.1.113883.6.90", "m5450"), (SNOMED, "x"))
    assert vs.sets_of(concept) == {"lbp", "back"}
    assert vs.sets_of([cc((SNOMED, " 279039007 "))]) == {"lbp"}
    assert vs.sets_of([None, cc((ICD10CM, "M54.50"))]) == {"lbp", "back"}
    assert vs.sets_of(None) == vs.sets_of(cc()) == vs.sets_of([]) == frozenset()


def test_matches_and_has_any_agree_with_sets_of(vs):
    concept = cc((ICD10CM, "M5450"))
    assert vs.matches("back", concept) and vs.matches("lbp", concept) and not vs.matches("none", concept)
    assert vs.has_any("lbp", [(SNOMED, "279039007")]) and not vs.has_any("back", [(SNOMED, "279039007")])


def test_unknown_set_names_are_an_error_even_without_codes(vs):
    for concept in (None, cc((ICD10CM, "M54.50"))):
        with pytest.raises(KeyError):
            vs.matches("no-such-set", concept)


def test_the_memo_is_bounded_and_answers_stay_right(vs, monkeypatch):
    monkeypatch.setattr(terminology, "MEMO_SIZE", 3)
    for i in range(10):
        assert not vs.matches("lbp", cc((SNOMED, str(i))))
        assert len(vs._memo) <= 3
    assert vs.matches("lbp", cc((ICD10CM, "m54.50")))
