"""The Keep's attestation flow: from a backend and a workload digest to a TLS identity.

DESIGN.md "One run, as data", one attempt (:meth:`Attestor.attest_once`):

1. a fresh EC P-256 key pair in memory (never written anywhere; a new one on every
   attestation, so a renewal also rotates the key);
2. ``GET <steward>/challenge``: a nonce (DESIGN.md "Freshness");
3. binding = SHA-512("donjon-keep-v1" || 0x00 || SPKI || workload digest || nonce)
   (:func:`donjon.binding.keep_binding`);
4. evidence = ``backend.evidence(binding)``; a ``nil`` backend has none and sends the
   "no evidence" statement, which a Steward refuses unless its policy allows unattested
   workloads;
5. the VCEK when the platform returned no certificates with an SEV-SNP report (an empty
   ``auxblob`` is normal on some hosts): fetched through a :class:`VcekSource` (AMD KDS,
   ``donjon.collateral.kds``) when one is given, otherwise the report goes alone and the
   Steward completes it from its own collateral. A VLEK-signed report without its VLEK
   is refused here: KDS does not serve VLEKs, so no verifier could complete it;
6. the native CSR (:func:`donjon.csr.build_csr`): evidence, certificates, digest, nonce;
7. ``POST <steward>/attest`` -> the certificate chain, or the Steward's refusal;
8. the Keep's own checks of the chain (:func:`check_issued`): signed by the pinned Steward
   CA, valid now, an X.509-SVID for TLS servers and clients, for OUR key, and (when the
   certificate carries claims) for OUR workload digest.

:meth:`Attestor.attest` retries steps 2-8 while the Steward is unreachable (transport
errors, timeouts, HTTP 5xx and 429), with exponential backoff and jitter, for at most
:attr:`RetryPolicy.total` seconds, then raises :class:`StewardUnreachable`. Every retry
starts again at step 2 (a nonce is only valid for minutes). A refusal, an untrusted
Steward, an unusable chain or a backend failure is final. There is no self-signed
fall-back: an error means the Keep serves nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon import binding as _binding
from donjon import csr as _csr
from donjon import oids
from donjon.backends.base import Backend, Evidence, EvidenceKind
from donjon.backends.errors import BackendError
from donjon.keep.errors import (
    EvidenceUnavailable,
    IssuedCertificateInvalid,
    StewardUnreachable,
)
from donjon.keep.steward_client import StewardBusy, StewardClient, StewardEndpoint
from donjon.peer.errors import PeerRefused
from donjon.peer.verify import PeerExpectation, PeerIdentity, verify_peer
from donjon.tls.identity import Credentials
from donjon.tls.spiffe import SpiffeId

__all__ = [
    "AttestedIdentity",
    "Attestor",
    "KdsVcekSource",
    "RetryPolicy",
    "VcekSource",
    "attest",
    "check_issued",
]

log = logging.getLogger("donjon.keep")

# AMD SEV-SNP ABI specification (pub. 56860), Table 23 "ATTESTATION_REPORT Structure":
# KEY_INFO at 0x48, bits 4:2 SIGNING_KEY (0 VCEK, 1 VLEK, 7 none).
_SNP_KEY_INFO = 0x48
_SNP_SIGNING_VLEK = 1


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff while the Steward is unreachable: ``initial`` * ``multiplier`` ** n, capped at
    ``max_delay``, +- ``jitter`` (a fraction), for at most ``total`` seconds in all."""

    initial: float = 0.5
    multiplier: float = 2.0
    max_delay: float = 10.0
    total: float = 60.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.multiplier < 1 or self.max_delay < self.initial or self.total < 0:
            raise ValueError(
                "RetryPolicy needs initial > 0, multiplier >= 1, max_delay >= initial, total >= 0"
            )
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1-based)."""
        base = min(self.initial * self.multiplier ** (attempt - 1), self.max_delay)
        return base * (1 + random.uniform(-self.jitter, self.jitter))  # jitter: not a secret


class VcekSource(Protocol):
    """Where a Keep gets the VCEK of its chip when the platform did not return it."""

    def vcek(self, report: bytes) -> bytes:
        """The DER VCEK that signs ``report`` (raises ``CollateralError`` if it cannot)."""
        ...


class KdsVcekSource:
    """:class:`VcekSource` over AMD KDS (``donjon.collateral.kds.KdsClient``, cache first)."""

    def __init__(self, kds: Any) -> None:
        self.kds = kds

    def vcek(self, report: bytes) -> bytes:
        from donjon.collateral.kds import VcekRequest

        cert: x509.Certificate = self.kds.vcek(VcekRequest.from_report(report))
        return cert.public_bytes(serialization.Encoding.DER)


@dataclass(frozen=True)
class AttestedIdentity:
    """What one successful attestation produced: the key, the chain, and what it says."""

    key: ec.EllipticCurvePrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = field(repr=False)
    spiffe_id: SpiffeId
    serial: str
    not_before: datetime
    not_after: datetime
    #: When the Keep received the chain (renewal is scheduled from here, not from the
    #: Steward's back-dated notBefore).
    obtained_at: datetime
    workload_digest: bytes
    backend: str
    evidence_kind: str
    simulated: bool
    unattested: bool
    claims: Mapping[str, Any] | None
    steward_url: str

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def lifetime(self) -> float:
        """Seconds from receipt to expiry."""
        return (self.not_after - self.obtained_at).total_seconds()

    def renew_at(self, fraction: float = 2 / 3) -> datetime:
        """When to renew: ``fraction`` of the way from receipt to expiry."""
        return self.obtained_at + (self.not_after - self.obtained_at) * fraction

    def description(self) -> str:
        marks = []
        if self.simulated:
            marks.append("SIMULATED TEE")
        if self.unattested:
            marks.append("UNATTESTED")
        extra = f" [{', '.join(marks)}]" if marks else ""
        return (
            f"attested {self.spiffe_id} ({self.backend}, {self.evidence_kind}){extra}, "
            f"issued by the Steward at {self.steward_url}, serial {self.serial}, "
            f"until {self.not_after.isoformat()}"
        )

    def credentials(self) -> Credentials:
        """The TLS identity (``donjon.tls.Identity`` holds it; ``replace`` it on renewal)."""
        return Credentials(
            chain=self.chain, key=self.key, attested=not self.unattested, description=self.description()
        )

    def summary(self) -> dict[str, Any]:
        return {
            "spiffe_id": str(self.spiffe_id),
            "serial": self.serial,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "workload_digest": self.workload_digest.hex(),
            "backend": self.backend,
            "evidence_kind": self.evidence_kind,
            "simulated": self.simulated,
            "unattested": self.unattested,
            "claims": dict(self.claims) if self.claims is not None else None,
            "steward": self.steward_url,
        }


def _spki(key: ec.EllipticCurvePrivateKey | Any) -> bytes:
    data: bytes = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return data


def check_issued(
    chain: tuple[x509.Certificate, ...],
    key: ec.EllipticCurvePrivateKey,
    ca: tuple[x509.Certificate, ...],
    *,
    workload_digest: bytes,
    at: datetime,
    claims_oid: str | None = None,
    ca_source: str | None = None,
) -> PeerIdentity:
    """The Keep's checks of the chain its Steward returned (step 8 of the module docstring).

    The same verification a relying party runs (:func:`donjon.peer.verify.verify_peer`, as a
    TLS server; simulated and unattested identities are accepted here, the Steward decided),
    then: the subject key is the Keep's, and claims, if any, carry the Keep's workload digest.
    ``ca_source`` names where the pinned CA came from (a file), for "not issued by the CA in FILE".
    """
    expectation = PeerExpectation(
        role="server", claims_oid=claims_oid, allow_simulated=True, allow_unattested=True
    )
    try:
        identity = verify_peer(chain, ca, expectation, at=at, anchors_source=ca_source)
    except PeerRefused as e:
        raise IssuedCertificateInvalid(e.check, e.reason) from e
    if _spki(identity.chain[0]) != _spki(key):
        raise IssuedCertificateInvalid("key", "the certificate is not for this Keep's key")
    got = identity.workload_digest
    if got is not None and got != workload_digest:
        raise IssuedCertificateInvalid(
            "workload_digest",
            f"the certificate names workload {got.hex()}, this Keep runs {workload_digest.hex()}",
        )
    return identity


class Attestor:
    """Attests one workload on one backend to one Steward; :meth:`attest` as often as needed.

    ``vcek_source`` completes SEV-SNP reports the platform returned without certificates.
    ``claims_oid`` is the Steward's claims arc, if known (otherwise recognised by content).
    ``clock``, ``sleep`` and ``monotonic`` are seams for tests.
    """

    def __init__(
        self,
        backend: Backend,
        workload_digest: bytes,
        endpoint: StewardEndpoint,
        *,
        retry: RetryPolicy | None = None,
        vcek_source: VcekSource | None = None,
        claims_oid: str | None = None,
        package: bytes | None = None,
        clock: Callable[[], datetime] = _utcnow,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(workload_digest) != _binding.WORKLOAD_DIGEST_SIZE:
            raise ValueError(f"a workload digest is {_binding.WORKLOAD_DIGEST_SIZE} bytes")
        self.backend = backend
        self.workload_digest = bytes(workload_digest)
        self.endpoint = endpoint
        self.retry = retry or RetryPolicy()
        self.vcek_source = vcek_source
        self.claims_oid = claims_oid
        #: DER ``PackageEvidence`` of the signed package run (``donjon run oci://``), sent along.
        self.package = package
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic
        #: Attempts made by the last :meth:`attest` call (for logs and tests).
        self.attempts = 0

    def attest(self) -> AttestedIdentity:
        """Attest, retrying while the Steward is unreachable (bounded); see the module docstring."""
        started = self._monotonic()
        self.attempts = 0
        while True:
            self.attempts += 1
            remaining = self.retry.total - (self._monotonic() - started)
            timeout = min(self.endpoint.timeout, max(remaining, 0.5))
            endpoint = dataclasses.replace(self.endpoint, timeout=timeout)
            try:
                with StewardClient(endpoint) as client:
                    return self.attest_once(client)
            except StewardBusy as e:
                elapsed = self._monotonic() - started
                wait = self.retry.delay(self.attempts)
                if elapsed + wait > self.retry.total:
                    raise StewardUnreachable(
                        self.endpoint.url, e.reason, attempts=self.attempts, elapsed=elapsed
                    ) from e
                log.warning(
                    "Steward unreachable (attempt %d, %s); retrying in %.1f s",
                    self.attempts,
                    e.reason,
                    wait,
                    extra={"fields": {"event": "attest_retry", "attempt": self.attempts, "error": e.reason}},
                )
                self._sleep(wait)

    def _evidence(self, binding: bytes) -> tuple[x509.ObjectIdentifier, bytes, tuple[bytes, ...], str]:
        """The CSR statement (type, evidence) and certificates for ``binding``."""
        if not self.backend.attested:
            log.warning(
                "backend %s has NO evidence: asking the Steward for an UNATTESTED identity "
                "(refused unless its policy sets allow_unattested)",
                self.backend.name,
            )
            return oids.EVIDENCE_NONE, b"", (), "none"
        try:
            evidence = self.backend.evidence(binding)
        except BackendError as e:
            raise EvidenceUnavailable(e.backend, e.reason, fix=e.fix) from e
        if evidence.binding != binding:
            raise EvidenceUnavailable(self.backend.name, "the evidence does not carry the binding asked for")
        certs = evidence.certs
        if evidence.kind == EvidenceKind.SNP_REPORT and not certs:
            certs = self._complete_snp(evidence)
        return oids.EVIDENCE_OID_BY_KIND[evidence.kind.value], evidence.data, certs, evidence.kind.value

    def _complete_snp(self, evidence: Evidence) -> tuple[bytes, ...]:
        """Certificates for an SEV-SNP report that came without any (step 5)."""
        report = evidence.data
        if len(report) >= _SNP_KEY_INFO + 4:
            key_info = int.from_bytes(report[_SNP_KEY_INFO : _SNP_KEY_INFO + 4], "little")
            if (key_info >> 2) & 0x7 == _SNP_SIGNING_VLEK:
                raise EvidenceUnavailable(
                    evidence.backend,
                    "the SEV-SNP report is signed by a VLEK but the platform returned no VLEK "
                    "certificate, and a VLEK cannot be fetched from AMD KDS (AMD issues it to the "
                    "cloud provider)",
                    fix="the host must supply the VLEK in the extended report's certificate table "
                    "(auxblob); ask the cloud provider to install it (snphost / SNP_SET_CONFIG)",
                )
        if self.vcek_source is None:
            log.info("the platform returned no VCEK; sending the report alone for the Steward to complete")
            return ()
        try:
            vcek = self.vcek_source.vcek(report)
        except Exception as e:  # a fetch failure is not fatal: the Steward may hold the VCEK
            log.warning("could not fetch the VCEK (%s: %s); sending the report alone", type(e).__name__, e)
            return ()
        return (vcek,)

    def attest_once(self, client: StewardClient) -> AttestedIdentity:
        """One attempt, steps 1-8 of the module docstring, without retries."""
        key = ec.generate_private_key(ec.SECP256R1())
        spki = _spki(key)
        challenge = client.challenge()
        # StewardClient.challenge bounds the nonce to 1..256 bytes, as keep_binding requires.
        binding = _binding.keep_binding(spki, self.workload_digest, challenge.nonce)
        statement, data, certs, kind = self._evidence(binding)
        csr_der = _csr.build_csr(
            key,
            statements=[(statement, data)],
            workload_digest=self.workload_digest,
            nonce=challenge.nonce,
            certs=certs[: _csr.MAX_CERTS],
            package=self.package,
        )
        chain = client.attest(csr_der)
        now = self._clock()
        identity = check_issued(
            chain,
            key,
            self.endpoint.ca,
            workload_digest=self.workload_digest,
            at=now,
            claims_oid=self.claims_oid,
            ca_source=self.endpoint.ca_source,
        )
        result = AttestedIdentity(
            key=key,
            chain=chain,
            spiffe_id=identity.spiffe_id,
            serial=identity.serial,
            not_before=identity.not_before,
            not_after=identity.not_after,
            obtained_at=now,
            workload_digest=self.workload_digest,
            backend=self.backend.name,
            evidence_kind=kind,
            simulated=identity.simulated,
            unattested=identity.unattested,
            claims=dict(identity.claims.values) if identity.claims is not None else None,
            steward_url=self.endpoint.url,
        )
        log.info(
            "attested: %s",
            result.description(),
            extra={"fields": {"event": "attested", **result.summary()}},
        )
        return result


def attest(
    backend: Backend,
    workload_digest: bytes,
    steward_url: str,
    steward_ca: tuple[x509.Certificate, ...] | bytes,
    **kwargs: Any,
) -> AttestedIdentity:
    """Attest once (with bounded retries) and return the identity: the single entry point.

    ``steward_ca`` is the pinned Steward CA (certificates, or PEM bytes). ``kwargs``:
    ``allow_insecure_http``, ``tls_anchors``, ``timeout`` (for :class:`StewardEndpoint`) and
    ``retry``, ``vcek_source``, ``claims_oid``, ``clock``, ``sleep``, ``monotonic`` (for
    :class:`Attestor`). Raises a :class:`~donjon.keep.errors.KeepError`.
    """
    endpoint_args = {
        k: kwargs.pop(k) for k in ("allow_insecure_http", "tls_anchors", "timeout") if k in kwargs
    }
    if isinstance(steward_ca, bytes):
        endpoint = StewardEndpoint.from_pem(steward_url, steward_ca, **endpoint_args)
    else:
        endpoint = StewardEndpoint(url=steward_url, ca=tuple(steward_ca), **endpoint_args)
    return Attestor(backend, workload_digest, endpoint, **kwargs).attest()
