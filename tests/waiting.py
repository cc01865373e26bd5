"""Waiting for something to happen: poll a condition until a deadline instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 10.0, message: str = "", interval: float = 0.02) -> T:
    """The first truthy value of `condition()`, polled every `interval` s; fails the test after `timeout` s.

    The timeout only bounds a test that would otherwise hang: a condition met sooner returns at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting: {message or condition}")
        time.sleep(interval)
