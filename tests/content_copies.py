"""Editable copies of guideline_data for tests: edit a file the way an author would, then load it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from cds_service.content.loader import DEFAULT_CONTENT_DIR, check_content


class ContentCopy:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def of_guideline_data(cls, where: Path) -> ContentCopy:
        root = where / "guideline_data"
        shutil.copytree(DEFAULT_CONTENT_DIR, root, ignore=shutil.ignore_patterns("__pycache__"))
        return cls(root)

    def replace(self, file: str, old: str, new: str) -> None:
        """Change `old` (which must occur exactly once) to `new`, as an author would in an editor."""
        path = self.root / file
        text = path.read_text(encoding="utf-8")
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {file}"
        path.write_text(text.replace(old, new), encoding="utf-8")

    def line_of(self, file: str, text: str) -> int:
        """The line (from 1) on which `text` is written; it must be written once."""
        lines = (self.root / file).read_text(encoding="utf-8").splitlines()
        found = [number for number, line in enumerate(lines, start=1) if text in line]
        assert len(found) == 1, f"{text!r} is on lines {found} of {file}"
        return found[0]

    def edit_valueset(self, name: str, change: Any) -> None:
        """Apply `change` to a value set's parsed JSON and write it back with one code per line."""
        path = self.root / "valuesets" / f"{name}.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        change(data)
        codes = data.pop("codes")
        head = json.dumps(data, indent=1)[:-2]
        lines = ",\n  ".join(json.dumps(code) for code in codes)
        path.write_text(f'{head},\n "codes": [\n  {lines}\n ]\n}}\n', encoding="utf-8")

    def problems(self) -> list[str]:
        content, problems = check_content(self.root)
        assert content is None or not problems
        return [str(problem) for problem in problems]
