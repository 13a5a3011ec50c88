"""Log lines go to the current sys.stderr, even after the one at set-up time is closed."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from donjon.stderrlog import CurrentStderrHandler


def test_records_follow_sys_stderr_after_it_is_replaced_and_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    handler = CurrentStderrHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("donjon.test.stderrlog")
    logger.propagate = False
    logger.addHandler(handler)
    errors: list[object] = []
    monkeypatch.setattr(handler, "handleError", lambda record: errors.append(record))
    try:
        logger.warning("one")
        first.close()
        monkeypatch.setattr(sys, "stderr", second)
        logger.warning("two")
    finally:
        logger.removeHandler(handler)
    assert second.getvalue() == "two\n"
    assert errors == []
