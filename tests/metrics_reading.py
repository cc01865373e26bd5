"""Reading the service's Prometheus metrics as a scraper does, for the tests."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def metric(client: Any, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include these (0 when there is none)."""
    text = client.get("/metrics").get_data(as_text=True)
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )
