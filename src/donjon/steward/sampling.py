"""Sampling of log lines: at most N lines per second for each reason, and how many were left out.

A client can send garbage as fast as its link allows; one JSON log line for each
refused request would turn that flood into a flood of the Steward's own logs (and
its disk, wherever stderr goes). The metrics count every request exactly
(``donjon_steward_rejected_total{reason}``); the log keeps a sample: for each
reason at most ``per_second`` lines in each second, and the next line written for
a reason says how many of its lines were left out since the previous one
(``"suppressed": n``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["LogSampler"]


class LogSampler:
    """Decides which lines of a flood are written. Thread-safe; the clock is passed in for tests."""

    #: Reasons are check names chosen by the code, a small set; this only bounds memory if
    #: a caller ever passes something else.
    MAX_REASONS = 256

    def __init__(self, per_second: int = 10, *, clock: Callable[[], float] = time.monotonic) -> None:
        if per_second < 1:
            raise ValueError("per_second must be at least 1")
        self.per_second = per_second
        self._clock = clock
        self._lock = threading.Lock()
        # reason -> [current second, lines written in it, lines left out since the last written]
        self._state: dict[str, list[int]] = {}

    def admit(self, reason: str) -> int | None:
        """``None``: leave this line out. Otherwise write it, with the number of lines of
        this reason left out since the last one written (0 when none)."""
        second = int(self._clock())
        with self._lock:
            state = self._state.get(reason)
            if state is None:
                if len(self._state) >= self.MAX_REASONS:
                    reason = "other"
                state = self._state.setdefault(reason, [second, 0, 0])
            if state[0] != second:
                state[0], state[1] = second, 0
            if state[1] >= self.per_second:
                state[2] += 1
                return None
            state[1] += 1
            suppressed, state[2] = state[2], 0
            return suppressed
