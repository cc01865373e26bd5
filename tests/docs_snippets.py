"""The fenced snippets of the documentation (docs/**/*.md and README.md), each with the check that keeps it true.

Every fenced block follows an HTML comment (invisible on the site) that names its check:

    <!-- check: quotes PATH -->   the block is an excerpt of PATH, a file of the repository, word for word
    <!-- check: make -->          each line is a `make` command of the Makefile (`make -n` accepts it)
    <!-- check: header PATH -->   the block is `Name: value`, a header the service sends with the page at PATH
    <!-- check: test NAME -->     a recipe a test follows word for word: the test reads it with snippet("NAME")
    <!-- check: picture -->       a diagram or a sample of output (a `text` block): no command, no setting

tests/test_docs.py holds every block to its check and fails on a block without one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CHECK = re.compile(r"^<!-- check: (?P<kind>[a-z]+)(?: (?P<argument>\S+))? -->$")
KINDS = frozenset({"quotes", "make", "header", "test", "picture"})


@dataclass(frozen=True)
class Snippet:
    page: str  # relative to the repository root
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    kind: str | None
    argument: str | None

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def snippets_of(path: Path) -> list[Snippet]:
    lines = path.read_text(encoding="utf-8").split("\n")
    found = []
    for token in MarkdownIt("commonmark").parse("\n".join(lines)):
        if token.type != "fence" or token.map is None:
            continue
        start = token.map[0]
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        match = CHECK.match(lines[before].strip()) if before >= 0 else None
        found.append(
            Snippet(
                page=str(path.relative_to(ROOT)),
                line=start + 1,
                language=token.info.strip(),
                text=token.content,
                kind=match["kind"] if match else None,
                argument=match["argument"] if match else None,
            )
        )
    return found


def all_snippets() -> list[Snippet]:
    return [snippet for path in pages() for snippet in snippets_of(path)]


def snippet(name: str) -> Snippet:
    """The recipe a test follows: the one block marked `<!-- check: test NAME -->`."""
    named = [s for s in all_snippets() if s.kind == "test" and s.argument == name]
    assert len(named) == 1, f"{len(named)} blocks marked <!-- check: test {name} --> in the docs"
    return named[0]
