"""lbp-cds: a CDS Hooks 2.0 service for the low back pain Medical Spine Center pathway.

The rooms: `web/` (HTTP), `pipeline/` (one hook call, free of HTTP), `content/` (guideline_data),
`storage/` (database), `observability/` (logs, metrics). At the top: `app.py` (the factory),
`settings.py`, `wiring.py` (the shared objects), `errors.py`, `cli.py`. Importing this package
imports nothing else, so gunicorn's master can read the settings without loading the application.
"""
