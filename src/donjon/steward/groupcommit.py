"""Group commit: appends that arrive together share one transaction (and one fsync).

Each entry is still its own leaf of the tree, in order; only the commit (and the checkpoint) is shared.
A thread that finds no commit running becomes the leader: it takes every pending
entry, commits them in one transaction and hands each waiter its result (or the
error, in which case none of them is durable and none gets a certificate).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

_In = TypeVar("_In")
_Out = TypeVar("_Out")


class _Pending(Generic[_In, _Out]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: _In) -> None:
        self.item = item
        self.done = False
        self.result: _Out | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[_In, _Out]):
    def __init__(self, commit: Callable[[Sequence[_In]], Sequence[_Out]], *, max_batch: int = 128) -> None:
        self._commit = commit
        self._max = max_batch
        self._leader = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Pending[_In, _Out]] = []

    def submit(self, item: _In) -> _Out:
        pending: _Pending[_In, _Out] = _Pending(item)
        with self._queue_lock:
            self._queue.append(pending)
        while True:
            with self._leader:
                if not pending.done:
                    with self._queue_lock:
                        batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                    try:
                        results = self._commit([p.item for p in batch])
                        if len(results) != len(batch):
                            raise RuntimeError(
                                f"a commit of {len(batch)} entries returned {len(results)} results"
                            )
                    except BaseException as e:
                        for p in batch:
                            p.error, p.done = e, True
                    else:
                        for p, r in zip(batch, results, strict=True):  # lengths checked above
                            p.result, p.done = r, True
            if pending.done:
                break
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result
