"""WSGI entry point: `gunicorn wsgi:app` (settings from CDS_* environment variables)."""

from cds_service import create_app

app = create_app()
