"""The one clinical "today" of the test suite: the builders' dates and every app the tests start count from it.

Fixed, so a run never depends on the day it happens on (or on midnight falling between building a request
and sending it). `LBP_TEST_TODAY=YYYY-MM-DD` moves it; `make test` runs the in-process tests once more a
year later to prove that nothing depends on the default. The bundled examples are written as of their own
date (`as_of` in guideline_data/examples/index.yaml): servers that answer them use EXAMPLES_AS_OF.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import yaml

from cds_service.pipeline.clock import FixedClock

DEFAULT_TODAY = "2026-11-26"
TODAY = date.fromisoformat(os.environ.get("LBP_TEST_TODAY") or DEFAULT_TODAY)
CLOCK = FixedClock(TODAY)

EXAMPLES = Path(__file__).resolve().parent.parent / "guideline_data" / "examples"
EXAMPLES_AS_OF = date.fromisoformat(str(yaml.safe_load((EXAMPLES / "index.yaml").read_text())["as_of"]))
