"""The documentation site builds with --strict, and every snippet in it is true: each fenced block is checked as
its marker says (tests/docs_snippets.py): quoted files compared, make commands dry-run, headers compared with what
the service sends, recipes followed by the tests that name them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from cds_service.settings import ServerSettings, Settings
from tests.docs_snippets import DOCS, KINDS, ROOT, Snippet, all_snippets, pages

SNIPPETS = all_snippets()


def of_kind(kind: str) -> list[Snippet]:
    return [snippet for snippet in SNIPPETS if snippet.kind == kind]


def ids(snippets: list[Snippet]) -> list[str]:
    return [snippet.where for snippet in snippets]


def test_the_site_builds_with_strict_into_a_temporary_folder(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},  # Material's notice about its successor: not a problem
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "WARNING" not in result.stderr, result.stderr[-4000:]
    assert (site / "index.html").is_file()
    assert (site / "integrators" / "sandbox" / "index.html").is_file()


def test_the_readme_is_a_front_door():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 200
    for audience in ("clinicians", "surgical-practices", "integrators", "informatics", "operators", "developers"):
        assert f"docs/{audience}/" in readme, audience


def test_every_fenced_block_names_its_check():
    assert len(SNIPPETS) >= 25
    unchecked = [s.where for s in SNIPPETS if s.kind not in KINDS]
    assert not unchecked, f"blocks without a <!-- check: … --> marker (tests/docs_snippets.py): {unchecked}"
    pictures = [s.where for s in of_kind("picture") if s.language != "text"]
    assert not pictures, f"only a `text` block may be a picture: {pictures}"


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in nav]
    assert not missing


def normalised(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").split("\n"))


@pytest.mark.parametrize("snippet", of_kind("quotes"), ids=ids(of_kind("quotes")))
def test_a_quoted_block_is_word_for_word_in_its_file(snippet):
    assert snippet.argument, f"{snippet.where}: quotes what?"
    source = ROOT / snippet.argument
    assert source.is_file(), f"{snippet.where}: {snippet.argument} does not exist"
    assert normalised(snippet.text) in normalised(source.read_text(encoding="utf-8")), (
        f"{snippet.where} no longer matches {snippet.argument}"
    )


def make_commands(snippet: Snippet) -> list[list[str]]:
    commands = []
    for line in snippet.text.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(words)
    return commands


@pytest.mark.parametrize("snippet", of_kind("make"), ids=ids(of_kind("make")))
def test_a_make_command_is_one_the_makefile_runs(snippet):
    commands = make_commands(snippet)
    assert commands
    for words in commands:
        settings = [word for word in words if re.match(r"^[A-Z_]+=", word)]
        rest = words[len(settings) :]
        assert rest[0] == "make", f"{snippet.where}: not a make command: {words}"
        env = {**os.environ, **dict(word.split("=", 1) for word in settings)}
        result = subprocess.run(
            ["make", "-n", *rest[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, f"{snippet.where}: make -n {rest[1:]}: {result.stderr[-2000:]}"


@pytest.mark.parametrize("snippet", of_kind("header"), ids=ids(of_kind("header")))
def test_a_quoted_header_is_the_one_the_service_sends(snippet, client):
    name, value = snippet.text.strip().split(": ", 1)
    response = client.get(snippet.argument)
    assert response.status_code == 200, snippet.argument
    assert response.headers[name] == value, f"{snippet.where}: {snippet.argument} sends {response.headers[name]!r}"


def test_every_setting_a_snippet_names_is_one_the_service_reads():
    known = {*Settings.variables(), *ServerSettings.variables()}
    unknown = {
        f"{snippet.where}: {name}"
        for snippet in SNIPPETS
        for name in re.findall(r"\b(CDS_[A-Z0-9_]+)\b", snippet.text)
        if name not in known
    }
    assert not unknown


def test_every_recipe_is_followed_by_a_test():
    tests = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "tests").glob("test_*.py"))
    unfollowed = [s.where for s in of_kind("test") if f'snippet("{s.argument}")' not in tests]
    assert not unfollowed, f"recipes no test follows: {unfollowed}"


def test_the_pages_link_no_page_that_does_not_exist():
    broken = []
    for page in pages():
        for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not target.startswith("http") and not (page.parent / target).is_file():
                broken.append(f"{page.relative_to(ROOT)} → {target}")
    assert not broken
