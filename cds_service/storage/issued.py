"""Recording each hook call and the cards it issued (topic, judgement, EHR: what the feedback report and the
analytics dashboard read), off the hook call's path.

The clinician does not need it: a hook call hands its record to a bounded
queue and returns at once; one writer thread per process stores them in batches, gathering what
arrives within LINGER_SECONDS of the first into one transaction (a transaction per hook call cost
more CPU than the hook call itself). When the database is down the batch is logged and dropped,
never retried at the cost of memory.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence

from cds_service.storage.database import HookCall, Storage

log = logging.getLogger("lbp_cds")
BATCH = 200  # hook calls per transaction, at most
LINGER_SECONDS = 0.05  # how long the writer waits for more after the first
CLOSE_TIMEOUT_SECONDS = 5.0  # how long close() waits for the writer to store what it holds
STOP: Sequence[HookCall] = []  # a unique object, handed to the writer by close(): write what came before, then end


class IssuedCardRecorder:
    def __init__(self, storage: Storage, max_pending: int = 10_000, linger_seconds: float = LINGER_SECONDS) -> None:
        self._storage = storage
        self._linger = linger_seconds
        self._queue: queue.Queue[Sequence[HookCall]] = queue.Queue(max_pending)
        self._writer = threading.Thread(target=self._run, name="issued-cards", daemon=True)
        self._writer.start()

    def record(self, call: HookCall) -> None:
        """Never blocks: when the writer is far behind, the record is dropped and logged."""
        try:
            self._queue.put_nowait([call])
        except queue.Full:
            log.warning("hook call not recorded (writer queue full): cards %s", [c.card_uuid for c in call.cards])

    def flush(self) -> None:
        """Wait until everything handed over so far is written (or given up on)."""
        self._queue.join()

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Write what is pending and stop the writer (a worker's exit); records after this are dropped."""
        if not self._writer.is_alive():
            return
        try:
            self._queue.put(STOP, timeout=timeout)
        except queue.Full:
            log.warning("issued-card writer did not drain its queue in %s s; pending records dropped", timeout)
            return
        self._writer.join(timeout)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batches = [self._queue.get()]
            # Sleep rather than wait on the queue, so that hook calls meanwhile wake nobody.
            if batches[0] is not STOP:
                time.sleep(self._linger)
            while len(batches) < BATCH and batches[-1] is not STOP:
                try:
                    batches.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = batches[-1] is STOP
            self._write([call for batch in batches for call in batch])
            for _ in batches:
                self._queue.task_done()

    def _write(self, calls: list[HookCall]) -> None:
        if not calls:
            return
        try:
            self._storage.record_hook_calls(calls)
        except Exception:  # bookkeeping: log it, keep the writer alive
            uuids = [card.card_uuid for call in calls for card in call.cards]
            log.warning("%d hook call(s) not recorded (database unavailable): cards %s", len(calls), uuids)
