"""A run-time deadline for a guest: epoch interruption, and ``SIGALRM`` for a guest blocked in a
host call (``[limits] deadline``, docs/run.md).

Its own module so that a run without a deadline loads neither ``threading`` nor ``signal``
handlers (start-up time is benchmarked, and ``nil`` runs without a config must stay light).
"""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import wasmtime

__all__ = ["Deadline", "DeadlineInterrupt"]


class DeadlineInterrupt(BaseException):
    """Raised by :class:`Deadline` in the main thread, inside a host call the guest is blocked in.

    A ``BaseException`` on purpose: the WASI host turns any other exception into ``EIO`` for the
    guest, but an interpreter-level one into a trap that ends the guest, then raises it again
    (``donjon.wasi.host``); ``run_workload`` turns it into ``DeadlineExceeded``.
    """


class Deadline:
    """Stop the guest of ``store`` once ``seconds`` have passed since :meth:`start`.

    ``store``'s engine must have epoch interruption on (:func:`engine_settings`). The engine is the
    run's own (``run_workload`` makes one per run), so advancing its epoch touches no other guest.
    Use as a context manager; leaving it cancels the timer. ``expired`` tells whether it fired.

    Epoch checks run only in wasm code. A guest blocked in a host call (``poll_oneoff`` sleeping an
    hour, ``sock_accept`` with nobody connecting) would dodge them, so when the deadline was set up
    on the main thread and the guest is still running ``grace`` seconds after the epoch moved, the
    timer sends the main thread ``SIGALRM``: the blocking system call returns (EINTR), and the
    handler raises :class:`DeadlineInterrupt` there (PEP 475: Python retries the call only if the
    handler returns). Elsewhere (a test's worker thread) only the epoch check applies.
    """

    def __init__(self, store: wasmtime.Store, seconds: float, *, grace: float = 1.0) -> None:
        self._store = store
        self._engine = store.engine
        self.seconds = seconds
        self.grace = grace
        self._fired = threading.Event()
        self._done = threading.Event()
        self._interrupting = False
        self._thread: threading.Thread | None = None
        self._main: int | None = None
        self._saved_handler: Any = None

    @property
    def expired(self) -> bool:
        return self._fired.is_set()

    def _run(self) -> None:
        if self._done.wait(self.seconds):
            return
        self._fired.set()
        # Thread-safe in wasmtime (an atomic increment); the guest traps at its next check.
        self._engine.increment_epoch()
        if self._main is None or self._done.wait(self.grace):
            return
        self._interrupting = True
        signal.pthread_kill(self._main, signal.SIGALRM)

    def _on_alarm(self, signum: int, frame: Any) -> None:
        if self._interrupting and not self._done.is_set():
            raise DeadlineInterrupt
        if callable(self._saved_handler):  # someone else's alarm (pytest-timeout uses SIGALRM too)
            self._saved_handler(signum, frame)

    def start(self) -> None:
        # One tick after the current epoch: nothing else advances this engine's epoch.
        self._store.set_epoch_deadline(1)
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "pthread_kill"):
            self._saved_handler = signal.signal(signal.SIGALRM, self._on_alarm)
            self._main = threading.main_thread().ident
        self._thread = threading.Thread(target=self._run, name="donjon-deadline", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()  # returns at once: the thread waits on _done
            self._thread = None
        if self._main is not None:
            signal.signal(signal.SIGALRM, self._saved_handler)
            self._main = None

    def __enter__(self) -> Deadline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()
