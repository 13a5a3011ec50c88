"""A registry client for the OCI Distribution Specification v1.1 endpoints a package needs. I/O.

Why not a library: ``oras`` (oras-py 0.2) was tried first. It retries every failed request five
times with sleeps of 3 to 83 seconds (a registry that is down would hold ``donjon run`` for
two minutes, with no request timeout), uploads manifests re-serialised through ``json=``
(so the pushed manifest's digest would not be the one built and signed), and downloads blobs
to files without size limits. What remains is a handful of HTTP requests, written here on
``httpx`` (already a dependency) with every response size bounded, TLS with a chosen CA, a
bounded retry budget, and the two auth schemes registries use: HTTP Basic and the Docker token
flow (``WWW-Authenticate: Bearer realm=...,service=...,scope=...``; distribution's "Token
Authentication Specification").
"""

from __future__ import annotations

import base64
import logging
import re
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from donjon.oci.artifact import MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES, verify_blob
from donjon.oci.auth import Credentials
from donjon.oci.errors import AuthFailed, NotFound, RegistryError, RegistryUnavailable, TooLarge
from donjon.oci.reference import Reference

__all__ = ["RegistryClient", "RetryPolicy"]

log = logging.getLogger("donjon.oci")

_INDEX = "application/vnd.oci.image.index.v1+json"
_ACCEPT = f"{MANIFEST_MEDIA_TYPE}, {_INDEX};q=0.5"
_MAX_ERROR_BODY = 4096
_MAX_TOKEN_BODY = 64 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded: ``attempts`` tries with ``backoff`` seconds between them, each network operation
    ``timeout`` s, and one download (a manifest or a blob, retries included) ``total`` s at most -
    a registry trickling a byte every few seconds cannot hold a Keep for longer."""

    attempts: int = 3
    backoff: tuple[float, ...] = (0.2, 0.5)
    timeout: float = 10.0
    total: float = 300.0


@dataclass
class RegistryClient:
    """One registry (``HOST[:PORT]``) over HTTPS; ``ca_file`` pins the CA (else the system roots)."""

    registry: str
    credentials: Credentials | None = None
    ca_file: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    _client: httpx.Client | None = field(default=None, init=False, repr=False)
    _authorization: str | None = field(default=None, init=False, repr=False)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            if self.credentials is not None:
                # Sent from the first request, as docker does after a login: a round trip (and
                # the registry's password hash) less per pull. Only to this host, over TLS.
                self._authorization = _basic(self.credentials)
            try:
                verify: ssl.SSLContext | bool = (
                    ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True
                )
            except (OSError, ssl.SSLError) as e:
                raise RegistryError(self.registry, f"registry CA {self.ca_file}: {e}") from e
            self._client = httpx.Client(
                verify=verify, timeout=httpx.Timeout(self.retry.timeout), follow_redirects=False
            )
        return self._client

    # -- the endpoints ---------------------------------------------------------------------

    def get_manifest(self, ref: Reference, reference: str, *, limit: int = MAX_MANIFEST_BYTES) -> bytes:
        """The manifest bytes at ``reference`` (a tag or a digest); a digest is checked."""
        data = self._get(ref, f"manifests/{reference}", {"Accept": _ACCEPT}, limit, f"manifest {reference}")
        if reference.startswith("sha256:"):
            verify_blob(f"manifest {reference}", data, reference)
        return data

    def get_referrers(
        self, ref: Reference, digest: str, *, artifact_type: str, limit: int = MAX_MANIFEST_BYTES
    ) -> bytes | None:
        """The image index of the referrers of ``digest`` with ``artifact_type`` (OCI Distribution
        Specification v1.1, "Listing Referrers"), or ``None`` from a registry without that API (404)."""
        path = f"referrers/{digest}?artifactType={quote(artifact_type, safe='')}"
        try:
            return self._get(ref, path, {"Accept": _INDEX}, limit, f"referrers of {digest}")
        except NotFound:
            return None

    def get_blob(self, ref: Reference, digest: str, *, limit: int) -> bytes:
        """The blob ``digest``, at most ``limit`` bytes, checked against its digest."""
        data = self._get(ref, f"blobs/{digest}", {}, limit, f"blob {digest}")
        verify_blob(f"blob {digest}", data, digest)
        return data

    def has_blob(self, ref: Reference, digest: str) -> bool:
        response = self._request("HEAD", ref, f"blobs/{digest}")
        response.close()
        if response.status_code == 404:
            return False
        self._check(response, f"blob {digest}")
        return True

    def push_blob(self, ref: Reference, digest: str, data: bytes) -> None:
        """Upload ``data`` unless the registry has it: POST an upload, then one PUT with the digest."""
        if self.has_blob(ref, digest):
            return
        started = self._request("POST", ref, "blobs/uploads/", headers={"Content-Length": "0"})
        started.close()
        self._check(started, "blob upload", expected=(202,))
        location = started.headers.get("Location", "")
        if not location:
            raise RegistryError(self.registry, "blob upload: no Location in the answer")
        url = httpx.URL(f"https://{self.registry}").join(location)
        if url.host != httpx.URL(f"https://{self.registry}").host:
            # Credentials go only to the registry named; a redirect elsewhere is not followed.
            raise RegistryError(self.registry, f"blob upload: Location {url.host} is another host")
        url = url.copy_merge_params({"digest": digest})
        done = self._request(
            "PUT", ref, "", url=str(url), content=data,
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        done.close()
        self._check(done, f"blob {digest}", expected=(201,))

    def push_manifest(self, ref: Reference, reference: str, data: bytes, media_type: str) -> str:
        """PUT the manifest bytes exactly as given; the digest the registry reports must be ours."""
        response = self._request(
            "PUT", ref, f"manifests/{reference}", content=data, headers={"Content-Type": media_type}
        )
        response.close()
        self._check(response, f"manifest {reference}", expected=(201,))
        from donjon.oci.artifact import digest_of

        ours = digest_of(data)
        theirs = response.headers.get("Docker-Content-Digest")
        if theirs is not None and theirs != ours:
            raise RegistryError(self.registry, f"stored the manifest as {theirs}, not {ours}")
        return ours

    # -- HTTP, auth and retries ------------------------------------------------------------

    def _get(self, ref: Reference, path: str, headers: Mapping[str, str], limit: int, what: str) -> bytes:
        deadline = time.monotonic() + self.retry.total
        for attempt in range(self.retry.attempts):
            response = self._request("GET", ref, path, headers=headers, stream=True)
            try:
                self._check(response, what)
                declared = response.headers.get("Content-Length")
                if declared is not None and declared.isdigit() and int(declared) > limit:
                    raise TooLarge(what, int(declared), limit)
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(what, size, limit)
                    if time.monotonic() > deadline:
                        raise RegistryUnavailable(
                            self.registry, f"{what}: not received within {self.retry.total:.0f} s"
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
            except (httpx.TransportError, httpx.StreamError) as e:
                if attempt + 1 >= self.retry.attempts or time.monotonic() > deadline:
                    raise RegistryUnavailable(self.registry, f"{what}: {_describe(e)}") from e
                self._pause(attempt)
            finally:
                response.close()
        raise RegistryUnavailable(self.registry, what)  # not reached: the loop returns or raises

    def _request(
        self,
        method: str,
        ref: Reference,
        path: str,
        *,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One request with retries on transport errors, 5xx and 429, and auth on 401."""
        target = url or f"https://{self.registry}/v2/{ref.repository}/{path}"
        scope = f"repository:{ref.repository}:{'pull' if method in ('GET', 'HEAD') else 'pull,push'}"
        authenticated = False
        attempt = 0
        while True:
            sent = dict(headers or {})
            if self._authorization is not None:
                sent["Authorization"] = self._authorization
            try:
                request = self._http().build_request(method, target, headers=sent, content=content)
                # Registries on object storage answer blob GETs with a redirect to another host
                # (S3, a CDN): followed for GET only; httpx drops Authorization off the origin.
                response = self._http().send(request, stream=stream, follow_redirects=method == "GET")
            except httpx.TransportError as e:
                if _is_tls_failure(e):  # a wrong CA does not get better with retries
                    raise RegistryUnavailable(self.registry, _describe(e)) from e
                attempt += 1
                if attempt >= self.retry.attempts:
                    raise RegistryUnavailable(
                        self.registry, f"{_describe(e)} (after {attempt} attempts)"
                    ) from e
                self._pause(attempt - 1)
                continue
            if response.status_code == 401 and not authenticated:
                challenge = response.headers.get("WWW-Authenticate", "")
                response.close()
                self._authorization = self._authenticate(challenge, scope)
                authenticated = True
                continue
            if response.status_code == 401:
                response.close()
                raise AuthFailed(self.registry, "the registry refused the credentials (401 Unauthorized)")
            if response.status_code >= 500 or response.status_code == 429:
                attempt += 1
                if attempt < self.retry.attempts:
                    response.close()
                    self._pause(attempt - 1)
                    continue
            return response

    def _pause(self, attempt: int) -> None:
        backoff = self.retry.backoff
        if backoff:
            self.sleep(backoff[min(attempt, len(backoff) - 1)])

    def _authenticate(self, challenge: str, scope: str) -> str:
        scheme, _, params_text = challenge.partition(" ")
        params = dict(re.findall(r'(\w+)="([^"]*)"', params_text))
        if self.credentials is None and scheme.lower() == "basic":
            raise AuthFailed(
                self.registry, "the registry needs credentials (docker config, REGISTRY_AUTH_FILE or flags)"
            )
        if scheme.lower() == "basic":
            assert self.credentials is not None
            return _basic(self.credentials)
        if scheme.lower() == "bearer" and params.get("realm", "").startswith("https://"):
            return self._token(params, scope)
        raise AuthFailed(self.registry, f"unsupported authentication scheme {scheme or '(none)'!r}")

    def _token(self, params: Mapping[str, str], scope: str) -> str:
        query = {"service": params.get("service", ""), "scope": params.get("scope", scope)}
        auth = (
            httpx.BasicAuth(self.credentials.username, self.credentials.password)
            if self.credentials is not None
            else None
        )
        try:
            response = self._http().get(params["realm"], params=query, auth=auth)
        except httpx.TransportError as e:
            raise RegistryUnavailable(self.registry, f"token service: {_describe(e)}") from e
        if response.status_code in (401, 403):
            raise AuthFailed(
                self.registry, f"the token service refused the credentials ({response.status_code})"
            )
        if response.status_code != 200 or len(response.content) > _MAX_TOKEN_BODY:
            raise RegistryError(self.registry, f"token service answered {response.status_code}")
        try:
            body: Any = response.json()
        except ValueError as e:
            raise RegistryError(self.registry, "token service: not JSON") from e
        token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(self.registry, "token service: no token")
        return f"Bearer {token}"

    def _check(self, response: httpx.Response, what: str, *, expected: tuple[int, ...] = (200,)) -> None:
        status = response.status_code
        if status in expected:
            return
        if status == 404:
            raise NotFound(self.registry, f"{what}: not found")
        if status == 403:
            raise AuthFailed(self.registry, f"{what}: access denied (403 Forbidden)")
        if status >= 500 or status == 429:
            raise RegistryUnavailable(
                self.registry, f"{what}: answered {status} (after {self.retry.attempts} attempts)"
            )
        match = re.search(rb'"message"\s*:\s*"([^"]{1,200})"', _error_body(response))
        detail = f": {match.group(1).decode('utf-8', 'replace')}" if match else ""
        raise RegistryError(self.registry, f"{what}: answered {status}{detail}")


def _error_body(response: httpx.Response) -> bytes:
    """At most a few KiB of an error answer (a hostile registry's error page is bounded too)."""
    try:
        return response.content[:_MAX_ERROR_BODY]
    except httpx.ResponseNotRead:
        pass
    if response.is_closed:
        return b""
    body = b""
    try:
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) >= _MAX_ERROR_BODY:
                break
    except httpx.HTTPError:
        pass
    return body[:_MAX_ERROR_BODY]


def _basic(credentials: Credentials) -> str:
    token = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


def _is_tls_failure(error: httpx.TransportError) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(error)


def _describe(error: BaseException) -> str:
    if isinstance(error, httpx.ConnectError):
        return f"cannot connect: {error}"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    return f"{type(error).__name__}: {error}"
