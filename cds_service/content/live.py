"""The content a running service answers with, replaced without a restart when its files change.

Edits are noticed by the files' modification times (looked at on a request, at most every
CDS_CONTENT_RELOAD_SECONDS) and on SIGHUP. New content is validated in full before it replaces the
current content in one assignment, so a request sees the old content or the new, never a mix;
invalid content is refused, the reason logged, and the previous content kept. The last good content
is also saved (CDS_STATE_DIR/content-last-good.tar), so a worker that starts while the files are
broken serves that instead of failing.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import tarfile
import tempfile
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from types import FrameType
from typing import Any, Protocol

from cds_service.content.loader import Content, ContentError, check_content
from cds_service.content.problems import Problem

log = logging.getLogger("lbp_cds")

SNAPSHOT_NAME = "content-last-good.tar"
VERSION_MEMBER = "VERSION"  # first member of the snapshot: read without unpacking the rest
Stamp = tuple[tuple[str, int, int], ...] | None


class ContentSource(Protocol):
    """Where a call gets the content it answers with."""

    @property
    def current(self) -> Content | None:
        """The content to answer with now; None when no valid content was ever loaded."""
        ...

    @property
    def problems(self) -> list[Problem]:
        """Why the files as they are now are not served (empty when they are)."""
        ...

    def check(self) -> None:
        """Pick up edited files if it is time to look."""
        ...

    def close(self) -> None: ...


class FixedContent:
    """Content given once (tests, tools): never reloaded."""

    def __init__(self, content: Content) -> None:
        self._content = content

    @property
    def current(self) -> Content:
        return self._content

    @property
    def problems(self) -> list[Problem]:
        return []

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


class LiveContent:
    """The content of a folder, reloaded when its files change (or on SIGHUP), once valid."""

    def __init__(self, root: Path, reload_seconds: int, state_dir: Path, keep_last_good: bool = True) -> None:
        self.root = root
        self.interval = reload_seconds
        self.snapshot = Snapshot(state_dir / SNAPSHOT_NAME)
        self.keep_last_good = keep_last_good  # a serving service saves what it serves; a command only reads
        self._current: Content | None = None
        self._problems: list[Problem] = []
        self._lock = threading.Lock()
        self._checked = monotonic()
        self._stamp: Stamp = None  # the files as last loaded (or refused)

    @property
    def current(self) -> Content | None:
        return self._current

    @property
    def problems(self) -> list[Problem]:
        return self._problems

    def start(self, require: bool) -> None:
        """Load the files (else the last good copy); `require`: fail when no valid content exists."""
        self._stamp = files_stamp(self.root)
        content, problems = check_content(self.root)
        if content is not None:
            self._publish(content)
            log.info("content version %s loaded from %s", content.version, self.root)
            watch_sighup(self)
            return
        self._problems = problems
        fallback = self.snapshot.load()
        if fallback is not None:
            self._current = fallback
            log.error(
                "the content in %s is invalid; serving the last good content (version %s) until it is fixed:\n%s",
                self.root,
                fallback.version,
                listing(problems),
            )
        else:
            log.error(
                "the content in %s is invalid and no earlier version was saved:\n%s", self.root, listing(problems)
            )
            if require:
                raise ContentError(problems)
        watch_sighup(self)

    def check(self) -> None:
        """Reload when the files changed since the last look, at most every `interval` seconds."""
        if self.interval <= 0 or monotonic() - self._checked < self.interval:
            return
        self._checked = monotonic()
        if files_stamp(self.root) != self._stamp:
            self.reload(wait=False)

    def reload(self, wait: bool = True) -> bool:
        """Validate the files and serve them if valid; False when refused (or another reload is running)."""
        if not self._lock.acquire(blocking=wait):
            return False
        try:
            self._stamp = files_stamp(self.root)  # before reading: an edit made while loading is seen next time
            content, problems = check_content(self.root)
            if content is None:
                self._problems = problems
                log.error(
                    "edited content in %s refused; still serving version %s:\n%s",
                    self.root,
                    self._current.version if self._current else "none",
                    listing(problems),
                )
                return False
            previous = self._current
            self._publish(content)
            if previous is None or previous.version != content.version:
                log.info(
                    "content reloaded: version %s (was %s)", content.version, previous.version if previous else "none"
                )
            return True
        finally:
            self._lock.release()

    def close(self) -> None:
        _watched.discard(self)

    def _publish(self, content: Content) -> None:
        self._current = content  # one assignment: each call holds old or new
        self._problems = []
        if self.keep_last_good:
            self.snapshot.save(self.root, content.version)


def listing(problems: list[Problem]) -> str:
    return "\n".join(f"  {problem}" for problem in problems)


def files_stamp(root: Path) -> Stamp:
    """Path, modification time and size of every content file: cheap to take, changes on any edit."""
    stamp = []
    try:
        for path in sorted(root.rglob("*")):
            if "__pycache__" not in path.parts and path.is_file():
                stat = path.stat()
                stamp.append((str(path), stat.st_mtime_ns, stat.st_size))
    except OSError:
        return None  # a file vanished while looking: the reload will say what is wrong
    return tuple(stamp)


class Snapshot:
    """The last content that passed validation, as one tar file that is replaced atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._saved: str | None = None

    def save(self, root: Path, version: str) -> None:
        if version in (self._saved, self.stored_version()):
            self._saved = version
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
            with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w") as tar:
                stamp = version.encode()
                info = tarfile.TarInfo(VERSION_MEMBER)
                info.size = len(stamp)
                tar.addfile(info, io.BytesIO(stamp))
                tar.add(root, arcname="content", filter=without_caches)
            os.replace(temporary, self.path)
            self._saved = version
        except OSError as error:
            log.warning("cannot save the last good content to %s: %s", self.path, error)

    def stored_version(self) -> str | None:
        try:
            with tarfile.open(self.path) as tar:
                member = tar.next()
                handle = tar.extractfile(member) if member and member.name == VERSION_MEMBER else None
                return handle.read().decode() if handle else None
        except (OSError, tarfile.TarError):
            return None

    def load(self) -> Content | None:
        if not self.path.is_file():
            return None
        with tempfile.TemporaryDirectory(prefix="lbp-cds-content-") as unpacked:
            try:
                with tarfile.open(self.path) as tar:
                    tar.extractall(unpacked, **safe_extraction())
            except (OSError, tarfile.TarError) as error:
                log.error("the last good content %s cannot be read: %s", self.path, error)
                return None
            content, problems = check_content(Path(unpacked) / "content")
        if content is None:
            log.error("the last good content %s no longer passes validation:\n%s", self.path, listing(problems))
        return content


