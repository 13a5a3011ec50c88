"""A registry client for the OCI Distribution Specification v1.1 endpoints a package needs. I/O.

Why not a library: ``oras`` (oras-py 0.2) was tried first. It retries every failed request five
times with sleeps of 3 to 83 seconds (a registry that is down would hold ``donjon run`` for
two minutes, with no request timeout), uploads manifests re-serialised through ``json=``
(so the pushed manifest's digest would not be the one built and signed), and downloads blobs
to files without size limits. What remains is a handful of HTTP requests, written here on the
standard library's ``http.client`` (:mod:`donjon.oci.transport`; not on httpx, whose import
cost ~40 ms of a cached ``donjon run oci://`` on ``nil``) with every response size bounded,
TLS with a chosen CA, a bounded retry budget, and the two auth schemes registries use: HTTP
Basic and the Docker token flow (:mod:`donjon.oci.token`).
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
from urllib.parse import parse_qsl, quote, urlencode, urljoin, urlsplit, urlunsplit

from donjon.oci.artifact import MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES, digest_of, verify_blob
from donjon.oci.auth import Credentials
from donjon.oci.errors import AuthFailed, NotFound, RegistryError, RegistryUnavailable, TooLarge
from donjon.oci.reference import Reference
from donjon.oci.token import (
    MAX_TOKEN_ANSWER,
    Challenge,
    TokenAnswer,
    parse_challenge,
    parse_token_answer,
    scope,
)
from donjon.oci.transport import (
    MAX_REDIRECTS,
    RedirectRefused,
    Response,
    Transport,
    TransportError,
    split_https_url,
)

__all__ = ["RegistryClient", "RetryPolicy"]

log = logging.getLogger("donjon.oci")

_INDEX = "application/vnd.oci.image.index.v1+json"
_ACCEPT = f"{MANIFEST_MEDIA_TYPE}, {_INDEX};q=0.5"
_MAX_ERROR_BODY = 4096
_TOKEN_EARLY = 10.0  # seconds: a token is renewed this long before the expiry it was given


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded: ``attempts`` tries with ``backoff`` seconds between them, each network operation
    ``timeout`` s, and one download (a manifest or a blob, retries included) ``total`` s at most -
    a registry trickling a byte every few seconds cannot hold a Keep for longer."""

    attempts: int = 3
    backoff: tuple[float, ...] = (0.2, 0.5)
    timeout: float = 10.0
    total: float = 300.0


@dataclass(frozen=True)
class _Token:
    authorization: str = field(repr=False)
    expires: float  # time.monotonic()


