"""WSGI entry point: `gunicorn wsgi:app` (settings from CDS_* environment variables).

Also the app of the `flask --app wsgi content ...` commands: there, invalid content must not stop
the command that reports it, so the app starts without it (Flask sets FLASK_RUN_FROM_CLI).
"""

import os

from cds_service import create_app

app = create_app(require_content=os.environ.get("FLASK_RUN_FROM_CLI") != "true")
