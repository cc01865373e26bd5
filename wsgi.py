"""WSGI entry point for any WSGI server (`granian --interface wsgi wsgi:app`; settings from CDS_* environment
variables). Production serving is `lbp-cds serve` (cds_service/web/server.py), which builds the same app.

Also the app of the `flask --app wsgi ...` commands (Flask sets FLASK_RUN_FROM_CLI): there, invalid
content must not stop the command that reports it, and the commands need no JWT settings.
"""

import os

from cds_service.app import create_app
from cds_service.settings import SettingsError, exit_on_settings_error

from_cli = os.environ.get("FLASK_RUN_FROM_CLI") == "true"
try:
    app = create_app(require_content=not from_cli, serving=not from_cli)
except SettingsError as error:
    exit_on_settings_error(error)
