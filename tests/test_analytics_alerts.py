"""deploy/prometheus/lbp-cds-alerts.yaml: valid Prometheus alerting rules about metrics the service exports.

Checked in Python (the rule file format: groups of rules with alert, expr, for, labels, annotations); promtool,
when installed, checks it too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from cds_service.observability import metrics

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "lbp-cds-alerts.yaml"
DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
METRIC_NAME = re.compile(r"\blbp_[a-z0-9_]+")


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert set(document) == {"groups"}
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names)), "group names are unique"
    found = []
    for group in document["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"}
        assert group["rules"], group["name"]
        found += group["rules"]
    return found


def exported_metric_names() -> set[str]:
    names = set()
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            names |= {family.name for family in value.describe()}
    return names


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_each_rule_is_well_formed_and_about_metrics_the_service_exports(rule):
    assert set(rule) <= RULE_KEYS and {"alert", "expr", "labels", "annotations"} <= set(rule)
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"])
    assert DURATION.match(rule["for"])
    assert rule["labels"]["severity"] in {"page", "ticket"}
    assert {"summary", "description"} <= set(rule["annotations"])
    expr = rule["expr"]
    assert expr.count("(") == expr.count(")")
    used = set(METRIC_NAME.findall(expr))
    assert used and used <= exported_metric_names(), used - exported_metric_names()
    # Every label an annotation names survives the aggregation of the expression.
    kept = set()
    for group in re.findall(r"by \(([^)]*)\)", expr):
        kept |= {label.strip() for label in group.split(",")}
    for text in rule["annotations"].values():
        assert set(re.findall(r"\$labels\.([a-z_]+)", text)) <= kept, rule["alert"]


def test_a_stopped_topic_pages_someone():
    stopped = [r for r in rules() if "lbp_analytics_topic_stopped" in r["expr"]]
    assert [r["labels"]["severity"] for r in stopped] == ["page"]


def test_promtool_accepts_the_rules():
    if shutil.which("promtool") is None:  # Debian's prometheus package; `make test-deps` installs it
        message = "promtool is not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}: CI must check the rules with it", pytrace=False)
        pytest.skip(message)
    result = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
