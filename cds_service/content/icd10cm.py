"""ICD-10-CM code families ("M51.36 and its descendants"), from the simple-icd-10-cm package.

Importing the package parses the whole ICD-10-CM tabular (about 1.5 s), which would triple the
service's start-up time. Expansions are therefore cached on disk, one file per package version, and
the package is imported only when a family is not in the cache yet.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import tempfile
import threading
import warnings
from importlib.metadata import version
from pathlib import Path
from types import ModuleType

from platformdirs import user_cache_dir

log = logging.getLogger("lbp_cds")

PACKAGE = "simple-icd-10-cm"
TABULAR = "ICD-10-CM April 1, 2026 tabular"  # what simple-icd-10-cm 1.5.0 ships

Member = tuple[str, str]  # (code, display)


class Families:
    """Descendants of ICD-10-CM codes, cached in memory and (when possible) on disk."""

    def __init__(self, cache_file: Path | None) -> None:
        self.cache_file = cache_file
        self._lock = threading.Lock()
        self._library: ModuleType | None = None
        self._cache: dict[str, list[Member]] = self._read_cache()
        self._unsaved = False

    def descendants(self, code: str) -> list[Member] | None:
        """Every descendant of `code` with its display, dotted; None when `code` is not a code of the tabular."""
        with self._lock:
            if code not in self._cache:
                found = self._from_library(code)
                if found is None:
                    return None
                self._cache[code] = found
                self._unsaved = True
            return list(self._cache[code])

    def save(self) -> None:
        """Write newly expanded families to the cache file; a cache that cannot be written is only slower."""
        with self._lock:
            if not (self._unsaved and self.cache_file):
                return
            try:
                write_atomically(self.cache_file, json.dumps(self._cache, sort_keys=True))
                self._unsaved = False
            except OSError as error:
                log.warning("cannot write the ICD-10-CM cache %s: %s", self.cache_file, error)

    def _from_library(self, code: str) -> list[Member] | None:
        library = self._import()
        # Chapters and blocks (e.g. "M50-M54") are headings, not codes a diagnosis can carry.
        if not library.is_valid_item(code) or not library.is_category_or_subcategory(code):
            return None
        dotted = library.add_dot(code)
        return [(child, library.get_description(child)) for child in library.get_descendants(dotted)]

    def _import(self) -> ModuleType:
        if self._library is None:
            with warnings.catch_warnings():
                # The package reads its data with importlib.resources calls deprecated in Python 3.11: its
                # business, not a problem of the content.
                warnings.simplefilter("ignore", DeprecationWarning)
                self._library = importlib.import_module("simple_icd_10_cm")
        return self._library

    def _read_cache(self) -> dict[str, list[Member]]:
        if not self.cache_file:
            return {}
        try:
            data = json.loads(self.cache_file.read_text(encoding="utf-8"))
            return {code: [(c, d) for c, d in members] for code, members in data.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}  # absent or damaged: rebuilt from the package


def write_atomically(path: Path, text: str) -> None:
    """Readers (other workers) see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def default_cache_file() -> Path:
    """Per user and per package version: a new package version brings a new tabular."""
    return Path(user_cache_dir("lbp-cds")) / f"icd10cm-descendants-{version(PACKAGE)}.json"


_default: Families | None = None
_default_lock = threading.Lock()


def default_families() -> Families:
    """One shared instance, so reloads reuse what earlier loads expanded."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Families(default_cache_file())
        return _default
