"""The layout the developers' guide describes (docs/developers/index.md): which room may import what, where shared
objects live, and the configuration tables (docs/operators/configuration.md) matching the settings models."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from cds_service.settings import ServerSettings, Settings

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("package", ["hooks", "cards"])
def test_rules_and_rendering_import_nothing_of_the_app_or_of_flask(package):
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in (ROOT / package).rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in {"cds_service", "flask", "werkzeug"}
    }
    assert not offenders


def test_the_call_pipeline_and_the_content_know_nothing_of_flask():
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for room in ("pipeline", "content", "storage")
        for path in (ROOT / "cds_service" / room).rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in {"flask", "werkzeug"} or module.startswith("cds_service.web")
    }
    assert not offenders


def test_only_the_wiring_touches_the_flask_app_extensions():
    readers = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "cds_service").rglob("*.py")
        if ".extensions" in path.read_text(encoding="utf-8")
    }
    assert readers == {"cds_service/wiring.py"}


def test_the_top_of_cds_service_holds_only_the_factory_settings_and_wiring():
    modules = sorted(path.name for path in (ROOT / "cds_service").glob("*.py"))
    assert len(modules) <= 6, modules
    rooms = sorted(path.name for path in (ROOT / "cds_service").iterdir() if (path / "__init__.py").is_file())
    assert rooms == ["content", "observability", "pipeline", "storage", "web"]


# The operators' configuration page, and the pages whose tables document the variables of one feature.
VARIABLE_PAGES = (
    "docs/operators/configuration.md",
    "docs/operators/staff-sign-in.md",
    "docs/informatics/analytics.md",
)


def documented_variables() -> dict[str, str]:
    """Each variable of the documented configuration tables with its default column."""
    pages = [(ROOT / page).read_text(encoding="utf-8") for page in VARIABLE_PAGES]
    rows = [row for page in pages for row in re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]*) \|", page, re.M)]
    return {name: default.strip() for name, default in rows}


def test_the_configuration_page_lists_exactly_the_variables_the_settings_read():
    documented = documented_variables()
    variables = {**Settings.variables(), **ServerSettings.variables()}
    assert sorted(documented) == sorted(variables)
    for name, info in variables.items():
        assert info.description, f"{name} has no description in cds_service/settings.py"
        if isinstance(info.default, bool):
            assert f"`{str(info.default).lower()}`" in documented[name], name
        elif isinstance(info.default, int | str) and info.default != "":
            assert str(info.default) in documented[name].replace("`", ""), name
