"""Connection-level defence for the Steward: deadlines that run from accept, and caps per address.

uvicorn alone does not protect the Steward from idle clients (reproduced, benchmarks/RESULTS.md
"Steward under attack"): its keep-alive timeout starts only after a first response, so a
connection that completes a TLS handshake (or only a TCP connect) and then sends nothing is held
for asyncio's 60 s handshake timeout or for ever, and ``limit_concurrency`` then answers 503 to
*everyone*. hypercorn and granian bound idle time but neither caps connections per client
address. So the Steward keeps uvicorn and its h11 parser, and enforces the limits around them at
two seams uvicorn offers — no HTTP parsing here:

- the listening socket uvicorn is given is a :class:`GuardedListener`. asyncio's selector loop
  calls its ``accept()``, which counts connections per address, closes the ones over the cap
  before any TLS work, and arms a deadline for the TLS handshake and the first request head;
- the HTTP protocol class (uvicorn's ``http=`` setting) is uvicorn's h11 protocol with hooks
  that read h11's state after each read and each response, and move the deadline: request head
  → body → none while the application works (it has its own ``request_timeout``) → head again
  after the response (the keep-alive idle time).

A deadline that passes drops the connection: ``shutdown(SHUT_RDWR)`` (asyncio's transport then
reads end-of-file in any phase, the TLS handshake included) and ``transport.abort()`` once the
protocol has one. The connection's slot is given back when asyncio closes the socket.

When all ``max_connections`` slots are taken, a new connection takes the slot of the one that
has waited longest for its request head: an honest client sends its head at once, so the
longest waiting are the idle and the slow.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import enum
import logging
import socket
import struct
import time
from collections import Counter, OrderedDict
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from donjon.steward.limits import ConnectionLimits, address_key
from donjon.steward.ratelimit import RefusalLimiter

__all__ = ["TLS_READ_BUFFER", "ConnectionGuard", "GuardedListener", "lean_tls_buffers"]

log = logging.getLogger("donjon.steward")

#: Bytes asyncio's TLS protocol allocates per connection to read into. asyncio's default is
#: 256 KiB (``SSLProtocol.max_size``), allocated and zero-filled for every accepted TLS
#: connection: 1024 idle TLS clients took the Steward from 44 to 325 MB of RSS (85 MB with
#: this size; measured, benchmarks/RESULTS.md "Steward under attack").
#: A TLS record holds at most 16 KiB of plaintext (RFC 8446 section 5.1), and the Steward's
#: requests are small, so one record's worth is enough.
TLS_READ_BUFFER = 16 * 1024

#: At most this many connections are refused in one ``accept()`` call, so a flood of refused
#: connects cannot keep the event loop in the accept loop; the rest wait for the next turn.
_MAX_REFUSALS_PER_CALL = 256

#: A summary of refused and dropped connections is logged at most this often (seconds): a
#: flood is counted in the metrics and sampled in the log, not logged connection by connection.
_REPORT_EVERY = 10.0


def lean_tls_buffers() -> None:
    """Make asyncio's TLS protocol allocate :data:`TLS_READ_BUFFER` bytes per connection.

    ``SSLProtocol`` reads ``min(hint, max_size)`` bytes at a time into a buffer of ``max_size``
    bytes; any size works (OpenSSL buffers partial records), a small one only means more reads
    for large transfers, which the Steward does not have.
    """
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER


class _Phase(enum.Enum):
    HEAD = "head"  # TLS handshake and/or request head pending (new or kept-alive connection)
    BODY = "body"  # head received, body pending
    BUSY = "busy"  # the request is complete: the application works, then answers


class _Tracked:
    """One accepted connection: its address key, its phase and the timer of its deadline."""

    __slots__ = ("answered", "dropped", "fd", "fresh", "key", "phase", "sock", "timer", "transport")

    def __init__(self, key: str, sock: socket.socket) -> None:
        self.key = key
        self.sock = sock
        self.fd = sock.fileno()
        self.phase = _Phase.HEAD
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.dropped = False
        self.answered = False  # at least one response was sent on it
        self.fresh = True  # no request head received on it yet


class _Connection(socket.socket):
    """An accepted socket that gives its slot back to the guard when asyncio closes it."""

    _guard: ConnectionGuard | None = None
    _tracked: _Tracked | None = None

    def close(self) -> None:
        guard, tracked = self._guard, self._tracked
        self._guard = self._tracked = None
        if guard is not None and tracked is not None:
            guard._release(tracked)
        super().close()


class GuardedListener(socket.socket):
    """A listening socket whose ``accept()`` applies a :class:`ConnectionGuard`.

    Made from a bound, listening socket with :meth:`ConnectionGuard.listener`; asyncio's
    selector event loop calls ``accept()`` on the object it is given, so the guard sees every
    connection before a transport (or a TLS handshake) exists for it.
    """

    _guard: ConnectionGuard

    def accept(self) -> tuple[socket.socket, Any]:
        refused = 0
        while True:
            # BlockingIOError when nothing is pending: asyncio's accept loop stops there.
            fd, address = self._accept()  # type: ignore[attr-defined]
            conn = _Connection(self.family, self.type, self.proto, fileno=fd)
            if self._guard._admit(conn, address):
                return conn, address
            refused += 1
            if refused >= _MAX_REFUSALS_PER_CALL:
                raise BlockingIOError("connections refused; the rest wait for the next turn")


class ConnectionGuard:
    """Enforces :class:`~donjon.steward.limits.ConnectionLimits` on one event loop's connections.

    With a ``limiter`` (the one the refusal rate limit uses), a connection dropped by a
    deadline before it carried a single request counts as a refusal of its address. An address
    refused lately (it has a bucket that is not full) may have only as many connections
    waiting for their first request head as its bucket has tokens; more are reset at accept.
    An attacker that reconnects as soon as it is dropped then costs an ``accept()``, not a TLS
    handshake, each time, and at most ``refusal_rate`` handshakes a second per address. Idle
    keep-alive connections closed after their responses are not counted.

    Every method runs on the event loop's thread (accept, protocol callbacks, timers, the
    metrics endpoint), so the counters need no lock.
    """

    def __init__(self, limits: ConnectionLimits, limiter: RefusalLimiter | None = None) -> None:
        self.limits = limits
        self._limiter = limiter
        self._per_address: dict[str, int] = {}
        self._fresh: dict[str, int] = {}  # connections with no request head yet, per address
        self._open: dict[int, _Tracked] = {}  # by file descriptor, until asyncio closes it
        self._waiting: OrderedDict[_Tracked, None] = OrderedDict()  # HEAD phase, oldest first
        self._dropping = 0
        self.refused: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._reported: Counter[str] = Counter()
        self._last_report = time.monotonic()

    # -- the two seams given to uvicorn

    def listener(self, sock: socket.socket) -> GuardedListener:
        """Take over a bound, listening socket (``sock`` is detached and must not be used again)."""
        guarded = GuardedListener(sock.family, sock.type, sock.proto, fileno=sock.detach())
        guarded._guard = self
        return guarded

    def protocol_class(self, base: type[H11Protocol] = H11Protocol) -> type[asyncio.Protocol]:
        """uvicorn's h11 protocol (or ``base``, a subclass of it), following each connection's phase
        for this guard."""
        guard = self

        class GuardedH11Protocol(base):  # type: ignore[valid-type,misc]
            _tracked: _Tracked | None = None

            def connection_made(self, transport: asyncio.Transport) -> None:
                super().connection_made(transport)
                self._tracked = guard._attach(transport)

            def data_received(self, data: bytes) -> None:
                super().data_received(data)
                if self._tracked is not None:
                    guard._follow(self._tracked, self.conn.their_state)

            def on_response_complete(self) -> None:
                super().on_response_complete()
                if self._tracked is not None:
                    self._tracked.answered = True
                    guard._follow(self._tracked, self.conn.their_state)

        return GuardedH11Protocol

    # -- what the metrics endpoint shows

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def metrics_lines(self) -> list[str]:
        lines = [
            "# HELP donjon_steward_connections_open Client connections open now.",
            "# TYPE donjon_steward_connections_open gauge",
            f"donjon_steward_connections_open {len(self._open)}",
            "# HELP donjon_steward_connections_refused_total Connections closed at accept, by reason.",
            "# TYPE donjon_steward_connections_refused_total counter",
        ]
        lines += [
            f'donjon_steward_connections_refused_total{{reason="{reason}"}} {self.refused[reason]}'
            for reason in ("per_address", "rate", "capacity")
        ]
        lines += [
            "# HELP donjon_steward_connections_dropped_total Connections dropped by a deadline "
            "(phase head or body) or for a new one when all were taken (evicted).",
            "# TYPE donjon_steward_connections_dropped_total counter",
        ]
        lines += [
            f'donjon_steward_connections_dropped_total{{phase="{phase}"}} {self.dropped[phase]}'
            for phase in ("head", "body", "evicted")
        ]
        return lines

    # -- accounting

    def _admit(self, conn: _Connection, address: Any) -> bool:
        key = address_key(address[0] if isinstance(address, tuple) else None)
        limits = self.limits
        if self._per_address.get(key, 0) >= limits.max_per_address:
            return self._refuse(conn, "per_address")
        if self._limiter is not None:
            tokens = self._limiter.tokens(key)
            if tokens is not None and self._fresh.get(key, 0) + 1 > tokens:
                return self._refuse(conn, "rate")
        if len(self._open) - self._dropping >= limits.max_connections:
            oldest = next(iter(self._waiting), None)
            if oldest is None:
                return self._refuse(conn, "capacity")
            self._drop(oldest, "evicted")
        tracked = _Tracked(key, conn)
        conn._guard, conn._tracked = self, tracked
        self._per_address[key] = self._per_address.get(key, 0) + 1
        self._fresh[key] = self._fresh.get(key, 0) + 1
        self._open[tracked.fd] = tracked
        self._await_head(tracked)
        return True

    def _refuse(self, conn: socket.socket, reason: str) -> bool:
        # A reset at once (SO_LINGER 0): no TLS work, no TIME_WAIT kept for the refused peer.
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()
        self.refused[reason] += 1
        self._report()
        return False

    def _release(self, tracked: _Tracked) -> None:
        if self._open.get(tracked.fd) is tracked:
            del self._open[tracked.fd]
        self._cancel(tracked)
        self._waiting.pop(tracked, None)
        if tracked.dropped:
            self._dropping -= 1
        tracked.transport = None
        self._not_fresh(tracked)
        _decrement(self._per_address, tracked.key)

    def _attach(self, transport: asyncio.BaseTransport) -> _Tracked | None:
        sock = transport.get_extra_info("socket")
        tracked = self._open.get(sock.fileno()) if sock is not None else None
        if tracked is not None:
            tracked.transport = transport
        return tracked

    # -- phases and deadlines

    def _follow(self, tracked: _Tracked, state: object) -> None:
        """Move ``tracked`` to the phase h11's view of the client (``their_state``) implies."""
        if tracked.dropped:
            return
        if state is h11.IDLE:
            if tracked.phase is not _Phase.HEAD:
                self._await_head(tracked)
            return
        self._not_fresh(tracked)
        if state is h11.ERROR and self._limiter is not None and tracked.phase is not _Phase.BUSY:
            # Not HTTP (uvicorn answers 400 and closes, without the application): a refusal.
            self._limiter.refused(tracked.key)
        if state is h11.SEND_BODY:
            if tracked.phase is not _Phase.BODY:
                self._waiting.pop(tracked, None)
                self._arm(tracked, _Phase.BODY, self.limits.body_timeout)
        elif tracked.phase is not _Phase.BUSY:
            # DONE, MUST_CLOSE, CLOSED, ERROR...: nothing more is awaited from the client.
            self._waiting.pop(tracked, None)
            self._cancel(tracked)
            tracked.phase = _Phase.BUSY

    def _not_fresh(self, tracked: _Tracked) -> None:
        if tracked.fresh:
            tracked.fresh = False
            _decrement(self._fresh, tracked.key)

    def _await_head(self, tracked: _Tracked) -> None:
        self._waiting[tracked] = None
        self._waiting.move_to_end(tracked)
        self._arm(tracked, _Phase.HEAD, self.limits.header_timeout)

    def _arm(self, tracked: _Tracked, phase: _Phase, seconds: float) -> None:
        self._cancel(tracked)
        tracked.phase = phase
        loop = asyncio.get_running_loop()
        tracked.timer = loop.call_later(seconds, self._drop, tracked, phase.value)

    @staticmethod
    def _cancel(tracked: _Tracked) -> None:
        if tracked.timer is not None:
            tracked.timer.cancel()
            tracked.timer = None

    def _drop(self, tracked: _Tracked, why: str) -> None:
        if tracked.dropped:
            return
        if tracked.sock.fileno() == -1:
            # Closed without going through asyncio's transport (it failed to start): give the
            # slot back rather than count a connection that is gone.
            self._release(tracked)
            return
        tracked.dropped = True
        self._dropping += 1
        self._cancel(tracked)
        self._waiting.pop(tracked, None)
        self.dropped[why] += 1
        if self._limiter is not None and (why == "body" or (why == "head" and not tracked.answered)):
            self._limiter.refused(tracked.key)
        with contextlib.suppress(OSError):
            tracked.sock.shutdown(socket.SHUT_RDWR)
        if tracked.transport is not None:
            tracked.transport.abort()  # type: ignore[attr-defined]
        self._report()

    def _report(self) -> None:
        now = time.monotonic()
        if now - self._last_report < _REPORT_EVERY:
            return
        refused = {k: v - self._reported[f"refused.{k}"] for k, v in self.refused.items()}
        dropped = {k: v - self._reported[f"dropped.{k}"] for k, v in self.dropped.items()}
        self._last_report = now
        for k, v in self.refused.items():
            self._reported[f"refused.{k}"] = v
        for k, v in self.dropped.items():
            self._reported[f"dropped.{k}"] = v
        log.warning(
            "connections refused or dropped",
            extra={
                "fields": {
                    "event": "connections",
                    "refused": {k: v for k, v in refused.items() if v},
                    "dropped": {k: v for k, v in dropped.items() if v},
                    "open": len(self._open),
                    "addresses": len(self._per_address),
                }
            },
        )


def _decrement(counts: dict[str, int], key: str) -> None:
    left = counts.get(key, 1) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
