"""lbp-cds: a CDS Hooks 2.0 service for the low back pain Medical Spine Center pathway.

The rooms: `web/` (HTTP), `pipeline/` (one hook call, free of HTTP), `content/` (guideline_data),
`storage/` (database), `observability/` (logs, metrics). At the top: `app.py` (the factory),
`settings.py`, `wiring.py` (the shared objects), `errors.py`, `cli.py`. Importing this package
imports nothing else, so the server's main process can read the settings without loading the application.
"""

from __future__ import annotations

from functools import cache

DISTRIBUTION = "lbp-cds"


@cache
def version() -> str:
    """The release: pyproject.toml's version in a checkout, the installed distribution's otherwise.

    One number, kept in pyproject.toml; /healthz and `lbp-cds --version` report it.
    """
    from pathlib import Path

    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if pyproject.is_file():
        import tomllib

        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
        if project.get("name") == DISTRIBUTION:
            return str(project["version"])
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"
