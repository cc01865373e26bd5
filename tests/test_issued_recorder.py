"""The issued-card writer: what a hook call hands over is stored in batches, off the call's path; flush and
close store what came before them; a full queue and a database that is down each cost a logged line, never
the writer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select

from cds_service.storage.database import HookCall, IssuedCard, Storage, issued_cards
from cds_service.storage.issued import IssuedCardRecorder

AT = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)


def hook_call(uuid: str) -> HookCall:
    card = IssuedCard(uuid, "lbp-referral-select", "msc-evaluation-first", "v1", AT, hook="order-select")
    return HookCall("lbp-referral-select", "order-select", "v1", AT, cards=(card,))


def stored_uuids(storage: Storage) -> set[str]:
    with storage.engine.connect() as connection:
        return set(connection.execute(select(issued_cards.c.card_uuid)).scalars())


def test_what_is_handed_over_is_stored_by_flush_without_waiting_out_the_linger(store):
    recorder = IssuedCardRecorder(store, linger_seconds=60)
    for n in range(30):
        recorder.record(hook_call(f"card-{n}"))
    time.sleep(0.2)  # the writer is lingering for more now
    started = time.monotonic()
    recorder.flush(timeout=10)
    assert time.monotonic() - started < 5
    assert stored_uuids(store) == {f"card-{n}" for n in range(30)}
    recorder.close()


def test_close_stores_what_is_still_pending_and_later_records_are_dropped(store, caplog):
    recorder = IssuedCardRecorder(store, linger_seconds=60)  # the writer would wait a minute for more
    recorder.record(hook_call("pending"))
    time.sleep(0.2)  # the writer is lingering for more now
    started = time.monotonic()
    recorder.close(timeout=10)
    assert time.monotonic() - started < 5  # close cut the wait short
    assert stored_uuids(store) == {"pending"}
    with caplog.at_level(logging.WARNING, logger="lbp_cds"):
        recorder.record(hook_call("too-late"))
    assert "hook call not recorded" in caplog.text
    assert stored_uuids(store) == {"pending"}


def test_a_full_queue_drops_the_record_with_a_line_and_never_blocks(store, caplog):
    recorder = IssuedCardRecorder(store, max_pending=2, linger_seconds=60)
    with caplog.at_level(logging.WARNING, logger="lbp_cds"):
        for n in range(5):
            recorder.record(hook_call(f"card-{n}"))
    assert caplog.text.count("hook call not recorded (writer queue full)") >= 2
    assert "card-4" in caplog.text  # which cards were not recorded (card uuids, no patient data)
    recorder.close(timeout=10)
    assert len(stored_uuids(store)) <= 3  # the writer may have taken one before the queue filled


class DownStorage:
    """A database that refuses the first write, then comes back."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.failures = 1

    def record_hook_calls(self, calls: Sequence[HookCall]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("database down")
        self.storage.record_hook_calls(calls)


def test_a_database_outage_drops_that_batch_with_a_line_and_the_writer_goes_on(store, caplog):
    recorder = IssuedCardRecorder(DownStorage(store), linger_seconds=0.01)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="lbp_cds"):
        recorder.record(hook_call("lost"))
        recorder.flush(timeout=10)
        recorder.record(hook_call("kept"))
        recorder.flush(timeout=10)
    assert "1 hook call(s) not recorded (database unavailable): cards ['lost']" in caplog.text
    assert stored_uuids(store) == {"kept"}
    recorder.close()


def test_calls_from_many_threads_are_each_stored_once(store):
    recorder = IssuedCardRecorder(store, linger_seconds=0.005)

    def calls(thread: int) -> None:
        for n in range(200):
            recorder.record(hook_call(f"t{thread}-{n}"))

    threads = [threading.Thread(target=calls, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    recorder.close(timeout=10)
    assert stored_uuids(store) == {f"t{t}-{n}" for t in range(4) for n in range(200)}


class SlowStorage:
    """A database whose every write takes a few milliseconds, whatever its size (a transaction's own cost)."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def record_hook_calls(self, calls: Sequence[HookCall]) -> None:
        time.sleep(0.005)
        self.batches.append(len(calls))


def test_under_steady_load_a_batch_holds_what_came_in_during_a_linger():
    storage = SlowStorage()
    recorder = IssuedCardRecorder(storage, linger_seconds=0.1)  # type: ignore[arg-type]
    deadline = time.monotonic() + 1.0
    sent = 0
    while time.monotonic() < deadline:  # a call every half millisecond or so, for a second
        recorder.record(hook_call(f"card-{sent}"))
        sent += 1
        time.sleep(0.0005)
    recorder.close(timeout=10)
    assert sum(storage.batches) == sent
    # About one batch per linger (ten in a second), not one per write: a writer that wrote whatever came in
    # while it wrote fell to batches of a few calls, one every 5 ms.
    assert len(storage.batches) <= 15, storage.batches


def call_line(message: str) -> logging.LogRecord:
    return logging.makeLogRecord({"name": "lbp_cds", "levelno": logging.INFO, "levelname": "INFO", "msg": message})


def test_a_calls_log_line_is_written_by_the_writer_with_its_record(store, caplog):
    recorder = IssuedCardRecorder(store, linger_seconds=60)
    with caplog.at_level(logging.INFO, logger="lbp_cds"):
        recorder.record(hook_call("logged"), call_line("hook call"))
        time.sleep(0.2)  # the writer is lingering for more: the line waits with the record
        assert "hook call" not in caplog.text
        recorder.flush(timeout=10)
        assert [record.getMessage() for record in caplog.records] == ["hook call"]
    assert stored_uuids(store) == {"logged"}
    recorder.close()


def test_a_dropped_record_still_gets_its_log_line_at_once(store, caplog):
    recorder = IssuedCardRecorder(store, linger_seconds=60)
    recorder.close(timeout=10)
    with caplog.at_level(logging.INFO, logger="lbp_cds"):
        recorder.record(hook_call("too-late"), call_line("hook call"))
    assert [record.getMessage() for record in caplog.records][:1] == ["hook call"]
    assert "hook call not recorded" in caplog.text
