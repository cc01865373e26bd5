"""Recording which card uuid had which topic, off the hook call's path.

The feedback report needs it, the clinician does not: a hook call hands its cards to a bounded
queue and returns at once; one writer thread per process stores them in batches. When the
database is down the batch is logged and dropped, never retried at the cost of memory.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence

from cds_service.storage import IssuedCard, Storage

log = logging.getLogger("lbp_cds")
BATCH = 200


class IssuedCardRecorder:
    def __init__(self, storage: Storage, max_pending: int = 10_000) -> None:
        self._storage = storage
        self._queue: queue.Queue[Sequence[IssuedCard]] = queue.Queue(max_pending)
        threading.Thread(target=self._run, name="issued-cards", daemon=True).start()

    def record(self, cards: Sequence[IssuedCard]) -> None:
        """Never blocks: when the writer is far behind, the record is dropped and logged."""
        if not cards:
            return
        try:
            self._queue.put_nowait(cards)
        except queue.Full:
            log.warning("issued cards not recorded (writer queue full): %s", [c.card_uuid for c in cards])

    def flush(self) -> None:
        """Wait until everything handed over so far is written (or given up on)."""
        self._queue.join()

    def _run(self) -> None:
        while True:
            batches = [self._queue.get()]
            while len(batches) < BATCH and not self._queue.empty():
                batches.append(self._queue.get_nowait())
            cards = [card for batch in batches for card in batch]
            try:
                self._storage.record_issued_cards(cards)
            except Exception:  # bookkeeping: log it, keep the writer alive
                log.warning("issued cards not recorded (database unavailable): %s", [c.card_uuid for c in cards])
            finally:
                for _ in batches:
                    self._queue.task_done()
