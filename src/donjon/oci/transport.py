"""HTTPS requests on the standard library (``http.client`` + ``ssl``) for the registry client. I/O.

Why not httpx (a dependency of Donjon's other clients): importing it costs ~70 ms here in a
fresh process (it pulls in httpcore, click and pygments for its command line), against ~25 ms
for ``http.client`` and ``ssl``; leaving it took ~40 ms off a cached ``donjon run --backend nil
oci://`` (benchmarks/RESULTS.md), whose budget is 30 ms over running the same module from a
file, and nothing else on that path imports httpx. What a registry needs is small: HTTPS with a
pinned CA or the system roots, one kept-alive connection per origin, bounded reads, GET
redirects that stay on HTTPS, and HTTPS proxies through ``CONNECT``.

What this module does, and the registry client relies on:

- **HTTPS only.** A URL or a redirect to anything but ``https://`` is refused, never followed.
- **One connection per origin** (scheme, host, port), reused while the peer keeps it alive; a
  response not read to its end closes its connection, so the next request starts clean. A kept
  connection the peer closed while idle is reopened once, silently (RFC 9112 9.3.1 lets a client
  retry a request on a connection that closed before any answer).
- **Redirects** (RFC 9110 15.4) only when asked (the registry asks for GET): at most a few hops,
  ``https://`` only, and the ``Authorization`` header goes only to the origin it was given for -
  a blob answered by object storage or a CDN never sees the registry's credentials.
- **Proxies** as curl and httpx read them: ``HTTPS_PROXY``/``https_proxy`` (else ``ALL_PROXY``),
  ``NO_PROXY``; an ``http://`` proxy is asked to ``CONNECT`` (RFC 9110 9.3.6) and TLS runs end to
  end through the tunnel, so the proxy sees neither the certificate checks nor the bytes.
  ``urllib.request`` (its environment parsing) is imported only when such a variable is set.
- **Bounded time:** every connect and read times out after ``timeout`` seconds; the caller
  bounds a whole download (``Response.chunks`` reads one chunk at a time, never all at once).
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

__all__ = [
    "MAX_REDIRECTS",
    "Origin",
    "Proxy",
    "RedirectRefused",
    "Response",
    "Transport",
    "TransportError",
    "environment_proxy",
    "split_https_url",
]

#: Hops a redirected GET may take (registries on object storage use one; a CDN perhaps two).
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_DRAIN = 4096  # an unread body up to this size is read on close() to keep the connection
# A connection the peer closed while it sat idle in our pool shows as one of these on reuse.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class TransportError(Exception):
    """No usable answer from ``origin``: refused connection, TLS failure, timeout, broken HTTP.

    ``tls`` marks a failed handshake or certificate check; ``retryable`` is false for it and for
    an unusable proxy setting (trying again does not fix a wrong CA or a wrong variable)."""

    def __init__(self, origin: str, reason: str, *, tls: bool = False, retryable: bool = True) -> None:
        self.origin = origin
        self.reason = reason
        self.tls = tls
        self.retryable = retryable and not tls
        super().__init__(reason)


class RedirectRefused(Exception):
    """A redirect not followed: to another scheme than https, without a Location, or too many."""

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class Origin:
    """RFC 6454 origin of an ``https://`` URL (the scheme is always https here)."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def split_https_url(url: str) -> tuple[Origin, str]:
    """``url``'s origin and request target (path and query); anything but https is refused."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError as e:
        raise RedirectRefused(url, f"not a URL: {e}") from e
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise RedirectRefused(url, f"{_shown(url)} is not an https:// URL (refused)")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.hostname, port), target


@dataclass(frozen=True)
class Proxy:
    """An ``http://`` proxy to ``CONNECT`` through; ``authorization`` from the URL's user:password."""

    origin: Origin
    authorization: str | None = None

    def __repr__(self) -> str:  # the password stays out of logs and tracebacks
        return f"Proxy({self.origin})"


def environment_proxy(origin: Origin) -> Proxy | None:
    """The proxy the environment names for ``https://origin``, or ``None`` (none set, or NO_PROXY).

    Raises :class:`TransportError` for a proxy URL this client cannot use (not ``http://``)."""
    names = {name.lower() for name in os.environ}
    if not names & {"https_proxy", "all_proxy"}:
        return None  # the common case, without importing urllib.request (~10 ms)
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    url = proxies.get("https") or proxies.get("all")
    # proxy_bypass_environment is public in urllib.request but missing from typeshed.
    bypass: Callable[[str, dict[str, str]], bool] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
    if not url or bypass(str(origin), proxies):
        return None
    if "://" not in url:
        url = f"http://{url}"  # as curl and httpx read "proxy:3128"
    try:
        parts = urlsplit(url)
        port = parts.port or 80
    except ValueError as e:
        raise TransportError(str(origin), f"proxy {_shown(url)}: {e}", retryable=False) from e
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise TransportError(
            str(origin), f"proxy {_shown(url)}: only http:// proxies are supported", retryable=False
        )
    authorization = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    return Proxy(Origin(parts.hostname, port), authorization)