def without_caches(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if "__pycache__" in info.name.split("/") else info


def safe_extraction() -> dict[str, Any]:
    """Refuse links and absolute paths out of the folder (Python 3.11.4+; the file is our own anyway)."""
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


# --------------------------------------------------------------------------
# SIGHUP
# --------------------------------------------------------------------------

_watched: weakref.WeakSet[LiveContent] = weakref.WeakSet()
_previous_handler: Callable[[int, FrameType | None], Any] | None = None


def watch_sighup(live: LiveContent) -> None:
    global _previous_handler
    _watched.add(live)
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        log.info("SIGHUP cannot be watched here; content is reloaded when its files change")
        return
    if signal.getsignal(signal.SIGHUP) is not on_sighup:
        previous = signal.signal(signal.SIGHUP, on_sighup)
        _previous_handler = previous if callable(previous) else None


def on_sighup(signum: int, frame: FrameType | None) -> None:
    # Validating takes a moment: do it beside, not inside, the handler, which interrupts the main thread.
    threading.Thread(target=reload_all, name="lbp-content-sighup", daemon=True).start()
    if _previous_handler is not None:
        _previous_handler(signum, frame)


def reload_all() -> None:
    for live in list(_watched):
        log.info("SIGHUP: reloading the content in %s", live.root)
        live.reload()
