"""Profile (not a test): the baseline hook call's CPU inside one process, through the WSGI app as a server calls it.

    .venv/bin/python tools/profile_hook.py [--calls 3000] [--profile]

Builds the application as the benchmark's server does (CDS_REQUIRE_JWT=false, a temporary SQLite database, a
fixed CDS_PUBLIC_BASE_URL), calls it as a WSGI app with the baseline order-select
(guideline_data/examples/baseline-lbp-referral.json), and prints the CPU time per call (`time.process_time`).
With --profile, cProfile's own time per function is grouped by where the function lives.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BASELINE = ROOT / "guideline_data" / "examples" / "baseline-lbp-referral.json"
SERVICE_PATH = "/cds-services/lbp-referral-select"

# Where a function's own time is counted, by the first matching piece of its file's path.
STEPS = (
    ("flask/", "Flask and Werkzeug"),
    ("werkzeug/", "Flask and Werkzeug"),
    ("flask_cors/", "Flask-Cors"),
    ("prometheus_client/", "Prometheus"),
    ("logging/", "the log line"),
    ("observability/logs", "the log line"),
    ("hooks/", "facts and rules"),
    ("cards/", "rendering the card"),
    ("pipeline/validation", "validation"),
    ("jsonschema", "validation"),
    ("pipeline/decode", "decoding"),
    ("msgspec", "decoding"),
    ("cds_service/pipeline", "pipeline glue"),
    ("cds_service/web", "web glue"),
    ("cds_service/", "other service code"),
    ("uuid", "card UUIDs"),
    ("json", "JSON"),
)


def environ(body: bytes) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": SERVICE_PATH,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8080",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def call(app: Any, body: bytes) -> bytes:
    status: list[str] = []
    chunks = app(environ(body), lambda s, h, exc=None: status.append(s))
    answer = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    if not status or not status[0].startswith("200"):
        raise SystemExit(f"the call was answered {status}: {answer[:300]!r}")
    return answer


def step_of(filename: str) -> str:
    for piece, step in STEPS:
        if piece in filename:
            return step
    return "the rest"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--profile", action="store_true", help="also print cProfile's own time by step")
    parser.add_argument("--top", type=int, default=0, help="and the N functions with the most own time")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lbp-profile-") as tmp:
        os.environ.update(
            {
                "CDS_REQUIRE_JWT": "false",
                "CDS_DATABASE_URL": f"sqlite:///{tmp}/lbp-cds.sqlite3",
                "CDS_PUBLIC_BASE_URL": "https://cds.bench.invalid",
                "CDS_STATE_DIR": f"{tmp}/state",
                "CDS_LOG_FORMAT": "json",
            }
        )
        import logging

        from cds_service.app import create_app

        # The deploy step before serving: the schema the issued-card writer needs.
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"]
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        app = create_app()
        logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))  # type: ignore[attr-defined]  # noqa: SIM115  (the lines cost, unseen)
        body = BASELINE.read_bytes()
        for _ in range(args.warmup):
            call(app, body)
        started = time.process_time()
        for _ in range(args.calls):
            call(app, body)
        per_call = (time.process_time() - started) / args.calls
        print(f"CPU per call: {per_call * 1e6:.0f} µs ({args.calls} calls, in one process, no HTTP server)")
        if not args.profile:
            return 0
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(args.calls):
            call(app, body)
        profile.disable()
        stats = pstats.Stats(profile)
        by_step: dict[str, float] = defaultdict(float)
        rows = []
        for (filename, line, name), (_cc, _nc, own, _cum, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            by_step[step_of(filename)] += own
            rows.append((own, f"{filename}:{line}({name})"))
        total = sum(by_step.values())
        for step, seconds in sorted(by_step.items(), key=lambda item: -item[1]):
            print(f"  {step:<28} {seconds / args.calls * 1e6:7.1f} µs  {seconds / total:5.1%}")
        for own, where in sorted(rows, reverse=True)[: args.top]:
            print(f"    {own / args.calls * 1e6:7.1f} µs  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