class Response:
    """An answer's status and headers; its body read in bounded chunks, then the connection reused."""

    def __init__(self, origin: Origin, raw: http.client.HTTPResponse, release: Transport) -> None:
        self.origin = origin
        self.status = raw.status
        self._raw = raw
        self._transport = release

    def header(self, name: str) -> str | None:
        return self._raw.getheader(name)

    def chunks(self) -> Iterator[bytes]:
        """The body, at most 64 KiB per chunk and one socket read per chunk (so a caller's deadline
        is checked between reads); raises :class:`TransportError` when the peer breaks off."""
        try:
            while True:
                # read1: one read from the socket at most; read(n) would wait for n bytes.
                chunk = self._raw.read1(_CHUNK)
                if not chunk:
                    return
                yield chunk
        except (OSError, http.client.HTTPException) as e:
            self._transport.discard(self.origin)
            raise TransportError(str(self.origin), _describe(e)) from e

    def read_some(self, limit: int) -> bytes:
        """At most ``limit`` bytes of the body (an error answer): what arrives, errors swallowed."""
        body = b""
        try:
            for chunk in self.chunks():
                body += chunk
                if len(body) >= limit:
                    break
        except TransportError:
            pass
        return body[:limit]

    def close(self) -> None:
        """Done with this answer. The connection stays for the next request when the body was read
        to its end (or is a short error body, read here in one socket read at most); otherwise
        it is closed: unread bytes would be taken for the next answer."""
        raw = self._raw
        if raw.isclosed():
            return
        if not raw.chunked and raw.length is not None and raw.length <= _DRAIN:
            try:
                if raw.length:
                    raw.read1(raw.length)
            except (OSError, http.client.HTTPException):
                pass
            if raw.length == 0:
                # http.client marks a body read by read1 to its end as done only on the next
                # read; close() says so now (the socket stays with the connection).
                raw.close()
                return
        raw.close()
        self._transport.discard(self.origin)


class Transport:
    """HTTPS requests with ``context`` (the CA) and ``timeout`` seconds per connect and read."""

    def __init__(self, context: ssl.SSLContext, timeout: float) -> None:
        self._context = context
        self._timeout = timeout
        self._connections: dict[Origin, http.client.HTTPSConnection] = {}

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()

    def discard(self, origin: Origin) -> None:
        connection = self._connections.pop(origin, None)
        if connection is not None:
            connection.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        authorization: str | None = None,
        redirects: int = 0,
    ) -> Response:
        """One request; up to ``redirects`` redirects followed (with GET only: the caller asks).

        ``authorization`` is sent to ``url``'s origin only: a redirect to another origin goes
        without it (as browsers, curl and httpx do; RFC 9110 15.4 leaves it to the client)."""
        home, _ = split_https_url(url)
        for _hop in range(redirects + 1):
            origin, target = split_https_url(url)
            sent = dict(headers or {})
            if authorization is not None and origin == home:
                sent["Authorization"] = authorization
            response = self._send(origin, method, target, sent, body)
            if redirects == 0 or response.status not in _REDIRECTS:
                return response
            location = response.header("Location")
            response.close()
            if not location:
                raise RedirectRefused("", f"a {response.status} redirect without a Location")
            url = urljoin(url, location)
            split_https_url(url)  # a downgrade to http:// (or another scheme) is refused here
        raise RedirectRefused(url, f"more than {redirects} redirects (last to {_shown(url)})")

    def _send(
        self, origin: Origin, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> Response:
        connection, reused = self._connection(origin)
        try:
            connection.request(method, target, body=body, headers=dict(headers))
            raw = connection.getresponse()
        except _STALE as e:
            self.discard(origin)
            if not reused:
                raise TransportError(str(origin), _describe(e)) from e
            # Closed by the peer while idle in the pool: once more on a new connection.
            connection, _ = self._connection(origin)
            try:
                connection.request(method, target, body=body, headers=dict(headers))
                raw = connection.getresponse()
            except (OSError, http.client.HTTPException) as e2:
                self.discard(origin)
                raise _transport_error(origin, e2) from e2
        except (OSError, http.client.HTTPException) as e:
            self.discard(origin)
            raise _transport_error(origin, e) from e
        return Response(origin, raw, self)

    def _connection(self, origin: Origin) -> tuple[http.client.HTTPSConnection, bool]:
        """The pooled connection to ``origin`` (``True``: reused), else a new, connected one."""
        connection = self._connections.get(origin)
        if connection is not None and connection.sock is not None:
            return connection, True
        if connection is not None:
            self.discard(origin)
        proxy = environment_proxy(origin)
        if proxy is None:
            connection = http.client.HTTPSConnection(
                origin.host, origin.port, context=self._context, timeout=self._timeout
            )
        else:
            connection = http.client.HTTPSConnection(
                proxy.origin.host, proxy.origin.port, context=self._context, timeout=self._timeout
            )
            tunnel = {"Proxy-Authorization": proxy.authorization} if proxy.authorization else None
            # TLS is then wrapped with server_hostname = origin.host: checked end to end.
            connection.set_tunnel(origin.host, origin.port, headers=tunnel)
        try:
            connection.connect()
        except (OSError, http.client.HTTPException) as e:
            connection.close()
            error = _transport_error(origin, e)
            if not error.tls:
                via = f" (through proxy {proxy.origin})" if proxy is not None else ""
                error = TransportError(str(origin), f"cannot connect{via}: {_describe(e)}")
            raise error from e
        self._connections[origin] = connection
        return connection, False


def _transport_error(origin: Origin, error: BaseException) -> TransportError:
    tls = isinstance(error, ssl.SSLError)  # includes SSLCertVerificationError
    return TransportError(str(origin), _describe(error), tls=tls)


def _describe(error: BaseException) -> str:
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"TLS certificate check failed: {error.verify_message or error}"
    if isinstance(error, ssl.SSLError):
        return f"TLS failed: {error.reason or error}"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(error, http.client.IncompleteRead):
        return f"the answer broke off after {len(error.partial)} bytes"
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}"


def _shown(url: str) -> str:
    """``url`` for an error message: without any user:password, and cut short."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        rest = rest.split("@", 1)[1]
    return (f"{scheme}{sep}{rest}")[:200]