@dataclass
class RegistryClient:
    """One registry (``HOST[:PORT]``) over HTTPS; ``ca_file`` pins the CA (else the system roots).

    Auth: with credentials, HTTP Basic is sent from the first request (as docker does after a
    login: a round trip less per pull). A registry that answers with a ``Bearer`` challenge gets
    tokens instead, one per scope (``repository:NAME:pull`` or ``pull,push``), kept until shortly
    before they expire; the token service's realm must be ``https://``."""

    registry: str
    credentials: Credentials | None = None
    ca_file: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    sleep: Callable[[float], None] = time.sleep
    _transport: Transport | None = field(default=None, init=False, repr=False)
    _bearer: Challenge | None = field(default=None, init=False, repr=False)
    _tokens: dict[str, _Token] = field(default_factory=dict, init=False, repr=False)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    @property
    def _origin(self) -> str:
        return str(split_https_url(f"https://{self.registry}/")[0])

    def _http(self) -> Transport:
        if self._transport is None:
            try:
                context = ssl.create_default_context(cafile=self.ca_file)
            except (OSError, ssl.SSLError) as e:
                raise RegistryError(self.registry, f"registry CA {self.ca_file}: {e}") from e
            self._transport = Transport(context, self.retry.timeout)
        return self._transport

    # -- the endpoints ---------------------------------------------------------------------

    def get_manifest(
        self, ref: Reference, reference: str, *, limit: int = MAX_MANIFEST_BYTES, within: float | None = None
    ) -> bytes:
        """The manifest bytes at ``reference`` (a tag or a digest); a digest is checked. ``within``:
        seconds the download may take, when less than ``retry.total`` (a pull's deadline)."""
        data = self._get(
            ref, f"manifests/{reference}", {"Accept": _ACCEPT}, limit, f"manifest {reference}", within
        )
        if reference.startswith("sha256:"):
            verify_blob(f"manifest {reference}", data, reference)
        return data

    def get_referrers(
        self,
        ref: Reference,
        digest: str,
        *,
        artifact_type: str,
        limit: int = MAX_MANIFEST_BYTES,
        within: float | None = None,
    ) -> bytes | None:
        """The image index of the referrers of ``digest`` with ``artifact_type`` (OCI Distribution
        Specification v1.1, "Listing Referrers"), or ``None`` from a registry without that API (404)."""
        path = f"referrers/{digest}?artifactType={quote(artifact_type, safe='')}"
        try:
            return self._get(ref, path, {"Accept": _INDEX}, limit, f"referrers of {digest}", within)
        except NotFound:
            return None

    def get_blob(self, ref: Reference, digest: str, *, limit: int, within: float | None = None) -> bytes:
        """The blob ``digest``, at most ``limit`` bytes, checked against its digest (also when a
        redirect sent the GET to object storage or a CDN)."""
        data = self._get(ref, f"blobs/{digest}", {}, limit, f"blob {digest}", within)
        verify_blob(f"blob {digest}", data, digest)
        return data

    def has_blob(self, ref: Reference, digest: str) -> bool:
        return self._has_blob(ref, digest, "pull")

    def _has_blob(self, ref: Reference, digest: str, actions: str) -> bool:
        response = self._request("HEAD", ref, f"blobs/{digest}", actions=actions)
        response.close()
        if response.status == 404:
            return False
        # Registries on object storage answer HEAD with the same redirect as GET (distribution's
        # blobserver): the blob is there; the redirect is not followed for a HEAD.
        if response.status in (301, 302, 303, 307, 308):
            return True
        self._check(response, f"blob {digest}")
        return True

    def push_blob(self, ref: Reference, digest: str, data: bytes) -> None:
        """Upload ``data`` unless the registry has it: POST an upload, then one PUT with the digest."""
        # One scope for the whole push (pull,push covers the HEAD): one token, not two.
        if self._has_blob(ref, digest, "pull,push"):
            return
        started = self._request(
            "POST", ref, "blobs/uploads/", headers={"Content-Length": "0"}, actions="pull,push"
        )
        started.close()
        self._check(started, "blob upload", expected=(202,))
        location = started.header("Location") or ""
        if not location:
            raise RegistryError(self.registry, "blob upload: no Location in the answer")
        url = urljoin(f"https://{self.registry}/", location)
        try:
            there, _ = split_https_url(url)
        except RedirectRefused as e:
            raise RegistryError(self.registry, f"blob upload: Location {e.reason}") from e
        if str(there) != self._origin:
            # Credentials go only to the registry named; an upload elsewhere is not followed.
            raise RegistryError(self.registry, f"blob upload: Location {there} is another host")
        parts = urlsplit(url)
        query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), ("digest", digest)])
        url = urlunsplit(parts._replace(query=query))
        done = self._request(
            "PUT", ref, "", url=url, content=data, actions="pull,push",
            headers={"Content-Type": "application/octet-stream"},
        )  # fmt: skip
        done.close()
        self._check(done, f"blob {digest}", expected=(201,))

    def push_manifest(self, ref: Reference, reference: str, data: bytes, media_type: str) -> str:
        """PUT the manifest bytes exactly as given; the digest the registry reports must be ours."""
        response = self._request(
            "PUT", ref, f"manifests/{reference}", content=data, headers={"Content-Type": media_type},
            actions="pull,push",
        )  # fmt: skip
        response.close()
        self._check(response, f"manifest {reference}", expected=(201,))
        ours = digest_of(data)
        theirs = response.header("Docker-Content-Digest")
        if theirs is not None and theirs != ours:
            raise RegistryError(self.registry, f"stored the manifest as {theirs}, not {ours}")
        return ours

    # -- HTTP, auth and retries ------------------------------------------------------------

    def _get(
        self,
        ref: Reference,
        path: str,
        headers: Mapping[str, str],
        limit: int,
        what: str,
        within: float | None = None,
    ) -> bytes:
        seconds = self.retry.total if within is None else min(self.retry.total, within)
        deadline = time.monotonic() + seconds
        for attempt in range(self.retry.attempts):
            response = self._request("GET", ref, path, headers=headers, what=what)
            try:
                self._check(response, what)
                return self._read(response, limit, what, deadline, seconds)
            except TransportError as e:
                if attempt + 1 >= self.retry.attempts or time.monotonic() > deadline:
                    raise RegistryUnavailable(self.registry, f"{what}: {e.reason}") from e
                self._pause(attempt)
            finally:
                response.close()
        raise RegistryUnavailable(self.registry, what)  # not reached: the loop returns or raises

    def _read(self, response: Response, limit: int, what: str, deadline: float, seconds: float) -> bytes:
        """The body, at most ``limit`` bytes: the declared length first, then counted as it comes."""
        declared = response.header("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise TooLarge(what, int(declared), limit)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.chunks():
            size += len(chunk)
            if size > limit:
                raise TooLarge(what, size, limit)
            if time.monotonic() > deadline:
                raise RegistryUnavailable(self.registry, f"{what}: not received within {seconds:.0f} s")
            chunks.append(chunk)
        return b"".join(chunks)

    def _request(
        self,
        method: str,
        ref: Reference,
        path: str,
        *,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        actions: str = "pull",
        what: str | None = None,
    ) -> Response:
        """One request with retries on transport errors, 5xx and 429, and auth on 401."""
        target = url or f"https://{self.registry}/v2/{ref.repository}/{path}"
        wanted = scope(ref.repository, actions)
        # Registries on object storage answer blob GETs with a redirect to another host (S3, a
        # CDN): followed for GET only, https only, without our Authorization (transport.py).
        redirects = MAX_REDIRECTS if method == "GET" else 0
        authenticated = False
        attempt = 0
        while True:
            try:
                response = self._http().request(
                    method, target, headers=headers, body=content,
                    authorization=self._authorization(wanted), redirects=redirects,
                )  # fmt: skip
            except RedirectRefused as e:
                raise RegistryError(self.registry, f"{what or path}: redirect refused: {e.reason}") from e
            except TransportError as e:
                if not e.retryable:  # a wrong CA (or proxy setting) does not get better with retries
                    raise RegistryUnavailable(self.registry, e.reason) from e
                attempt += 1
                if attempt >= self.retry.attempts:
                    raise RegistryUnavailable(self.registry, f"{e.reason} (after {attempt} attempts)") from e
                self._pause(attempt - 1)
                continue
            # A 401 from another origin (storage a redirect led to) is no challenge of ours: it
            # is reported as that answer, and our credentials never go there.
            if response.status == 401 and str(response.origin) == self._origin:
                challenge = parse_challenge(response.header("WWW-Authenticate") or "")
                response.close()
                if authenticated:
                    raise AuthFailed(self.registry, _refusal(challenge, wanted))
                self._answer(challenge, wanted)
                authenticated = True
                continue
            if response.status >= 500 or response.status == 429:
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

    # -- auth ------------------------------------------------------------------------------

    def _authorization(self, wanted: str) -> str | None:
        """What to send for a request needing ``wanted``: a Bearer token (once the registry asked
        for tokens; fetched for this scope if none is held), else Basic with credentials."""
        if self._bearer is not None:
            held = self._held(wanted)
            if held is None:
                held = self._fetch_token(self._bearer, wanted)
            return held.authorization
        return _basic(self.credentials) if self.credentials is not None else None

    def _held(self, wanted: str) -> _Token | None:
        now = time.monotonic()
        # A pull,push token covers a pull of the same repository (token.md: actions are a set).
        candidates = [wanted] + ([wanted + ",push"] if wanted.endswith(":pull") else [])
        for key in candidates:
            token = self._tokens.get(key)
            if token is not None and token.expires > now:
                return token
        return None

    def _answer(self, challenge: Challenge, wanted: str) -> None:
        """Prepare the retry of a request the registry answered 401 with ``challenge``."""
        if challenge.scheme == "basic":
            if self.credentials is None:
                raise AuthFailed(
                    self.registry,
                    "the registry needs credentials (docker config, REGISTRY_AUTH_FILE or flags)",
                )
            self._bearer = None
            return
        if challenge.scheme == "bearer":
            realm = challenge.params.get("realm", "")
            if not realm.lower().startswith("https://"):
                # The token service gets our password: never over plain HTTP, nor to a non-URL.
                raise AuthFailed(
                    self.registry, f"token service realm {realm[:200]!r} is not https:// (refused)"
                )
            self._bearer = challenge
            # A token we held was refused (expired early, revoked): it is asked for again once.
            self._tokens.pop(wanted, None)
            self._fetch_token(challenge, wanted)
            return
        raise AuthFailed(
            self.registry, f"unsupported authentication scheme {challenge.scheme[:40] or '(none)'!r}"
        )

    def _fetch_token(self, challenge: Challenge, wanted: str) -> _Token:
        """GET the realm for ``wanted`` (token.md "Requesting a Token"), HTTP Basic when we have
        credentials (anonymous otherwise); the answer bounded, its token kept for the scope."""
        query = urlencode({"service": challenge.params.get("service", ""), "scope": wanted})
        realm = challenge.params["realm"]
        url = f"{realm}{'&' if '?' in realm else '?'}{query}"
        authorization = _basic(self.credentials) if self.credentials is not None else None
        attempt = 0
        while True:
            try:
                response = self._http().request("GET", url, authorization=authorization)
            except RedirectRefused as e:
                raise AuthFailed(self.registry, f"token service realm: {e.reason}") from e
            except TransportError as e:
                attempt += 1
                if not e.retryable or attempt >= self.retry.attempts:
                    raise RegistryUnavailable(
                        self.registry, f"token service {e.origin}: {e.reason} (after {attempt} attempts)"
                    ) from e
                self._pause(attempt - 1)
                continue
            try:
                if response.status in (401, 403) and self.credentials is None:
                    raise AuthFailed(
                        self.registry,
                        "the token service needs credentials (docker config, REGISTRY_AUTH_FILE or flags)",
                    )
                if response.status in (401, 403):
                    raise AuthFailed(
                        self.registry, f"the token service refused the credentials ({response.status})"
                    )
                if response.status != 200:
                    raise RegistryUnavailable(self.registry, f"token service answered {response.status}")
                answer = self._token_answer(response)
            finally:
                response.close()
            token = _Token(
                f"Bearer {answer.token}", time.monotonic() + max(answer.expires_in - _TOKEN_EARLY, 1.0)
            )
            self._tokens[wanted] = token
            return token

    def _token_answer(self, response: Response) -> TokenAnswer:
        declared = response.header("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_TOKEN_ANSWER:
            raise RegistryError(self.registry, f"token service: answer over {MAX_TOKEN_ANSWER} bytes")
        body = b""
        try:
            for chunk in response.chunks():
                body += chunk
                if len(body) > MAX_TOKEN_ANSWER:
                    break  # parse_token_answer refuses it; nothing more is read
        except TransportError as e:
            raise RegistryUnavailable(self.registry, f"token service: {e.reason}") from e
        return parse_token_answer(self.registry, body)

    def _check(self, response: Response, what: str, *, expected: tuple[int, ...] = (200,)) -> None:
        status = response.status
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
        # At most a few KiB of an error answer: a hostile registry's error page is bounded too.
        match = re.search(rb'"message"\s*:\s*"([^"]{1,200})"', response.read_some(_MAX_ERROR_BODY))
        detail = f": {match.group(1).decode('utf-8', 'replace')}" if match else ""
        raise RegistryError(self.registry, f"{what}: answered {status}{detail}")


def _refusal(challenge: Challenge, wanted: str) -> str:
    """Why a request that was answered with credentials (or a fresh token) still got 401."""
    if challenge.error == "insufficient_scope":
        return f"the token service did not grant {wanted} (insufficient_scope)"
    if challenge.scheme == "bearer":
        return f"the registry refused the token for {wanted} ({challenge.error or '401 Unauthorized'})"
    return "the registry refused the credentials (401 Unauthorized)"


def _basic(credentials: Credentials) -> str:
    token = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")
