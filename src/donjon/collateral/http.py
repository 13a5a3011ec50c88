"""The one HTTP client the collateral fetchers share: timeouts, size limits, bounded retries.

Vendor answers are untrusted input like any other: the body is read in chunks
and abandoned past ``max_bytes``; every request has a timeout; transient
failures (transport errors, timeouts, HTTP 5xx and 429) are retried a bounded
number of times with exponential backoff; anything else fails at once with the
URL and status in the error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType

import httpx

from donjon.collateral.errors import FetchFailed, ResponseTooLarge

__all__ = ["FetchConfig", "HttpFetcher", "HttpResponse"]

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class FetchConfig:
    """Limits for talking to a vendor service.

    ``timeout`` bounds connecting and each read (seconds); ``max_bytes`` the
    body; ``attempts`` the tries per request (first one included); the wait
    before retry *n* is ``min(backoff * 2**(n-1), max_backoff)`` seconds.
    """

    timeout: float = 10.0
    max_bytes: int = 1 << 20
    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    trust_env: bool = True
    user_agent: str = "donjon-collateral/0.1"

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.max_bytes <= 0 or not 1 <= self.attempts <= 10 or self.backoff < 0:
            raise ValueError(
                "FetchConfig needs timeout > 0, max_bytes > 0, 1 <= attempts <= 10, backoff >= 0"
            )


@dataclass(frozen=True)
class HttpResponse:
    """A complete, successful (HTTP 200) answer. Header names are lower case."""

    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes


class HttpFetcher:
    """GETs vendor documents with the limits of a :class:`FetchConfig`. Close it (or use ``with``)."""

    def __init__(
        self, config: FetchConfig | None = None, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.config = config or FetchConfig()
        self._sleep = sleep
        self._client: httpx.Client | None = httpx.Client(
            timeout=httpx.Timeout(self.config.timeout),
            follow_redirects=False,
            trust_env=self.config.trust_env,
            headers={"User-Agent": self.config.user_agent},
        )
        #: Requests sent on the wire (every attempt counts); for logs and tests.
        self.requests_sent = 0

    def __enter__(self) -> HttpFetcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool; closing twice is harmless."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def get(self, url: str, *, params: Mapping[str, str] | None = None) -> HttpResponse:
        """GET ``url``; return the answer or raise :class:`FetchFailed` / :class:`ResponseTooLarge`."""
        if self._client is None:
            raise RuntimeError("HttpFetcher is closed")
        cfg = self.config
        last: FetchFailed | None = None
        for attempt in range(1, cfg.attempts + 1):
            if attempt > 1:
                self._sleep(min(cfg.backoff * 2 ** (attempt - 2), cfg.max_backoff))
            try:
                return self._once(self._client, url, params, attempt)
            except _Retryable as e:
                last = FetchFailed(e.check, e.reason, url=e.url, status=e.status, attempts=attempt)
        assert last is not None
        raise last

    def _once(
        self, client: httpx.Client, url: str, params: Mapping[str, str] | None, attempt: int
    ) -> HttpResponse:
        self.requests_sent += 1
        try:
            with client.stream("GET", url, params=params) as resp:
                shown = str(resp.url)
                if resp.status_code in _RETRY_STATUSES:
                    raise _Retryable(
                        "collateral.http_status", f"HTTP {resp.status_code}", shown, resp.status_code
                    )
                if resp.status_code == 404:
                    raise FetchFailed(
                        "collateral.not_found",
                        "the vendor service has no such document (HTTP 404)",
                        url=shown,
                        status=404,
                        attempts=attempt,
                    )
                if resp.status_code != 200:
                    raise FetchFailed(
                        "collateral.http_status",
                        f"the vendor service refused the request (HTTP {resp.status_code})",
                        url=shown,
                        status=resp.status_code,
                        attempts=attempt,
                    )
                body = self._read_limited(resp, shown)
                headers = {k.lower(): v for k, v in resp.headers.items()}
                return HttpResponse(url=shown, status=resp.status_code, headers=headers, body=body)
        except httpx.TimeoutException as e:
            raise _Retryable(
                "collateral.timeout", f"timed out after {self.config.timeout}s", url, None
            ) from e
        except httpx.TransportError as e:
            raise _Retryable(
                "collateral.network", f"network error: {e or type(e).__name__}", url, None
            ) from e
        except httpx.InvalidURL as e:
            raise FetchFailed("collateral.url", f"invalid URL: {e}", url=url, attempts=attempt) from e

    def _read_limited(self, resp: httpx.Response, url: str) -> bytes:
        limit = self.config.max_bytes
        declared = resp.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge(
                "collateral.too_large",
                "the vendor's answer declares a size over the limit",
                url=url,
                expected=f"<= {limit} bytes",
                got=int(declared),
            )
        chunks: list[bytes] = []
        total = 0
        for chunk in resp.iter_bytes():
            total += len(chunk)
            if total > limit:
                raise ResponseTooLarge(
                    "collateral.too_large",
                    "the vendor's answer exceeds the size limit",
                    url=url,
                    expected=f"<= {limit} bytes",
                    got=f"> {limit}",
                )
            chunks.append(chunk)
        return b"".join(chunks)


class _Retryable(Exception):
    def __init__(self, check: str, reason: str, url: str, status: int | None) -> None:
        super().__init__(reason)
        self.check, self.reason, self.url, self.status = check, reason, url, status
