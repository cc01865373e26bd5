"""Each validation rule, with a broken copy of guideline_data: the plain-words problem, its file, line and field."""

from __future__ import annotations

import pytest

from cds_service.content.loader import ContentError, load_content
from tests.content_copies import ContentCopy

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
MSC_SUMMARY = 'summary: "Low back pain: Medical Spine Center evaluation first, before a spine surgeon visit"'


@pytest.fixture
def copy(tmp_path) -> ContentCopy:
    return ContentCopy.of_guideline_data(tmp_path)


def test_shipped_content_is_valid(copy):
    assert copy.problems() == []


def test_value_not_allowed_by_the_schema(copy):
    copy.replace("cards.yaml", "    indicator: warning\n", "    indicator: critical\n")
    line = copy.line_of("cards.yaml", "indicator: critical")
    assert copy.problems() == [
        f'cards.yaml, line {line}, field cards > msc-evaluation-first > indicator: "critical" is not allowed here; '
        "use one of: info, warning"
    ]


def test_misspelt_field_is_named_with_a_suggestion(copy):
    copy.replace("cards.yaml", MSC_SUMMARY, MSC_SUMMARY.replace("summary:", "sumary:"))
    card_line = copy.line_of("cards.yaml", "  msc-evaluation-first:")
    typo_line = copy.line_of("cards.yaml", "sumary:")
    problems = copy.problems()
    assert (
        f'cards.yaml, line {card_line}, field cards > msc-evaluation-first: the required field "summary" is missing'
        in problems
    )
    assert any(
        p.startswith(
            f'cards.yaml, line {typo_line}, field cards > msc-evaluation-first > sumary: "sumary" is not a field'
        )
        and 'Did you mean "summary"?' in p
        for p in problems
    ), problems


def test_card_naming_a_link_that_does_not_exist(copy):
    copy.replace("cards.yaml", "links: [fritz-2012, apta-direct-access", "links: [fritz-2021, apta-direct-access")
    line = copy.line_of("cards.yaml", "links: [fritz-2021")
    assert copy.problems() == [
        f'cards.yaml, line {line}, field cards > physical-therapy-first-line > links > entry 1: "fritz-2021" is not '
        'defined under links in cards.yaml (did you mean "fritz-2012"?) (defined: msc-handout, msc-directory, '
        "program-policy, cdc-opioid-guideline, acp-low-back-pain, pn-form, fritz-2012, apta-direct-access)"
    ]


def test_card_naming_an_override_reason_that_does_not_exist(copy):
    copy.replace("cards.yaml", "override_reasons: [not-applicable, other]", "override_reasons: [not-applicable, othre]")
    line = copy.line_of("cards.yaml", "override_reasons: [not-applicable, othre]")
    [problem] = copy.problems()
    assert problem.startswith(
        f'cards.yaml, line {line}, field cards > prior-notification-required > override_reasons > entry 2: "othre" '
        'is not defined under override_reasons in cards.yaml (did you mean "other"?)'
    )


def test_suggestion_naming_an_order_template_that_does_not_exist(copy):
    end_of_pt_card = "\n    links: [fritz"
    copy.replace("cards.yaml", f"resource: cbt-referral{end_of_pt_card}", f"resource: cbt-referal{end_of_pt_card}")
    line = copy.line_of("cards.yaml", "resource: cbt-referal")
    assert copy.problems() == [
        f"cards.yaml, line {line}, field cards > physical-therapy-first-line > suggestions > entry 2 > actions > "
        'entry 1 > resource: "cbt-referal" is not an order defined in orders.yaml (defined: msc-referral, pt-referral, '
        "cbt-referral)"
    ]


def test_summary_too_long_once_placeholders_are_filled_in(copy):
    # 128 characters as written, 148 with the longest region name of msc/directory.yaml.
    summary = (
        "Low back pain: a Medical Spine Center evaluation in {region} is needed first, "
        "before any first office visit with a spine surgeon"
    )
    copy.replace("cards.yaml", MSC_SUMMARY, f'summary: "{summary}"')
    line = copy.line_of("cards.yaml", summary)
    assert copy.problems() == [
        f"cards.yaml, line {line}, field cards > msc-evaluation-first > summary: the summary is 148 characters long "
        'with {region} as "Twin Cities metro, Minnesota"; a card summary must be at most 139 characters, so shorten '
        "it by 9"
    ]


def test_summary_too_long_as_written(copy):
    copy.replace("cards.yaml", MSC_SUMMARY, f'summary: "{"x" * 140}"')
    line = copy.line_of("cards.yaml", "x" * 140)
    assert copy.problems() == [
        f"cards.yaml, line {line}, field cards > msc-evaluation-first > summary: is 140 characters long; at most 139 "
        "are allowed"
    ]


