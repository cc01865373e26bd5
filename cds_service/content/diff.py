"""What changes for clinicians between two versions of the content: codes, card text, policy values.

Value sets are compared as the rules see them (ICD-10-CM families expanded), so rewriting a list as a
family entry shows no change, and every added or removed code is listed with its display.
"""

from __future__ import annotations

import difflib
import io
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from cds_service.content.crd import CRD
from cds_service.content.forms import FORMS_DIR
from cds_service.content.live import safe_extraction
from cds_service.content.loader import CARDS, DIRECTORY, HANDOUT, ORDERS, POLICY, Content, ContentYamlLoader
from cds_service.content.problems import FieldPath, field_name
from cds_service.content.valueset_files import Concept
from hooks.terminology import normalize

YAML_FILES = {
    CARDS: "Card text",
    POLICY: "Policy",
    ORDERS: "Orders that suggestions create",
    DIRECTORY: "MSC directory",
    CRD: "Da Vinci CRD mapping",
    f"{FORMS_DIR}/prior-notification.questionnaire.json": "Prior Notification form",
}


class RevisionError(Exception):
    """The content cannot be had at that git revision."""


def describe_changes(old: Content, new: Content, old_root: Path, new_root: Path) -> list[str]:
    lines: list[str] = []
    for name in sorted(set(old.valuesets) | set(new.valuesets)):
        lines += valueset_changes(name, old.valuesets.get(name), new.valuesets.get(name))
    for file, title in YAML_FILES.items():
        lines += yaml_changes(f"{title} ({file})", read_yaml(old_root / file), read_yaml(new_root / file))
    lines += text_changes(f"MSC patient handout ({HANDOUT})", old.handout_markdown, new.handout_markdown)
    return lines


# --------------------------------------------------------------------------
# Value sets
# --------------------------------------------------------------------------


def valueset_changes(name: str, old: tuple[Concept, ...] | None, new: tuple[Concept, ...] | None) -> list[str]:
    if old is None:
        return [f"Value set {name}: new, {len(new or ())} codes", *(f"  + {describe(c)}" for c in new or ())]
    if new is None:
        return [f"Value set {name}: removed (it had {len(old)} codes)", *(f"  - {describe(c)}" for c in old)]
    before, after = by_key(old), by_key(new)
    added = [after[k] for k in after if k not in before]
    removed = [before[k] for k in before if k not in after]
    renamed = [(before[k], after[k]) for k in after if k in before and before[k].display != after[k].display]
    if not (added or removed or renamed):
        return []
    counts = f"{len(added)} code(s) added, {len(removed)} removed, {len(renamed)} display(s) changed"
    return [
        f"Value set {name}: {counts}",
        *(f"  + {describe(c)}" for c in added),
        *(f"  - {describe(c)}" for c in removed),
        *(f'  ~ {was}: display "{was.display}" is now "{now.display}"' for was, now in renamed),
    ]


def by_key(concepts: tuple[Concept, ...]) -> dict[tuple[str, str], Concept]:
    return {normalize(c.system, c.code): c for c in concepts}


def describe(concept: Concept) -> str:
    return f"{concept}  {concept.display}"


# --------------------------------------------------------------------------
# Card text, policy, orders, directory
# --------------------------------------------------------------------------


def read_yaml(path: Path) -> Any:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=ContentYamlLoader)


def yaml_changes(title: str, old: Any, new: Any) -> list[str]:
    before, after = flatten(old), flatten(new)
    lines: list[str] = []
    for path in sorted(set(before) | set(after), key=order_in(before, after)):
        if before.get(path, MISSING) != after.get(path, MISSING):
            lines += value_change(path, before.get(path, MISSING), after.get(path, MISSING))
    return [f"{title}:", *lines] if lines else []


MISSING = object()


def order_in(before: Mapping[FieldPath, Any], after: Mapping[FieldPath, Any]) -> Any:
    """Sort fields the way the new file lists them, removed ones where the old file had them."""
    positions = {path: index for index, path in enumerate(after)}
    positions.update({path: index for index, path in enumerate(before) if path not in positions})
    return lambda path: positions[path]


def flatten(value: Any, path: FieldPath = ()) -> dict[FieldPath, Any]:
    """Every field by its path; a list of plain values counts as one value."""
    if isinstance(value, dict):
        return {p: v for key, item in value.items() for p, v in flatten(item, (*path, str(key))).items()}
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        return {p: v for index, item in enumerate(value) for p, v in flatten(item, (*path, index)).items()}
    return {path: value}


def value_change(path: FieldPath, was: Any, now: Any) -> list[str]:
    where = field_name(path)
    if was is MISSING:
        return [f"  + {where}: {shown(now)}"]
    if now is MISSING:
        return [f"  - {where}: {shown(was)} (removed)"]
    if isinstance(was, str) and isinstance(now, str) and ("\n" in was or "\n" in now):
        return [f"  ~ {where}:", *changed_lines(was, now, indent="      ")]
    return [f"  ~ {where}: {shown(was)} is now {shown(now)}"]


def shown(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    if value is None:
        return "(empty)"
    return f'"{value}"' if isinstance(value, str) else str(value)


def text_changes(title: str, old: str, new: str) -> list[str]:
    return [f"{title}:", *changed_lines(old, new, indent="  ")] if old != new else []


def changed_lines(old: str, new: str, indent: str) -> list[str]:
    """Only the lines that differ, as they were and as they are now."""
    marks = {"- ": "was: ", "+ ": "now: "}
    return [
        f"{indent}{marks[line[:2]]}{line[2:].rstrip()}"
        for line in difflib.ndiff(old.splitlines(), new.splitlines())
        if line[:2] in marks and line[2:].strip()
    ]


# --------------------------------------------------------------------------
# Content at a git revision
# --------------------------------------------------------------------------


@contextmanager
def content_at_revision(content_dir: Path, revision: str) -> Iterator[Path]:
    """The content folder as committed at `revision`, unpacked into a temporary folder."""
    top = Path(git(content_dir, "rev-parse", "--show-toplevel").decode().strip())
    try:
        inside = content_dir.resolve().relative_to(top.resolve()).as_posix()
    except ValueError:
        raise RevisionError(f"{content_dir} is not inside the git repository {top}") from None
    archive = git(top, "archive", "--format=tar", revision, "--", inside)
    with tempfile.TemporaryDirectory(prefix="lbp-cds-rev-") as unpacked:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(unpacked, **safe_extraction())
        yield Path(unpacked) / inside


def git(where: Path, *args: str) -> bytes:
    try:
        done = subprocess.run(["git", "-C", str(where), *args], capture_output=True, check=True)
    except FileNotFoundError:
        raise RevisionError("git is not installed, so --rev cannot be used; compare two folders instead") from None
    except subprocess.CalledProcessError as error:
        message = error.stderr.decode(errors="replace").strip() or f"git {' '.join(args)} failed"
        raise RevisionError(message) from None
    return done.stdout
