"""The Keep's TLS identity at start: from the selected backend to what every ``tls`` socket presents.

DESIGN.md "One run, as data", the step between the backend and the fd table:

- an **attested** backend (``snp``, ``tdx``, ``cca``, ``sgx``, ``sim-snp``, ``sim-tdx``) attests to
  its Steward (:class:`~donjon.keep.Attestor`: key in memory, challenge, binding, evidence, CSR,
  chain checked against the pinned CA) and gets a :class:`~donjon.keep.KeepIdentity`, renewed by
  a :class:`~donjon.keep.Renewer` before it expires. Without a Steward (URL and pinned CA) it
  does not start: :class:`StewardRequired`. There is no self-signed fall-back, ever: a refusal
  or an unreachable Steward is an exception, and the Keep serves nothing;
- ``nil`` with a Steward asks it for an *unattested* identity (a Steward refuses that unless its
  policy sets ``allow_unattested``, marked unsafe);
- ``nil`` without a Steward gets a fresh self-signed identity, and a loud warning says so.

:func:`exit_code` maps each failure to ``donjon run``'s documented exit codes (docs/run.md):
1 refused (the Steward's policy, the Keep's own check of what was issued), 2 usage (no Steward
for an attested backend, a CA file that is not PEM), 3 operational (the Steward unreachable or
not the pinned one, the backend's evidence unavailable, a CA file that cannot be read).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography import x509

from donjon.backends.base import Availability, Backend, Evidence
from donjon.keep.attest import AttestedIdentity, Attestor, RetryPolicy
from donjon.keep.errors import (
    AttestationRefused,
    IssuedCertificateInvalid,
    KeepError,
    StewardUnreachable,
)
from donjon.keep.renew import KeepIdentity, Renewer
from donjon.keep.steward_client import StewardEndpoint
from donjon.tls.identity import Identity, self_signed

__all__ = [
    "MAX_STEWARD_CA_BYTES",
    "InvalidStewardUrl",
    "KeepTls",
    "LaunchError",
    "StewardCaError",
    "StewardRequired",
    "StewardSettings",
    "describe",
    "exit_code",
    "launch_identity",
    "load_steward_ca",
    "steward_settings",
]

log = logging.getLogger("donjon.keep")

#: A CA file is one or a few PEM certificates: a few KiB.
MAX_STEWARD_CA_BYTES = 1 << 20

EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_OPERATIONAL = 3


class LaunchError(Exception):
    """Root of the failures to set up the Keep's identity that are not the Steward's (those are
    :class:`~donjon.keep.KeepError`)."""


class StewardRequired(LaunchError):
    """An attested backend without a Steward to attest to (a URL and its pinned CA)."""

    def __init__(self, backend: str, missing: str) -> None:
        self.backend = backend
        self.missing = missing
        super().__init__(
            f"backend {backend!r} is attested and needs a Steward: {missing} "
            "(an attested Keep never falls back to a self-signed certificate)"
        )


class InvalidStewardUrl(LaunchError):
    """The Steward URL is not ``https://host[:port][/path]`` (or plain HTTP without opting in)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"Steward URL {url!r}: {reason}")


class StewardCaError(LaunchError):
    """The Steward CA file cannot be read (``unreadable``) or does not hold PEM certificates."""

    def __init__(self, path: str, reason: str, *, unreadable: bool) -> None:
        self.path = path
        self.reason = reason
        self.unreadable = unreadable
        super().__init__(f"Steward CA {path}: {reason}")


def load_steward_ca(path: str | os.PathLike[str]) -> tuple[x509.Certificate, ...]:
    """The pinned Steward CA certificate(s) from a PEM file (at most :data:`MAX_STEWARD_CA_BYTES`)."""
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STEWARD_CA_BYTES + 1)
    except OSError as e:
        raise StewardCaError(name, f"cannot read: {e.strerror or e}", unreadable=True) from e
    if len(data) > MAX_STEWARD_CA_BYTES:
        raise StewardCaError(name, f"larger than {MAX_STEWARD_CA_BYTES} bytes", unreadable=False)
    try:
        certs = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as e:
        raise StewardCaError(name, f"not PEM certificates: {e}", unreadable=False) from e
    if not certs:  # pragma: no cover - cryptography raises on an empty input
        raise StewardCaError(name, "no certificate in the file", unreadable=False)
    return certs


@dataclass(frozen=True)
class StewardSettings:
    """The Steward a Keep attests to: its URL and the CA the Keep pins (DESIGN.md: the Steward's
    CA certificate is what clients and Keeps trust).

    ``retry`` bounds how long an unreachable Steward is retried at start (and at each renewal);
    ``claims_oid`` is the Steward's claims arc when known; ``allow_insecure_http`` is for a
    Steward behind a TLS proxy on the same machine (unsafe; the chain is still checked).
    """

    url: str
    ca: tuple[x509.Certificate, ...]
    ca_source: str = "(given)"
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(total=30.0))
    timeout: float = 10.0
    claims_oid: str | None = None
    allow_insecure_http: bool = False

    def endpoint(self) -> StewardEndpoint:
        return StewardEndpoint(
            url=self.url,
            ca=self.ca,
            timeout=self.timeout,
            allow_insecure_http=self.allow_insecure_http,
            ca_source=self.ca_source,
        )


