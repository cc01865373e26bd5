"""The bare Flask app of tools/ceiling_app.py on lbp-cds's own server (granian, the settings of
cds_service/web/server.py): tools/bench_http.py's second ceiling, so that the server's share is seen apart
from the framework's.

    CEILING_RESPONSE_FILE=/tmp/response.json python tools/ceiling_granian.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cds_service.settings import ServerSettings
from cds_service.web.server import build_server


def load_ceiling(target: str) -> Any:
    import ceiling_app

    return ceiling_app.app


if __name__ == "__main__":
    build_server(ServerSettings.from_env(), "json").serve(target_loader=load_ceiling)
