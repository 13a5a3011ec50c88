"""Enforcing a workload's ``[limits]`` (``donjon.config.limits``) with wasmtime.

Three mechanisms, each wasmtime's own:

* **Engine features** (:func:`engine_settings`): 64-bit and multiple memories exist only when the
  config turns them on; otherwise such a module fails to compile (validation), before anything runs.
* **The store limiter** (:func:`limit_store`, wasmtime's ``StoreLimits`` through
  ``wasmtime_store_limiter``): every linear memory may hold at most ``memory_share`` bytes and every
  table ``table_share`` elements, and the store may create at most ``memories`` memories, ``tables``
  tables and ``instances`` instances. Past the bound, ``memory.grow`` and ``table.grow`` return -1 to
  the guest (WebAssembly Core Specification 2.0, 4.4.7 "memory.grow": failure is allowed), and an
  instantiation that needs more (a large initial memory, one memory too many) fails before the guest
  runs. The limiter is asked *before* wasmtime commits memory, so the host never holds the excess.
* **A deadline** (:class:`Deadline`): the engine compiles epoch checks into loops and function
  entries (``Config.epoch_interruption``); the store traps once the engine's epoch reaches its
  deadline of one tick, and a timer thread advances the epoch when the time is up. The trap is
  ``wasm trap: interrupt``, which :func:`donjon.runtime.run_workload` turns into
  :class:`~donjon.runtime.errors.DeadlineExceeded`.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from donjon.config.limits import WASM_PAGE, Limits, format_size
from donjon.runtime.engine import EngineSettings

if TYPE_CHECKING:
    import wasmtime

__all__ = [
    "Deadline",
    "DeadlineInterrupt",
    "describe_limits",
    "engine_settings",
    "limit_exceeded",
    "limit_store",
    "refused_feature",
]

#: wasmtime's ``Config::memory_reservation`` on 64-bit hosts: what a wasm32 memory can address.
_DEFAULT_RESERVATION = 4 << 30

# wasmtime's messages when the limiter refuses an instantiation (wasmtime crates/wasmtime/src/runtime/
# limits.rs and vm/instance/allocator.rs): "memory minimum size of N pages exceeds memory limits",
# "table minimum size of N elements exceeds table limits", "resource limit exceeded: memory count too
# high at N" (also "table count", "instance count").
_LIMIT_MARKERS = ("exceeds memory limits", "exceeds table limits", "resource limit exceeded")


def engine_settings(limits: Limits, base: EngineSettings | None = None) -> EngineSettings:
    """``base`` (default: Donjon's) with the proposals and epoch checks that ``limits`` asks for.

    A memory share beyond wasmtime's 4 GiB reservation (only a 64-bit memory can have one) gets a
    reservation of its whole size: address space only, and the memory then never moves, so the host
    never holds an old and a new copy of it, nor commits untouched pages by copying them.
    """
    share = limits.memory_share
    reservation = None
    if share > _DEFAULT_RESERVATION:
        reservation = -(-share // WASM_PAGE) * WASM_PAGE
    return replace(
        base or EngineSettings(),
        wasm_memory64=limits.memory64,
        wasm_multi_memory=limits.multi_memory,
        epoch_interruption=limits.deadline_ms is not None,
        memory_reservation=reservation,
    )


def limit_store(store: wasmtime.Store, limits: Limits) -> None:
    """Install ``limits`` in ``store``'s limiter; call before anything is instantiated in it."""
    store.set_limits(
        memory_size=limits.memory_share,
        table_elements=limits.table_share,
        instances=limits.instances,
        tables=limits.tables,
        memories=limits.memories,
    )


def describe_limits(limits: Limits) -> str:
    """The bounds in the config's own terms, for messages: ``limits.memory = 1 GiB (1 memory), ...``."""
    plural = "memory" if limits.memories == 1 else "memories"
    text = f"limits.memory = {format_size(limits.memory)} ({limits.memories} {plural}"
    if limits.memories > 1:
        text += f", {format_size(limits.memory_share)} each"
    text += f"), limits.tables = {limits.tables}, limits.table_elements = {limits.table_elements}"
    return text + f", limits.instances = {limits.instances}"


def limit_exceeded(message: str) -> bool:
    """Whether an instantiation error is the store limiter's refusal."""
    return any(marker in message for marker in _LIMIT_MARKERS)


def refused_feature(message: str) -> str:
    """A hint for a compile error caused by a proposal ``[limits]`` keeps off, else ``""``.

    wasmtime's validator (wasmparser) says "memory64 must be enabled for 64-bit memories" and
    "multiple memories" for the two proposals, and "... without the gc feature" for GC types.
    """
    if "memory64" in message:
        return " (64-bit memories are off: set memory64 = true in [limits] to allow them)"
    if "multiple memories" in message:
        return " (multiple memories are off: set multi_memory = true and memories = N in [limits])"
    if "gc feature" in message:
        return " (the WebAssembly GC proposal is not supported: its heap is outside [limits])"
    return ""


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
