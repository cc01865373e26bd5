"""Storing each hook call and the cards it issued (topic, judgement, EHR: what the feedback report and the
analytics dashboard read), off the hook call's path.

The clinician does not need it: a hook call appends its record to a deque (a lock-free append under the GIL:
no lock, no condition variable, no thread woken while the writer is busy) and returns at once; one writer
thread per process stores the records in batches, gathering what arrives within LINGER_SECONDS of the first
into one transaction (a transaction per hook call cost more CPU than the hook call itself). The writer sleeps
on an Event only when nothing is pending, so a call sets it at most once per idle spell. When the database is
down the batch is logged and dropped, never retried at the cost of memory.

The call makes its record itself (hook_path.record_issued), while what it is made of is still in the CPU's
caches: made by the writer a quarter of a second later, the same record cost about three times the CPU under
load (BENCHMARKS.md, "The serving stack", round 4). The call's log line is made by the call too (its time and
duration) and written by the writer with the batch: formatted and written on the call's thread, between the
call's other work, the line cost about 20 µs more a call under load (round 6).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from cds_service.storage.database import HookCall, Storage

log = logging.getLogger("lbp_cds")
BATCH = 500  # hook calls per transaction, at most
LINGER_SECONDS = 0.25  # how long the writer waits for more after the first (a batch of ~400 calls at full load)
CLOSE_TIMEOUT_SECONDS = 5.0  # how long close() waits for the writer to store what it holds
# The writer lets go of the GIL after this many log lines: a batch's lines, written in one go, held it for about
# 2 ms, and a hook call arriving then waited (sequential p99 1.8-1.9 -> 2.3-2.7 ms; with this 1.7-1.9 ms).
LINES_PER_YIELD = 16


class Flushed(threading.Event):
    """Handed to the writer by flush(): set once everything handed over before it is written."""


class IssuedCardRecorder:
    def __init__(self, storage: Storage, max_pending: int = 10_000, linger_seconds: float = LINGER_SECONDS) -> None:
        self._storage = storage
        self._linger = linger_seconds
        self._max_pending = max_pending
        self._pending: deque[HookCall | Flushed] = deque()
        self._lines: deque[logging.LogRecord] = deque()  # hook calls' log lines, each before its call's record
        self._wake = threading.Event()
        self._idle = False  # the writer waits on _wake (set by the next record)
        self._hurry = False  # a flush() waits: write without lingering
        self._closing = False
        self._writer = threading.Thread(target=self._run, name="issued-cards", daemon=True)
        self._writer.start()

    def record(self, call: HookCall, line: logging.LogRecord | None = None) -> None:
        """Never blocks: when the writer is far behind (or closed), the record is dropped and logged. The call's
        log line, when given, is written by the writer before the call is stored (at once when it is dropped)."""
        if self._closing or len(self._pending) >= self._max_pending:
            if line is not None:
                log.handle(line)
            log.warning("hook call not recorded (writer queue full): cards %s", [c.card_uuid for c in call.cards])
            return
        if line is not None:
            self._lines.append(line)
        self._pending.append(call)
        if self._idle:
            self._idle = False
            self._wake.set()

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything handed over so far is written (or given up on)."""
        if not self._writer.is_alive():
            return
        done = Flushed()
        self._pending.append(done)
        self._hurry = True
        self._wake.set()
        done.wait(timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Write what is pending and stop the writer (a worker's exit); records after this are dropped."""
        if not self._writer.is_alive():
            return
        self._closing = True
        self._wake.set()
        self._writer.join(timeout)
        if self._writer.is_alive():
            log.warning("issued-card writer did not drain its queue in %s s; pending records dropped", timeout)

    def _run(self) -> None:
        while True:
            if not self._pending and not self._closing:
                self._wait_for_work()
            self._linger_for_more()
            # What gathered, in batches of BATCH; a batch that empties the queue ends the round. The calls that
            # come in while it is written wait for the next linger: written at once, under steady load the
            # batches shrank to the few calls answered during the previous write, each batch a transaction
            # (BENCHMARKS.md, "The serving stack", round 6). Closing writes everything.
            while self._pending:
                if not self._write_batch() and not self._closing:
                    break
            if self._closing:
                return

    def _wait_for_work(self) -> None:
        self._idle = True
        if not self._pending and not self._closing:  # looked at again after saying so: no record is missed
            self._wake.wait()
        self._idle = False

    def _linger_for_more(self) -> None:
        """Let a batch gather: calls meanwhile wake nobody; flush() and close() cut it short."""
        self._wake.clear()
        if not (self._hurry or self._closing):
            self._wake.wait(self._linger)
        self._hurry = False

    def _write_batch(self) -> bool:
        """Write up to BATCH calls; whether it took that many (a backlog, to be written without lingering).
        The log lines handed over so far are written first: each call's line before its record is stored."""
        calls: list[HookCall] = []
        flushed: list[Flushed] = []
        while self._pending and len(calls) < BATCH:
            item = self._pending.popleft()
            if isinstance(item, Flushed):
                flushed.append(item)
            else:
                calls.append(item)
        self._write_lines()  # after taking the calls: a call's line is handed over before its record
        self._write(calls)
        for done in flushed:
            done.set()
        return len(calls) == BATCH

    def _write_lines(self) -> None:
        lines = self._lines
        written = 0
        while lines:
            log.handle(lines.popleft())
            written += 1
            if written % LINES_PER_YIELD == 0:
                time.sleep(0)  # lets a waiting hook call have the GIL

    def _write(self, calls: list[HookCall]) -> None:
        if not calls:
            return
        try:
            self._storage.record_hook_calls(calls)
        except Exception:  # bookkeeping: log it, keep the writer alive
            uuids = [card.card_uuid for call in calls for card in call.cards]
            log.warning("%d hook call(s) not recorded (database unavailable): cards %s", len(calls), uuids)