class _TimedBackend:
    """The backend, with the time spent in ``evidence`` recorded (for ``-v`` and the benchmark)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.evidence_seconds = 0.0

    @property
    def name(self) -> str:
        return self._backend.name

    @property
    def attested(self) -> bool:
        return self._backend.attested

    @property
    def simulated(self) -> bool:
        return self._backend.simulated

    def probe(self) -> Availability:
        return self._backend.probe()

    def evidence(self, binding: bytes) -> Evidence:
        started = time.perf_counter()
        try:
            return self._backend.evidence(binding)
        finally:
            self.evidence_seconds += time.perf_counter() - started


class KeepTls:
    """The Keep's TLS identity and what keeps it valid; ``close()`` stops renewal (idempotent).

    ``identity`` is the holder every ``tls`` socket uses; ``attested`` the Steward's answer
    (``None`` for a self-signed ``nil`` identity); ``steward_ca`` the pinned CA (for
    ``client_auth``/``trust = "steward"``); ``timings`` seconds spent at start
    (``attest``: the whole attestation; ``evidence``: the backend's part of it).
    """

    def __init__(
        self,
        identity: Identity,
        *,
        attested: AttestedIdentity | None,
        renewer: Renewer | None,
        steward_ca: tuple[x509.Certificate, ...],
        timings: dict[str, float],
    ) -> None:
        self.identity = identity
        self.attested = attested
        self.renewer = renewer
        self.steward_ca = steward_ca
        self.timings = timings
        self._closed = False

    @property
    def self_signed(self) -> bool:
        return self.attested is None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.renewer is not None:
            self.renewer.stop(timeout=1.0)

    def __enter__(self) -> KeepTls:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def launch_identity(
    backend: Backend,
    workload_digest: bytes,
    steward: StewardSettings | None,
    *,
    warn: Callable[[str], None] | None = None,
    renew: bool = True,
    renew_fraction: float = 2 / 3,
    on_renewed: Callable[[AttestedIdentity], None] | None = None,
    on_expired: Callable[[AttestedIdentity], None] | None = None,
    attestor_options: dict[str, Any] | None = None,
) -> KeepTls:
    """The Keep's TLS identity for ``backend`` running ``workload_digest`` (see the module docstring).

    Raises :class:`StewardRequired` (an attested backend without a Steward) or a
    :class:`~donjon.keep.KeepError` (refused, unreachable after the retry budget, untrusted
    Steward, unusable chain, no evidence). ``warn`` receives the self-signed warning (default:
    the log). ``attestor_options`` go to :class:`~donjon.keep.Attestor` (tests: ``clock``...).
    """
    warn = warn or log.warning
    if steward is None:
        if backend.attested:
            raise StewardRequired(
                backend.name,
                'no Steward URL (steward = "https://..." in the config, or --steward URL)',
            )
        warn(
            f"backend {backend.name!r} and no Steward: a SELF-SIGNED TLS identity - this Keep is NOT "
            "attested and no client can verify what it runs"
        )
        return KeepTls(
            Identity(self_signed()), attested=None, renewer=None, steward_ca=(), timings={"attest": 0.0}
        )
    timed = _TimedBackend(backend)
    attestor = Attestor(
        timed,
        workload_digest,
        steward.endpoint(),
        retry=steward.retry,
        claims_oid=steward.claims_oid,
        **(attestor_options or {}),
    )
    started = time.perf_counter()
    identity = attestor.attest()
    timings = {"attest": time.perf_counter() - started, "evidence": timed.evidence_seconds}
    holder = KeepIdentity(identity.credentials())
    renewer = None
    if renew:
        renewer = Renewer(
            holder,
            attestor.attest,
            identity,
            fraction=renew_fraction,
            on_renewed=on_renewed,
            on_expired=on_expired,
        ).start()
    return KeepTls(holder, attested=identity, renewer=renewer, steward_ca=steward.ca, timings=timings)


def exit_code(error: BaseException) -> int:
    """``donjon run``'s exit code for a failure of :func:`launch_identity` (docs/run.md "Exit codes")."""
    if isinstance(error, AttestationRefused | IssuedCertificateInvalid):
        return EXIT_REFUSED
    if isinstance(error, StewardRequired | InvalidStewardUrl):
        return EXIT_USAGE
    if isinstance(error, StewardCaError):
        return EXIT_OPERATIONAL if error.unreadable else EXIT_USAGE
    # StewardUnreachable, StewardUntrusted, StewardProtocolError, EvidenceUnavailable and
    # anything else: the Keep could not get an identity for operational reasons.
    return EXIT_OPERATIONAL


def describe(error: BaseException) -> str:
    """One line for stderr naming the cause (the Steward's own check and reason for a refusal)."""
    if isinstance(error, AttestationRefused):
        return f"attestation refused by the Steward: {error.check}: {error.reason}; serving nothing"
    if isinstance(error, StewardUnreachable):
        return f"{error}; serving nothing (no self-signed fall-back)"
    if isinstance(error, KeepError):
        return f"attestation failed: {error}; serving nothing"
    return str(error)


def steward_settings(
    url: str | None,
    ca_path: str | os.PathLike[str] | None,
    *,
    base_dir: Path | None = None,
    retry: RetryPolicy | None = None,
    **kwargs: Any,
) -> StewardSettings | None:
    """:class:`StewardSettings` from a URL and a CA file (relative to ``base_dir``); ``None``
    without a URL. A URL without a CA file is a :class:`StewardCaError`: there is nothing to pin,
    and the Keep never trusts the system's CA bundle for its Steward."""
    if url is None:
        return None
    if ca_path is None:
        raise StewardCaError(
            "(none)",
            'the Steward\'s CA must be pinned: steward_ca = "FILE" in the config, or --steward-ca FILE',
            unreadable=False,
        )
    path = Path(ca_path)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    ca = load_steward_ca(path)
    options: dict[str, Any] = dict(kwargs)
    if retry is not None:
        options["retry"] = retry
    settings = StewardSettings(url=url, ca=ca, ca_source=str(path), **options)
    try:
        settings.endpoint()
    except ValueError as e:
        raise InvalidStewardUrl(url, str(e)) from e
    return settings
