"""The framework's ceiling for tools/bench_http.py: a bare Flask app doing the least a CDS service must.

It reads the request body, parses it with `json.loads`, and answers with the exact bytes lbp-cds
answered for that request (captured by the benchmark first, in the file named by
CEILING_RESPONSE_FILE), as `application/json`. No validation, no rules, no rendering, no logging:
whatever lbp-cds costs above this is ours, not Flask's or the HTTP server's.

tools/bench_http.py serves it twice: on gunicorn as the fixed reference (the issue 22 ceiling) and on
lbp-cds's own server (tools/ceiling_granian.py).

    CEILING_RESPONSE_FILE=/tmp/response.json gunicorn --worker-class gthread --threads 4 \
        --pythonpath tools ceiling_app:app
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from flask import Flask, Response, request


def create_app(response_bytes: bytes) -> Flask:
    app = Flask(__name__)

    @app.post("/cds-services/<service_id>")
    def call_service(service_id: str) -> Response:
        json.loads(request.get_data(cache=False))
        return Response(response_bytes, mimetype="application/json")

    return app


def app_from_env() -> Flask:
    path = os.environ.get("CEILING_RESPONSE_FILE")
    if not path:
        raise SystemExit("CEILING_RESPONSE_FILE must name the file holding the response bytes to answer with.")
    return create_app(Path(path).read_bytes())


app = app_from_env()
