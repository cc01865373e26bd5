"""Benchmark (not a test): how fast the test FHIR server (tests/fhir_server) answers the service's searches.

    .venv/bin/python tools/bench_fhir_server.py [--resources 1000] [--rounds 5]

Starts the test FHIR server (Node; `npm ci --prefix tests/fhir_server` first), loads `--resources` resources of
other patients' charts and p1's chart in one transaction, and prints how long the load took and the median of
`--rounds` runs of each search the service sends for one patient. tests/test_fhir_server.py checks that those
searches give the right answers; timings are for reading, never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.fhir_server_fixture import start_fhir_server
from tests.test_fhir_server import TYPICAL_QUERIES, many_charts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=1000, help="resources of other patients to store")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each search (the median is printed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lbp-bench-fhir-") as tmp:
        server = start_fhir_server(Path(tmp) / "fhir-server.log")
        try:
            resources = many_charts(patients=args.resources // 13 + 1, limit=args.resources)
            started = time.perf_counter()
            server.load(resources)
            load_ms = (time.perf_counter() - started) * 1000
            print(f"loaded {len(resources)} resources in one transaction in {load_ms:.0f} ms")
            for query in TYPICAL_QUERIES:
                runs = []
                for _ in range(args.rounds):
                    started = time.perf_counter()
                    response = server.get(query)
                    runs.append((time.perf_counter() - started) * 1000)
                    response.raise_for_status()
                print(f"median {statistics.median(runs):6.1f} ms  GET {query}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
