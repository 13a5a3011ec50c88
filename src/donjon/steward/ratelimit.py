"""Per-address rate limit on refusals: an address that keeps being refused gets ``429``.

Every 4xx answer (a refusal: garbage CSRs, forged nonces, unknown paths...) takes a token from
the client address's bucket (IPv6: its /64, :func:`donjon.steward.limits.address_key`); buckets
refill at ``refusal_rate`` tokens a second up to ``refusal_burst``. While a bucket is empty,
every request from that address is answered ``429`` with ``Retry-After`` and
``Connection: close`` before the application sees it — no CSR is parsed, nothing is logged row
by row — and (with the guard) its new connections are reset at accept until a token is back.
Honest clients are never charged: only refusals take tokens.

The table of buckets is bounded (``rate_table_size``): when it is full the address refused
least recently is forgotten (it starts again with a full bucket). An attacker with more
addresses than the table can so escape the limit, but cannot grow the Steward's memory; that
needs a defence in front (docs/steward.md "Threat model and limits").
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from donjon.steward.limits import address_key

__all__ = ["RefusalLimiter", "RefusalRateLimit"]

log = logging.getLogger("donjon.steward")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: At most one "rate_limited" log line this often (seconds); the metrics count every 429.
_LOG_EVERY = 10.0


class RefusalLimiter:
    """Token buckets of refusals, one per address key, in a table of bounded size.

    Not thread-safe: the middleware calls it from the event loop only.
    """

    def __init__(
        self,
        *,
        burst: int,
        rate: float,
        table_size: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if burst < 1 or rate <= 0 or table_size < 1:
            raise ValueError("burst and table_size must be at least 1, rate above 0")
        self.burst = burst
        self.rate = rate
        self.table_size = table_size
        self._clock = clock
        # key -> (tokens, time of the last update); least recently refused first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.limited = 0  # requests answered 429

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, key: str, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return float(self.burst)
        tokens, then = found
        return min(float(self.burst), tokens + (now - then) * self.rate)

    def tokens(self, key: str) -> float | None:
        """Tokens ``key`` has now, or None when it has no bucket (not refused lately: a full one)."""
        if key not in self._buckets:
            return None
        return self._tokens(key, self._clock())

    def retry_after(self, key: str) -> float | None:
        """Seconds until ``key`` may be served again, or None when it may be now."""
        if key not in self._buckets:
            return None
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            return None
        return (1.0 - tokens) / self.rate

    def refused(self, key: str) -> bool:
        """Charge one refusal to ``key``; True when this emptied its bucket (it is now limited)."""
        now = self._clock()
        tokens = max(0.0, self._tokens(key, now) - 1.0)
        self._buckets[key] = (tokens, now)
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.table_size:
            self._buckets.popitem(last=False)
        return tokens < 1.0


class RefusalRateLimit:
    """ASGI middleware: ``429`` + ``Retry-After`` for limited addresses; 4xx answers charge them."""

    def __init__(self, app: ASGIApp, limiter: RefusalLimiter) -> None:
        self.app = app
        self.limiter = limiter
        self._emptied = 0  # buckets emptied since the last log line
        self._last_log = -_LOG_EVERY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = address_key(client[0] if client else None)
        wait = self.limiter.retry_after(key)
        if wait is not None:
            self.limiter.limited += 1
            await _too_many(send, wait)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if 400 <= status < 500 and self.limiter.refused(key):
            self._emptied += 1
            now = time.monotonic()
            if now - self._last_log >= _LOG_EVERY:
                # Sampled: one line per interval, however many addresses are being limited.
                log.warning(
                    "address limited: too many refused requests",
                    extra={
                        "fields": {
                            "event": "rate_limited",
                            "client": key,
                            "times": self._emptied,
                            "burst": self.limiter.burst,
                            "rate": self.limiter.rate,
                        }
                    },
                )
                self._last_log, self._emptied = now, 0

    def metrics_lines(self) -> list[str]:
        return [
            "# HELP donjon_steward_rate_limited_total Requests answered 429 (address kept being refused).",
            "# TYPE donjon_steward_rate_limited_total counter",
            f"donjon_steward_rate_limited_total {self.limiter.limited}",
            "# HELP donjon_steward_rate_limit_addresses Addresses the refusal rate limit remembers.",
            "# TYPE donjon_steward_rate_limit_addresses gauge",
            f"donjon_steward_rate_limit_addresses {len(self.limiter)}",
        ]


async def _too_many(send: Send, wait: float) -> None:
    seconds = max(1, math.ceil(wait))
    body = json.dumps(
        {
            "error": "refused",
            "check": "request.rate",
            "reason": f"too many refused requests from this address; retry after {seconds} s",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(seconds).encode()),
                # Closed after the answer: while the address has no token, its next connection
                # is reset at accept (connguard), which costs far less than a TLS handshake and
                # an HTTP request for every 429.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