def test_unknown_placeholder(copy):
    copy.replace("cards.yaml", "(since {suspended_since}, until", "(since {suspended_from}, until")
    detail = copy.line_of("cards.yaml", "    when_suspended:") + 3  # the detail: | line
    assert copy.problems() == [
        f"cards.yaml, line {detail}, field cards > msc-evaluation-first > when_suspended > detail: unknown placeholder "
        "{suspended_from} (did you mean {suspended_until}?); the placeholders are {appointment_date}, "
        "{appointment_with}, {basis}, {form_needs}, {notice}, {region}, {suspended_since}, {suspended_until}"
    ]


def test_unpaired_brace(copy):
    copy.replace("cards.yaml", 'label: "Medical Spine Center directory: {region}"', 'label: "MSC directory: {region"')
    line = copy.line_of("cards.yaml", "MSC directory: {region")
    assert copy.problems() == [
        f"cards.yaml, line {line}, field links > msc-directory > label: a {{ or }} is not paired: write placeholders "
        "as {region}, and never use a single brace"
    ]


def test_link_that_is_not_absolute(copy):
    copy.replace("cards.yaml", "    url: https://www.cdc.gov/mmwr/", "    url: www.cdc.gov/mmwr/")
    line = copy.line_of("cards.yaml", "url: www.cdc.gov/mmwr/")
    assert copy.problems() == [
        f"cards.yaml, line {line}, field links > cdc-opioid-guideline > url: a link must be a full web address "
        "starting with https:// (or http://), without spaces"
    ]


def test_same_code_with_a_different_display_in_another_value_set(copy):
    def add_m96_1(data):
        data["codes"].insert(0, {"system": ICD, "code": "M96.1", "display": "Failed back syndrome", "group": "x"})

    copy.edit_valueset("red-flags-review", add_m96_1)
    line = copy.line_of("valuesets/red-flags-review.json", "Failed back syndrome")
    assert copy.problems() == [
        f"valuesets/red-flags-review.json, line {line}, field codes > entry 1 > display: M96.1 (ICD-10-CM) is "
        '"Failed back syndrome" here but "Postlaminectomy syndrome, not elsewhere classified" in '
        "valuesets/lbp-context.json (codes > entry 7); one code must have one display everywhere"
    ]


def test_code_listed_twice_in_one_value_set(copy):
    def repeat_first_code(data):
        data["codes"].append(dict(data["codes"][0]))

    copy.edit_valueset("msc-specialty", repeat_first_code)
    [problem] = copy.problems()
    assert problem.startswith("valuesets/msc-specialty.json, line 27, field codes > entry 15: ")
    assert problem.endswith("is listed twice, at entries 1 and 15; list it once")


def test_code_already_included_by_its_family(copy):
    def list_a_member_of_m51_36(data):
        member = {"system": ICD, "code": "M51.360", "display": "Other intervertebral disc degeneration, lumbar "
                  "region with discogenic back pain only", "group": "disc_disorder"}  # fmt: skip
        data["codes"].append(member)

    copy.edit_valueset("lbp-trigger", list_a_member_of_m51_36)
    line = copy.line_of("valuesets/lbp-trigger.json", '"M51.360"')
    assert copy.problems() == [
        f"valuesets/lbp-trigger.json, line {line}, field codes > entry 71: M51.360 (ICD-10-CM) is already included as "
        "a descendant of M51.36 (entry 29); remove this entry"
    ]


def test_empty_code_list(copy):
    copy.edit_valueset("pt-specialty", lambda data: data["codes"].clear())
    line = copy.line_of("valuesets/pt-specialty.json", '"codes"')
    assert copy.problems() == [
        f"valuesets/pt-specialty.json, line {line}, field codes: the code list is empty: a value set must list at "
        "least one code"
    ]


def test_descendants_of_a_code_that_is_not_icd10cm(copy):
    def family_of_a_snomed_code(data):
        data["codes"][-1]["include_descendants"] = True

    copy.edit_valueset("lbp-trigger", family_of_a_snomed_code)
    line = copy.line_of("valuesets/lbp-trigger.json", '"307177001"')
    assert copy.problems() == [
        f"valuesets/lbp-trigger.json, line {line}, field codes > entry 70 > system: only ICD-10-CM codes (system "
        "http://hl7.org/fhir/sid/icd-10-cm) can include their descendants"
    ]


def test_descendants_of_a_code_not_in_the_tabular(copy):
    def family_of_a_made_up_code(data):
        data["codes"].insert(0, {"system": ICD, "code": "M54.7", "display": "Made up", "include_descendants": True})

    copy.edit_valueset("lbp-context", family_of_a_made_up_code)
    line = copy.line_of("valuesets/lbp-context.json", '"M54.7"')
    assert copy.problems() == [
        f'valuesets/lbp-context.json, line {line}, field codes > entry 1 > code: "M54.7" is not an ICD-10-CM code in '
        "the ICD-10-CM April 1, 2026 tabular, so it has no descendants to include"
    ]


def test_missing_value_set(copy):
    (copy.root / "valuesets" / "moud.json").unlink()
    assert copy.problems() == ["valuesets/moud.json, whole file: this value set is missing, but the rules use it"]


