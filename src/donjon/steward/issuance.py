"""Issuance: the Steward's checks, in order, and the log entry for every decision.

DESIGN.md "What the Steward checks", fail closed, each check named in the refusal:

1. ``csr.*`` — size, structure (every field read with limits, in linear time),
   the key (type and size), then the CSR's signature by it; native CSRs: one
   statement of a known type (``evidence.count``, ``evidence.unknown_type``), a
   workload digest;
2. ``nonce.*`` — a valid, unexpired Steward nonce (native CSRs only; its MAC
   before its times). Enarx CSRs have none: ``policy.legacy`` takes its place;
3. ``evidence.*`` / ``collateral.*`` — the evidence, through the attestation
   library, at the current time, with the configured roots and the Steward's
   own current collateral (a Keep's collateral only if at least as new; a
   bounded, logged grace period only when the policy grants one);
4. ``binding`` — report data is the binding of this CSR's key, workload digest and nonce
   (legacy: Enarx's key hash);
5. ``policy.*`` — the policy: platform rules, then the workload's identity.

Only then is a certificate signed, and it is returned only after its log entry
is committed.

Every request ends in exactly one accounted outcome (docs/steward.md "Outcomes").
Steps 1 and 2 are cheap and bounded (about a millisecond of CPU for any CSR up to
the size limit); a request they refuse — malformed or unauthenticated — is counted
in ``donjon_steward_rejected_total{reason}`` and never written to the log, so a
flood of garbage costs no disk. A request that passed them is *admitted*: its
decision — issued, or refused with the check — is one log entry. A fault of the
Steward's own becomes the refusal ``server.error`` naming the exception's type,
accounted the same way (logged if admitted and the log can be written).

Issuance is two steps so that a server can run them on different threads:
:meth:`Steward.prepare` (every check, then the signature: CPU work) and
:meth:`Steward.commit` (the log append: mostly waiting for the database).
:meth:`Steward.attest` is both in one call.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time as _time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from cryptography.hazmat.primitives import serialization

from donjon import binding as _binding
from donjon.attestation.claims import Claims, VerifiedEvidence
from donjon.attestation.errors import AttestationError, CollateralError, MalformedEvidence
from donjon.attestation.pki import load_crl
from donjon.attestation.verify import Collateral, TrustRoots, verify_evidence
from donjon.csr import CsrError, LegacyCsr, NativeCsr, parse_legacy_csr, parse_native_csr
from donjon.hsm import HsmError
from donjon.steward.ca import CertificateAuthority, Issued
from donjon.steward.collateral import CollateralSet, CollateralSource, collateral_set
from donjon.steward.dice_claims import dice_entries
from donjon.steward.errors import Refused
from donjon.steward.log import LogEntry, LogStore
from donjon.steward.metrics import Metrics
from donjon.steward.nonce import NonceAuthority
from donjon.steward.package_admission import check_package, package_entries
from donjon.steward.policy import Decision, Policy, load_policy

__all__ = [
    "EvidenceVerifier",
    "Outcome",
    "PolicyHolder",
    "Prepared",
    "Steward",
    "der_sequence",
]


class EvidenceVerifier(Protocol):
    """The seam to the attestation library (:func:`donjon.attestation.verify.verify_evidence`)."""

    def __call__(
        self,
        kind: str,
        evidence: bytes,
        *,
        certs: Sequence[bytes],
        collateral: Collateral | None,
        roots: TrustRoots,
        at: datetime,
        options: object | None = None,
    ) -> VerifiedEvidence: ...


#: A parsed CSR (native or legacy) between admission and the decision.
_C = TypeVar("_C")

#: Evidence kinds whose binding is a vTPM quote's qualifying data, not the hardware report's data.
_VTPM_KINDS = ("azure-snp-vtpm", "azure-tdx-vtpm")


def _hardware_kind(kind: str, evidence: bytes) -> tuple[str, bytes | None]:
    """The kind whose collateral verifies ``kind``, and the hardware evidence as a (untrusted) hint."""
    if kind not in _VTPM_KINDS:
        return kind, evidence
    from donjon.attestation.azure import parse_azure_evidence
    from donjon.attestation.hcl import parse_hcl_report

    tee = "sev-snp" if kind == "azure-snp-vtpm" else "tdx"
    try:
        parsed = parse_azure_evidence(evidence, tee)
        hint = parse_hcl_report(parsed.hcl_report).hw_report if tee == "sev-snp" else parsed.td_quote
    except AttestationError:
        hint = None  # the verifier refuses it below, with the precise reason
    return ("snp-report" if tee == "sev-snp" else "tdx-quote"), hint


def _default_options(kind: str, policy: Policy) -> object | None:
    """Strict verifier options; the policy may only relax what it names (and docs call unsafe)."""
    if kind in _VTPM_KINDS:
        from donjon.attestation.azure import AzureOptions

        hardware = "snp-report" if kind == "azure-snp-vtpm" else "tdx-quote"
        inner = _default_options(hardware, policy)
        if kind == "azure-snp-vtpm":
            return AzureOptions(snp=inner)
        return AzureOptions(tdx=inner if isinstance(inner, dict) else {})
    if kind == "snp-report":
        from donjon.attestation.snp import SnpOptions

        # The Steward's collateral for SNP is AMD's ARK-signed CRL: refuse without it.
        return SnpOptions(require_crl=True)
    if kind in ("tdx-quote", "sgx-quote"):
        rule = policy.platforms.get("tdx" if kind == "tdx-quote" else "sgx")
        if rule is not None and rule.allow_missing_qe_identity:
            return {"allow_missing_qe_identity": True}
        return {}
    if kind == "cca-token":
        # No public vendor root exists for CCA platform keys: the policy pins them. With none
        # pinned there is nothing to verify against: refused, saying where keys go.
        cca = policy.platforms.get("cca")
        if cca is None or not cca.platform_keys:
            raise Refused(
                "evidence.cca.platform.key",
                "no CCA platform key (CPAK) is pinned: list its PEM or JWK file in the policy's "
                "[platform.cca] platform_keys",
            )
        return {"platform_keys": cca.platform_keys}
    return None


def der_sequence(items: Sequence[bytes]) -> bytes:
    """DER ``SEQUENCE { items... }`` of already-encoded elements (Enarx's certificate chain answer)."""
    body = b"".join(items)
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return b"\x30" + length + body


class PolicyHolder:
    """The policy in force; ``reload`` swaps it atomically, keeping the old one if the new one is bad."""

    def __init__(self, path: str, policy: Policy | None = None) -> None:
        self.path = path
        self._policy = policy if policy is not None else load_policy(path)
        self._lock = threading.Lock()

    @property
    def current(self) -> Policy:
        return self._policy

    def reload(self) -> Policy:
        """Load the file again; raise :class:`ConfigError` (old policy kept) if it is invalid."""
        new = load_policy(self.path)
        with self._lock:
            self._policy = new
        return new


@dataclass(frozen=True)
class Prepared:
    """A certificate that passed every check and is signed, but not yet logged: not to be handed out.

    Only :meth:`Steward.commit` turns it into an :class:`Outcome`.
    """

    issued: Issued
    decision: Decision
    kind: str
    record: dict[str, Any]
    endpoint: str
    started: float
    #: The record as the checks left it, before the certificate's fields (for a late refusal).
    checked: dict[str, Any]
    #: ``time.monotonic()`` past which the certificate must not be logged as issued.
    deadline: float | None = None


@dataclass(frozen=True)
class Outcome:
    issued: Issued
    ca_der: bytes
    ca_pem: bytes
    entry: LogEntry
    decision: Decision

    @property
    def pem_chain(self) -> bytes:
        """The issued certificate, then the CA (RFC 8555 ``application/pem-certificate-chain``)."""
        return self.issued.certificate.public_bytes(serialization.Encoding.PEM) + self.ca_pem

    @property
    def enarx_chain(self) -> bytes:
        """Enarx's answer: DER ``SEQUENCE OF Certificate``, issuer first."""
        return der_sequence([self.ca_der, self.issued.der])


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Steward:
    """The checks and the issuance, independent of HTTP."""

    def __init__(
        self,
        *,
        ca: CertificateAuthority,
        policy: PolicyHolder,
        nonces: NonceAuthority,
        roots: TrustRoots,
        collateral: CollateralSource,
        log: LogStore,
        verifier: EvidenceVerifier = verify_evidence,
        options: Callable[[str, Policy], object | None] = _default_options,
        require_collateral: frozenset[str] = frozenset({"snp-report", "tdx-quote", "sgx-quote"}),
        clock: Callable[[], datetime] = _utcnow,
        metrics: Metrics | None = None,
    ) -> None:
        self.ca = ca
        self.policy = policy
        self.nonces = nonces
        self.roots = roots
        self.collateral = collateral
        self.log = log
        self.verifier = verifier
        self.options = options
        self.require_collateral = require_collateral
        self.clock = clock
        self.metrics = metrics if metrics is not None else Metrics()

    def close(self) -> None:
        """Close the log (and anything else the Steward holds); closing twice is harmless."""
        self.log.close()
        self.ca.close()  # a CA key in a PKCS#11 token: its session
        closer = getattr(self.collateral, "close", None)
        if callable(closer):
            closer()

    # --- challenge ---

    def challenge(self) -> tuple[bytes, datetime]:
        now = self.clock()
        nonce = self.nonces.issue(now.timestamp())
        return nonce, now + timedelta(seconds=self.nonces.lifetime)

    # --- the checks ---

    def _verify(
        self,
        kind: str,
        evidence: bytes,
        certs: Sequence[bytes],
        keep: Collateral | None,
        now: datetime,
        policy: Policy,
        record: dict[str, Any],
    ) -> VerifiedEvidence:
        # Azure vTPM evidence is verified with its hardware kind's collateral (AMD's CRL, Intel's TCB info).
        hardware, hint = _hardware_kind(kind, evidence)
        own = self.collateral.current(hardware, hint)
        # Certificates alone (a cert_chain) are not revocation or TCB collateral.
        dated = own is not None and own.issued_at is not None
        keep_set: CollateralSet | None = collateral_set(keep) if keep is not None else None
        candidates: list[tuple[str, Collateral | None, datetime]] = []
        if keep_set is not None and keep_set.current_at(now) and own is not None and dated:
            # A Keep's collateral replaces the Steward's only when it is at least as new
            # (and then only if it verifies: the verifier checks every signature). Without
            # collateral of its own the Steward has nothing to compare with: refused below.
            assert own.issued_at is not None
            if keep_set.issued_at is not None and keep_set.issued_at >= own.issued_at:
                candidates.append(("keep", _overlay(keep_set.collateral, own), now))
        if own is not None and dated:
            if own.current_at(now):
                candidates.append(("steward", own.collateral, now))
            elif (
                policy.collateral_grace > 0
                and own.next_update is not None
                and own.issued_at is not None
                and now >= own.issued_at
                and now - own.next_update <= timedelta(seconds=policy.collateral_grace)
            ):
                # Verify as of the last moment the collateral was current: the grace
                # the policy grants, bounded and recorded in the log entry.
                candidates.append(("steward-grace", own.collateral, own.next_update))
        if not candidates:
            if hardware in self.require_collateral:
                check = "collateral.missing" if own is None or not dated else "collateral.stale"
                reason = (
                    f"the Steward holds no current CRL or TCB collateral for {hardware}"
                    if own is None or not dated
                    else f"the Steward's collateral for {hardware} is not current (next update "
                    f"{own.next_update.isoformat() if own.next_update else '?'})"
                )
                raise Refused(check, reason)
            candidates.append(("none", None, now))
        last: AttestationError | None = None
        for label, coll, at in candidates:
            try:
                verified = self.verifier(
                    kind,
                    evidence,
                    certs=certs,
                    collateral=coll,
                    roots=self.roots,
                    at=at,
                    options=self.options(kind, policy),
                )
            except CollateralError as e:
                last = e
                if label == "keep":
                    continue
                raise _evidence_refusal(e) from e
            except AttestationError as e:
                raise _evidence_refusal(e) from e
            record["collateral"] = label
            if label == "steward-grace":
                record["collateral_grace_until"] = (
                    at + timedelta(seconds=policy.collateral_grace)
                ).isoformat()
            return verified
        assert last is not None
        raise _evidence_refusal(last)

    def attest(self, body: bytes) -> Outcome:
        """A native Donjon CSR (DER) -> certificate, or :class:`Refused`."""
        return self.commit(self.prepare(body))

    def attest_legacy(self, body: bytes) -> Outcome:
        """An Enarx Keep CSR (DER) -> certificate, or :class:`Refused`."""
        return self.commit(self.prepare_legacy(body))

    def prepare(self, body: bytes, *, deadline: float | None = None) -> Prepared:
        """Every check of a native CSR, then the signed certificate (not logged yet), or :class:`Refused`.

        A refusal is accounted before it is raised (see :meth:`_account`): logged when the
        request passed the ``csr.*`` and ``nonce.*`` checks, counted in metrics otherwise.
        ``deadline`` (``time.monotonic()``): past it, the request is refused ``server.timeout``
        instead of being worked on (its client has been answered already).
        """
        return self._prepare(
            body, "attest", {"path": "native"}, self.admit_native, self.decide_native, deadline
        )

    def prepare_legacy(self, body: bytes, *, deadline: float | None = None) -> Prepared:
        """:meth:`prepare` for an Enarx Keep CSR."""
        return self._prepare(
            body,
            "legacy",
            {"path": "legacy-enarx", "fresh": False},
            self.admit_legacy,
            self.decide_legacy,
            deadline,
        )

    def _prepare(
        self,
        body: bytes,
        endpoint: str,
        record: dict[str, Any],
        admit: Callable[[bytes, dict[str, Any], datetime, Policy], _C],
        decide: Callable[[_C, dict[str, Any], datetime, Policy], tuple[bytes, Decision, Claims | None, str]],
        deadline: float | None,
    ) -> Prepared:
        started = _time.perf_counter()
        admitted = False
        # The record as the checks left it; a refusal after signing began is logged from it,
        # so that no refused entry carries a certificate's fields.
        checked: dict[str, Any] | None = None
        try:
            _check_deadline(deadline)
            now = self.clock()
            # Requests in flight keep the policy they started with (a reload swaps it).
            policy = self.policy.current
            parsed = admit(body, record, now, policy)
            admitted = True
            spki, decision, claims, kind = decide(parsed, record, now, policy)
            _check_deadline(deadline)
            checked = dict(record)
            issued = self._sign(spki, decision, claims, record, now)
        except Refused as e:
            try:
                # (``raise`` keeps the __cause__ the refusal already has.)
                raise self._account(e, record if checked is None else checked, admitted)
            finally:
                self.metrics.observe(endpoint, _time.perf_counter() - started)
        except Exception as e:
            # A fault of the Steward's own (a bug, a resource): still one accounted outcome,
            # named after the exception's type; the client learns nothing more.
            fault = _fault(e)
            fault.__cause__ = e
            try:
                raise self._account(fault, record if checked is None else checked, admitted)
            finally:
                self.metrics.observe(endpoint, _time.perf_counter() - started)
        except BaseException:
            self.metrics.observe(endpoint, _time.perf_counter() - started)
            raise
        return Prepared(issued, decision, kind, record, endpoint, started, checked, deadline)

    def commit(self, prepared: Prepared) -> Outcome:
        """Log the decision; the certificate may leave only once this returns (the entry is durable).

        Past the request's deadline the certificate is not logged as issued but refused
        ``server.timeout`` (logged): its client was answered 503 and will never receive it.
        """
        try:
            try:
                _check_deadline(prepared.deadline)
            except Refused as e:
                raise self._account(e, dict(prepared.checked), True)  # noqa: B904
            try:
                # Every value in the record is already JSON (claims went through _jsonable).
                entry = self.log.append(prepared.record, self.clock().isoformat())
            except Exception as e:
                raise self._log_fault(e) from e
        finally:
            self.metrics.observe(prepared.endpoint, _time.perf_counter() - prepared.started)
        self.metrics.issued(prepared.record["path"], prepared.kind)
        return Outcome(
            issued=prepared.issued,
            ca_der=self.ca.cert_der,
            ca_pem=self.ca.cert_pem,
            entry=entry,
            decision=prepared.decision,
        )

    def _account(self, e: Refused, record: dict[str, Any], admitted: bool) -> Refused:
        """The one outcome of a refused request (docs/steward.md "Outcomes").

        Admitted (its CSR well-formed and signed, its nonce valid — or, legacy, a signed
        Enarx CSR the policy accepts): an entry in the decision log. Otherwise only a
        count in ``donjon_steward_rejected_total``: a flood of garbage costs no write.
        Returns the refusal to raise — ``server.error`` when the log cannot be written.
        """
        if not admitted:
            self.metrics.rejected(e.check)
            return e
        record.update(decision="refused", check=e.check, reason=e.reason)
        if e.details:
            record["details"] = _jsonable(e.details)
        try:
            self.log.append(record, self.clock().isoformat())
        except Exception as err:
            fault = self._log_fault(err)
            fault.__cause__ = err
            return fault
        e.logged = True
        self.metrics.refused(e.check)
        return e

    def _log_fault(self, e: BaseException) -> Refused:
        if isinstance(e, HsmError):  # the log key's token cannot sign the checkpoint
            self.metrics.rejected(TOKEN_CHECK)
            return _fault(e)
        self.metrics.rejected("server.error")
        return Refused(
            "server.error",
            f"the decision log could not be written ({type(e).__name__}); nothing was issued",
            status=500,
        )

    def _common(self, record: dict[str, Any], policy: Policy, body: bytes) -> None:
        record["policy_digest"] = policy.digest
        record["csr_sha256"] = hashlib.sha256(body).hexdigest()

    def check_native(
        self, body: bytes, record: dict[str, Any], now: datetime, *, check_nonce: bool = True
    ) -> tuple[bytes, Decision, Claims | None, str]:
        """Every check of a native CSR, without issuing; ``check_nonce=False`` only for ``policy test``."""
        policy = self.policy.current
        csr = self.admit_native(body, record, now, policy, check_nonce=check_nonce)
        return self.decide_native(csr, record, now, policy)

    def admit_native(
        self, body: bytes, record: dict[str, Any], now: datetime, policy: Policy, *, check_nonce: bool = True
    ) -> NativeCsr:
        """Steps 1 and 2 (``csr.*``, ``nonce.*``): cheap, bounded, and never logged when they refuse.

        Everything read from the CSR is checked here, before the nonce; the nonce's MAC
        before its times.
        """
        self._common(record, policy, body)
        csr = _parse(parse_native_csr, body)
        record["csr_key"] = csr.key_sha256.hex()
        record["workload_digest"] = csr.workload_digest.hex() if csr.workload_digest is not None else None
        statement = _one_statement(csr)
        assert statement.kind is not None and statement.evidence is not None
        record["evidence_kind"] = statement.kind
        record["evidence_sha256"] = hashlib.sha256(statement.evidence).hexdigest()
        if csr.workload_digest is None:
            raise Refused("csr.workload_digest", "the CSR carries no workload digest", status=400)
        if check_nonce:
            nonce_time = self.nonces.check(csr.nonce, now.timestamp())
            record["nonce_time"] = datetime.fromtimestamp(nonce_time, UTC).isoformat()
            record["fresh"] = True
        else:
            record["nonce"] = "not checked (recorded evidence)"
            if csr.nonce is None:
                raise Refused("nonce.missing", "the CSR carries no Steward nonce", status=400)
        return csr

    def decide_native(
        self, csr: NativeCsr, record: dict[str, Any], now: datetime, policy: Policy
    ) -> tuple[bytes, Decision, Claims | None, str]:
        """Steps 3 to 5 (evidence, binding, policy) of an admitted native CSR: every refusal is logged."""
        statement = _one_statement(csr)
        kind = statement.kind
        assert kind is not None and statement.evidence is not None and csr.workload_digest is not None
        claims: Claims | None
        if kind == "none":
            claims = None
            record["unattested"] = True
        else:
            verified = self._verify(kind, statement.evidence, csr.certs, None, now, policy, record)
            claims = verified.claims
            record["claims"] = _jsonable(claims.as_dict())
            assert csr.nonce is not None
            try:
                if kind in _VTPM_KINDS:
                    # Behind a vTPM the binding is in the TPM quote's qualifying data (binding.py).
                    _binding.check_vtpm_binding(
                        claims.report_data, csr.spki_der, csr.workload_digest, csr.nonce
                    )
                else:
                    _binding.check_binding(claims.report_data, csr.spki_der, csr.workload_digest, csr.nonce)
            except _binding.BindingMismatch as e:
                raise Refused(
                    "binding", "the evidence does not bind this CSR's key, workload digest and nonce"
                ) from e
        package = check_package(csr, record)
        decision = policy.decide(
            claims,
            csr.workload_digest,
            package_signer=package.signer if package is not None else None,
            package_name=package.reference if package is not None else None,
        )
        return csr.spki_der, decision, claims, kind

    def check_legacy(
        self, body: bytes, record: dict[str, Any], now: datetime
    ) -> tuple[bytes, Decision, Claims | None, str]:
        """Every check of an Enarx CSR, without issuing."""
        policy = self.policy.current
        return self.decide_legacy(self.admit_legacy(body, record, now, policy), record, now, policy)

    def admit_legacy(self, body: bytes, record: dict[str, Any], now: datetime, policy: Policy) -> LegacyCsr:
        """``csr.*`` of an Enarx CSR, and whether the policy takes them at all (``policy.legacy``):
        an Enarx CSR has no nonce, so with legacy CSRs off it is unauthenticated and not logged."""
        self._common(record, policy, body)
        csr = _parse(parse_legacy_csr, body)
        record["csr_key"] = csr.key_sha256.hex()
        record["evidence_kind"] = csr.kind
        record["evidence_sha256"] = hashlib.sha256(csr.evidence).hexdigest()
        record["workload_digest"] = None
        if not policy.allow_legacy_enarx:
            raise Refused(
                "policy.legacy", "the policy does not accept legacy Enarx CSRs (allow_legacy_enarx)"
            )
        return csr

    def decide_legacy(
        self, csr: LegacyCsr, record: dict[str, Any], now: datetime, policy: Policy
    ) -> tuple[bytes, Decision, Claims | None, str]:
        """Evidence, binding and policy of an admitted Enarx CSR: every refusal is logged."""
        keep = _legacy_collateral(csr)
        certs = csr.certs if csr.kind == "snp-report" else ()
        verified = self._verify(csr.kind, csr.evidence, certs, keep, now, policy, record)
        claims = verified.claims
        record["claims"] = _jsonable(claims.as_dict())
        try:
            _binding.check_legacy_binding(csr.kind, claims.report_data, csr.spki_der)
        except _binding.BindingMismatch as e:
            raise Refused("binding", "the evidence does not carry Enarx's hash of this CSR's key") from e
        decision = policy.decide_legacy(claims)
        return csr.spki_der, decision, claims, csr.kind

    def check_evidence(
        self,
        kind: str,
        evidence: bytes,
        certs: Sequence[bytes],
        record: dict[str, Any],
        now: datetime,
        *,
        workload_digest: bytes | None,
        legacy: bool,
    ) -> tuple[Decision, Claims]:
        """Recorded evidence without a CSR (``policy test``): evidence and policy; no key, so no binding."""
        policy = self.policy.current
        record["policy_digest"] = policy.digest
        record["evidence_kind"] = kind
        record["evidence_sha256"] = hashlib.sha256(evidence).hexdigest()
        record["binding"] = "not checked (no CSR)"
        verified = self._verify(kind, evidence, certs, None, now, policy, record)
        claims = verified.claims
        record["claims"] = _jsonable(claims.as_dict())
        if legacy:
            return policy.decide_legacy(claims), claims
        return policy.decide(claims, workload_digest), claims

    def _sign(
        self,
        spki_der: bytes,
        decision: Decision,
        claims: Claims | None,
        record: dict[str, Any],
        now: datetime,
    ) -> Issued:
        summary: dict[str, Any] = {
            "tee": claims.tee.value if claims is not None else "none",
            "measurement": claims.measurement.hex() if claims is not None else None,
            "tcb_status": claims.tcb_status.value if claims is not None else None,
            "workload_digest": record.get("workload_digest"),
            "simulated": decision.simulated,
            "fresh": decision.fresh,
        }
        if claims is not None and "vtpm" in claims.raw:
            # Behind a paravisor's vTPM (Azure): the measurement is the paravisor's, the guest's
            # boot is in PCRs. Relying parties must be able to tell this from bare SEV-SNP/TDX.
            summary["vtpm"] = True
        digest = record.get("workload_digest")
        issued = self.ca.issue(
            spki_der,
            spiffe_path=decision.spiffe_path,
            dns_names=decision.dns_names,
            ip_addresses=decision.ip_addresses,
            lifetime=decision.lifetime,
            now=now,
            claims=summary,
            dice=dice_entries(
                claims, bytes.fromhex(digest) if isinstance(digest, str) else None, decision.simulated
            )
            + package_entries(record.get("package"), decision),
        )
        record.update(
            decision="issued",
            serial=issued.serial,
            spiffe_id=self.ca.spiffe_id(decision.spiffe_path),
            dns_names=list(decision.dns_names),
            ip_addresses=[str(a) for a in decision.ip_addresses],
            not_after=issued.certificate.not_valid_after_utc.isoformat(),
            rule=decision.rule,
            simulated=decision.simulated,
            certificate_sha256=hashlib.sha256(issued.der).hexdigest(),
        )
        if not decision.fresh:
            record["freshness"] = "without freshness (legacy Enarx CSR: no nonce)"
        # The certificate leaves only after commit() has logged this record.
        return issued


def _overlay(keep: Collateral, own: CollateralSet | None) -> Collateral:
    """The Keep's pieces where it sent them, the Steward's for the rest (certificates from both)."""
    if own is None:
        return keep
    mine = own.collateral
    return Collateral(
        certificates=keep.certificates + mine.certificates,
        crls=keep.crls or mine.crls,
        tcb_info=keep.tcb_info or mine.tcb_info,
        qe_identity=keep.qe_identity or mine.qe_identity,
        sources=keep.sources + mine.sources,
    )


def _evidence_refusal(e: AttestationError) -> Refused:
    area = "collateral" if isinstance(e, CollateralError) else "evidence"
    check = e.check if e.check.startswith(("evidence.", "collateral.")) else f"{area}.{e.check}"
    status = 400 if isinstance(e, MalformedEvidence) else 403
    return Refused(check, e.reason, status=status, details=e.as_dict())


def _parse(parser: Callable[[bytes], _C], body: bytes) -> _C:
    try:
        return parser(body)
    except CsrError as e:
        raise Refused(e.check, e.reason, status=400) from e


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and _time.monotonic() > deadline:
        raise Refused("server.timeout", "the Steward did not finish in time; nothing was issued", status=503)


def _one_statement(csr: NativeCsr) -> Any:
    if len(csr.statements) != 1:
        raise Refused(
            "evidence.count",
            f"expected exactly one attestation statement, got {len(csr.statements)}",
            status=400,
        )
    statement = csr.statements[0]
    if statement.kind is None:
        raise Refused(
            "evidence.unknown_type", f"unknown evidence type {statement.type.dotted_string}", status=400
        )
    return statement


def _legacy_collateral(csr: LegacyCsr) -> Collateral | None:
    """What an Enarx Keep sent along: CRLs (and, for SGX, TCB info with its signing chain)."""
    if csr.kind != "sgx-quote":
        crls = []
        for _, der in csr.crls:
            try:
                crls.append(load_crl(der))
            except AttestationError as e:
                raise Refused("csr.parse", f"a CRL in the CSR is malformed: {e.reason}", status=400) from e
        return Collateral(crls=tuple(crls)) if crls else None
    try:
        crls = [load_crl(der) for _, der in csr.crls]
        from donjon.attestation.pki import load_certificates

        certs = [c for der in csr.certs for c in load_certificates(der, what="TCB signing certificate")]
    except AttestationError as e:
        raise Refused("csr.parse", f"collateral in the CSR is malformed: {e.reason}", status=400) from e
    return Collateral(
        certificates=tuple(certs),
        crls=tuple(crls),
        tcb_info=(csr.tcb_info,) if csr.tcb_info else (),
        sources=("keep",),
    )


#: The refusal when a PKCS#11 token holding the CA key or the log key cannot sign (removed,
#: locked, its session gone): the server's fault, perhaps a passing one, so a 503.
TOKEN_CHECK = "server.token"


def _fault(e: BaseException) -> Refused:
    """The refusal for a fault of the Steward's own: ``server.token`` when its key's token cannot
    sign, else ``server.error`` naming the exception's type (the client learns nothing more)."""
    if isinstance(e, HsmError):
        return Refused(TOKEN_CHECK, "the Steward's key token cannot sign now; nothing was issued", status=503)
    return Refused("server.error", f"internal error ({type(e).__name__}); nothing was issued", status=500)