def test_value_set_id_differs_from_its_file_name(copy):
    copy.edit_valueset("moud", lambda data: data.update(id="mouds"))
    line = copy.line_of("valuesets/moud.json", '"id"')
    assert copy.problems() == [
        f'valuesets/moud.json, line {line}, field id: the id "mouds" must be the file name without .json ("moud")'
    ]


def test_yaml_that_does_not_parse(copy):
    copy.replace("policy.yaml", "adult_age: 18", "adult_age: [18")
    assert copy.problems()[0].startswith("policy.yaml, line ")
    assert "this is not valid YAML" in copy.problems()[0]


def test_suspension_dates(copy):
    copy.replace(
        "policy.yaml",
        "msc_requirement_suspensions: []",
        "msc_requirement_suspensions:\n"
        "  - from: 2020-02-30\n    until: 2020-01-01\n    notice: Suspended.\n"
        "  - from: March 2020\n    notice: Suspended.\n",
    )
    problems = copy.problems()
    line = copy.line_of("policy.yaml", "from: March 2020")
    assert problems == [
        f"policy.yaml, line {line}, field msc_requirement_suspensions > entry 2 > from: write the date as YYYY-MM-DD, "
        "e.g. 2020-03-23"
    ]
    copy.replace("policy.yaml", "from: March 2020", "from: 2020-03-23")
    line = copy.line_of("policy.yaml", "from: 2020-02-30")
    assert copy.problems() == [
        f'policy.yaml, line {line}, field msc_requirement_suspensions > entry 1 > from: "2020-02-30" is not a real '
        "date (write it as YYYY-MM-DD)"
    ]


def test_a_suspension_notice_can_make_a_summary_too_long(copy):
    copy.replace("cards.yaml", 'summary: "Low back pain: MSC step suspended; an MSC evaluation is still advised first"',
                 'summary: "MSC step suspended: {notice}"')  # fmt: skip
    copy.replace(
        "policy.yaml",
        "msc_requirement_suspensions: []",
        f"msc_requirement_suspensions:\n  - from: 2020-03-23\n    notice: {'Long notice. ' * 12}\n",
    )
    [problem] = copy.problems()
    assert (
        "field cards > msc-evaluation-first > when_suspended > summary: the summary is 175 characters long" in problem
    )


def test_directory_center_in_an_unknown_region(copy):
    copy.replace("msc/directory.yaml", "    region: greater-minnesota", "    region: greater-mn")
    line = copy.line_of("msc/directory.yaml", "region: greater-mn")
    [problem] = copy.problems()
    assert problem.startswith(f'msc/directory.yaml, line {line}, field centers > entry 3 > region: "greater-mn" is not')


def test_load_content_raises_with_every_problem(copy):
    copy.replace("cards.yaml", "    indicator: warning\n", "    indicator: critical\n")
    copy.edit_valueset("pt-specialty", lambda data: data["codes"].clear())
    with pytest.raises(ContentError) as raised:
        load_content(copy.root)
    assert [p.file for p in raised.value.problems] == ["cards.yaml", "valuesets/pt-specialty.json"]
    assert str(raised.value).splitlines() == [str(p) for p in raised.value.problems]


# --- value set overlays (valuesets/overlays/<id>.json) ----------------------------------------------------

OVERLAY = "valuesets/overlays/opioid-exclusion-conditions.json"


def test_overlay_removing_a_code_the_published_list_lacks(copy):
    copy.replace(
        OVERLAY,
        '"code": "D57.3", "display": "Sickle-cell trait"',
        '"code": "D58.0", "display": "Hereditary spherocytosis"',
    )
    [problem] = copy.problems()
    assert problem.startswith(f"{OVERLAY}, line ")
    assert problem.endswith(
        "field remove > entry 1 > code: D58.0 (ICD-10-CM) is not in valuesets/opioid-exclusion-conditions.json, "
        "so there is nothing to remove"
    )


def test_overlay_adding_a_code_already_published(copy):
    copy.replace(
        OVERLAY,
        '"code": "D57.1", "display": "Sickle-cell disease without crisis"',
        '"code": "D57.00", "display": "Hb-SS disease with crisis, unspecified"',
    )
    [problem] = copy.problems()
    assert problem.endswith(
        "field add > entry 1 > code: D57.00 (ICD-10-CM) is already in valuesets/opioid-exclusion-conditions.json; "
        "remove this entry"
    )


def test_overlay_for_a_value_set_that_does_not_exist(copy):
    (copy.root / OVERLAY).rename(copy.root / "valuesets/overlays/sickle-cell.json")
    copy.replace("valuesets/overlays/sickle-cell.json", '"id": "opioid-exclusion-conditions"', '"id": "sickle-cell"')
    [problem] = copy.problems()
    assert "an overlay corrects the value set named by its file name" in problem
    assert "valuesets/sickle-cell.json must exist" in problem


def test_overlay_entry_without_a_note(copy):
    copy.replace(
        OVERLAY, ', "note": "sickle cell trait is a carrier state, not sickle cell disease: not a CDC exclusion"', ""
    )
    [problem] = copy.problems()
    assert problem.endswith('field remove > entry 1: the required field "note" is missing')
