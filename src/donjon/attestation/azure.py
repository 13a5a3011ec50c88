"""Azure confidential VMs: SEV-SNP or TDX evidence behind the paravisor's vTPM.

The evidence (docs/attestation.md, "Azure vTPM evidence") is a JSON document
in one of the three forms Confidential Containers' Trustee accepts (v0, v1,
v2): the HCL report (:mod:`donjon.attestation.hcl`), a TPM2 quote by the
vTPM's attestation key (AK) with the PCR values it covers
(:mod:`donjon.attestation.tpm`), and the hardware endorsement: the VCEK for
SEV-SNP, the TD quote for TDX.

:func:`verify_azure_vtpm` checks the chain, in order, each step with its own
check name:

1. the hardware report as the bare kinds check it: SEV-SNP with
   :func:`donjon.attestation.snp.verify_snp_report` (VCEK chain to the pinned
   ARK, TCB, policy, VMPL 0: the paravisor's), TDX with the DCAP verifier and
   Intel collateral (and the TD report the paravisor stored names the same
   REPORTDATA as the quote: ``azure.td_report``);
2. its REPORT_DATA is SHA-256 of the runtime claims, zero-padded
   (``azure.report_data``);
3. the AK (``HCLAkPub``) in those claims signs the TPM quote, RSASSA-PKCS1-v1.5
   with SHA-256 (``azure.tpm.signature``);
4. the quote's qualifying data is the caller's expected binding
   (``azure.tpm.qualifying_data``) and, for v2 evidence, the runtime claims'
   user-data starts with it (``azure.user_data``);
5. the quote's PCR digest is SHA-256 of the PCR values supplied, in selection
   order (``azure.tpm.pcr_digest``).

The claims are the hardware's, with ``report_data`` = the quote's qualifying
data (what the Keep bound) and ``raw["vtpm"]``: the PCRs, the AK, the runtime
claims' VM configuration and the hardware REPORT_DATA.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from donjon.attestation import tpm
from donjon.attestation.claims import Claims, VerifiedEvidence
from donjon.attestation.errors import MalformedEvidence, VerificationFailed
from donjon.attestation.hcl import (
    REPORT_TYPE_SNP,
    REPORT_TYPE_TDX,
    HclReport,
    RuntimeClaims,
    parse_hcl_report,
    parse_runtime_claims,
)
from donjon.attestation.jsondoc import no_duplicate_members
from donjon.attestation.pki import require_aware
from donjon.attestation.verify import Collateral, EvidenceKind, TrustRoots, verify_evidence

__all__ = [
    "AzureEvidence",
    "AzureOptions",
    "check_runtime_claims_binding",
    "check_tpm_quote",
    "parse_azure_evidence",
    "verify_azure_vtpm",
]

#: PCR values a quote may carry (24 per bank, a few banks).
_MAX_PCRS = 64
#: TDREPORT: REPORTMACSTRUCT.REPORTDATA at 80h, 64 bytes (Intel TDX Module ABI, "REPORTMACSTRUCT").
_TD_REPORT_DATA = slice(0x80, 0xC0)


@dataclass(frozen=True)
class AzureEvidence:
    """One Azure vTPM evidence document, decoded (nothing verified)."""

    version: int  # 0, 1 or 2 (the JSON form)
    tee: str  # "sev-snp" or "tdx"
    hcl_report: bytes = field(repr=False)
    quote: bytes = field(repr=False)  # marshalled TPMS_ATTEST
    signature: bytes = field(repr=False)  # raw RSASSA signature by the AK
    pcrs: tuple[bytes, ...] = field(repr=False)
    vcek: bytes | None = field(default=None, repr=False)  # SEV-SNP: PEM or DER
    td_quote: bytes | None = field(default=None, repr=False)  # TDX: the DCAP quote


@dataclass(frozen=True, kw_only=True)
class AzureOptions:
    """What the caller demands beyond authenticity.

    - ``qualifying_data``: when given, the TPM quote's qualifying data (extraData) must equal it.
    - ``snp``: :class:`donjon.attestation.snp.SnpOptions` for the SEV-SNP report (its
      ``report_data`` must be unset: the runtime claims decide it).
    - ``tdx``: keyword arguments of the DCAP verifier for the TD quote (its ``report_data`` unset).
    """

    qualifying_data: bytes | None = None
    snp: object | None = None
    tdx: Mapping[str, Any] | None = None


def _bad(reason: str, what: str | None = None) -> MalformedEvidence:
    return MalformedEvidence("azure.evidence", reason, field=what)


def _byte_list(value: Any, what: str, limit: int) -> bytes:
    # Trustee's v0 form: Rust Vec<u8> serialised as a JSON list of integers.
    if not isinstance(value, list) or len(value) > limit:
        raise _bad(f"{what} is not a list of at most {limit} bytes", what)
    if not all(type(v) is int and 0 <= v <= 255 for v in value):
        raise _bad(f"{what} holds something other than bytes", what)
    return bytes(value)


def _hex(value: Any, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * limit:
        raise _bad(f"{what} is not a hex string of at most {limit} bytes", what)
    try:
        return bytes.fromhex(value)
    except ValueError as e:
        raise _bad(f"{what} is not hex", what) from e


def _b64url(value: Any, what: str, limit: int) -> bytes:
    # Trustee's v1/v2 form: URL-safe base64; padding optional (some producers leave it out).
    if not isinstance(value, str) or len(value) > (limit * 4) // 3 + 4:
        raise _bad(f"{what} is not a base64url string of at most {limit} bytes", what)
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as e:
        raise _bad(f"{what} is not base64url", what) from e


def _members(doc: Mapping[str, Any], required: set[str], what: str) -> None:
    missing = required - doc.keys()
    extra = doc.keys() - required
    if missing or extra:
        raise _bad(
            f"{what} must have exactly the members {', '.join(sorted(required))}"
            + (f" (missing {', '.join(sorted(missing))})" if missing else "")
            + (f" (unknown {', '.join(sorted(extra))})" if extra else ""),
            what,
        )


def _quote(doc: Any, form: str) -> tuple[bytes, bytes, tuple[bytes, ...]]:
    if not isinstance(doc, dict):
        raise _bad("the TPM quote is not an object", "tpm_quote")
    _members(doc, {"signature", "message", "pcrs"}, "tpm_quote")
    pcrs = doc["pcrs"]
    if not isinstance(pcrs, list) or len(pcrs) > _MAX_PCRS:
        raise _bad(f"pcrs is not a list of at most {_MAX_PCRS} values", "pcrs")
    if form == "list":
        return (
            _byte_list(doc["message"], "message", tpm.MAX_ATTEST_BYTES),
            _byte_list(doc["signature"], "signature", 512),
            tuple(_byte_list(p, "pcrs[]", 64) for p in pcrs),
        )
    return (
        _hex(doc["message"], "message", tpm.MAX_ATTEST_BYTES),
        _hex(doc["signature"], "signature", 512),
        tuple(_hex(p, "pcrs[]", 64) for p in pcrs),
    )


def parse_azure_evidence(data: bytes, tee: str) -> AzureEvidence:
    """Decode an evidence JSON document (forms v0, v1, v2) for ``tee`` (``"sev-snp"`` or ``"tdx"``)."""
    try:
        doc = json.loads(bytes(data).decode("utf-8"), object_pairs_hook=no_duplicate_members)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise MalformedEvidence("azure.evidence", f"not a JSON document: {e}") from e
    if not isinstance(doc, dict):
        raise _bad("the evidence is not a JSON object")
    hw = "vcek" if tee == "sev-snp" else "td_quote"
    version = doc.get("version", 0)
    if "version" in doc and (type(version) is not int or version not in (1, 2)):
        raise _bad("unknown evidence version (known: 1, 2, or none for v0)", "version")
    if version == 0:
        if tee == "sev-snp":
            _members(doc, {"quote", "report", "vcek"}, "evidence v0")
            message, signature, pcrs = _quote(doc["quote"], "list")
            hcl = _byte_list(doc["report"], "report", 8192)
            vcek = doc["vcek"]
            if not isinstance(vcek, str) or len(vcek) > 16384:
                raise _bad("vcek is not a PEM string", "vcek")
            hw_bytes = vcek.encode("ascii", "replace")
        else:
            _members(doc, {"tpm_quote", "hcl_report", "td_quote"}, "evidence v0")
            message, signature, pcrs = _quote(doc["tpm_quote"], "list")
            hcl = _byte_list(doc["hcl_report"], "hcl_report", 8192)
            hw_bytes = _byte_list(doc["td_quote"], "td_quote", 16384)
    else:
        _members(doc, {"version", "tpm_quote", "hcl_report", hw}, f"evidence v{version}")
        message, signature, pcrs = _quote(doc["tpm_quote"], "hex")
        hcl = _b64url(doc["hcl_report"], "hcl_report", 8192)
        hw_bytes = _b64url(doc[hw], hw, 16384)
    return AzureEvidence(
        version=version,
        tee=tee,
        hcl_report=hcl,
        quote=message,
        signature=signature,
        pcrs=pcrs,
        vcek=hw_bytes if tee == "sev-snp" else None,
        td_quote=hw_bytes if tee == "tdx" else None,
    )


def check_runtime_claims_binding(hcl: HclReport, hw_report_data: bytes) -> None:
    """Step 2: ``hw_report_data`` (from a *verified* hardware report) is SHA-256 of the runtime claims."""
    expected = hcl.claims_digest() + bytes(32)
    if hw_report_data != expected:
        raise VerificationFailed(
            "azure.report_data",
            "the hardware report's REPORT_DATA is not SHA-256 of the runtime claims",
            field="REPORT_DATA",
            expected=expected,
            got=hw_report_data,
        )


def check_tpm_quote(
    evidence: AzureEvidence, runtime: RuntimeClaims, quote: tpm.TpmQuote, expected: bytes | None
) -> None:
    """Steps 3 to 5: the AK signs the quote; qualifying data (and v2 user-data); the PCR digest.

    Meaningful only once the runtime claims are bound to a verified hardware report.
    """
    key = runtime.ak_public
    if len(evidence.signature) != (key.key_size + 7) // 8:
        raise VerificationFailed(
            "azure.tpm.signature",
            "the TPM quote's signature is not the AK's size",
            expected=(key.key_size + 7) // 8,
            got=len(evidence.signature),
        )
    try:
        key.verify(evidence.signature, evidence.quote, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as e:
        raise VerificationFailed("azure.tpm.signature", "the TPM quote is not signed by the AK") from e
    if expected is not None and quote.extra_data != expected:
        raise VerificationFailed(
            "azure.tpm.qualifying_data",
            "the TPM quote's qualifying data is not the expected value",
            field="extraData",
            expected=expected,
            got=quote.extra_data,
        )
    if evidence.version >= 2:
        # v2 also puts the binding in the runtime claims' user-data (so the hardware report covers it).
        user = runtime.user_data or b""
        if user[: len(quote.extra_data)] != quote.extra_data:
            raise VerificationFailed(
                "azure.user_data",
                "the runtime claims' user-data does not start with the quote's qualifying data",
                field="user-data",
                expected=quote.extra_data,
                got=user,
            )
    banks = {s.hash_alg for s in quote.selections if s.pcrs}
    if banks != {tpm.ALG_SHA256}:
        raise VerificationFailed(
            "azure.tpm.pcr_select",
            "the quote must select PCRs of the SHA-256 bank only",
            got=", ".join(s.hash_name for s in quote.selections if s.pcrs) or "none",
        )
    try:
        digest = tpm.pcr_digest(quote, evidence.pcrs)
    except VerificationFailed as e:
        raise VerificationFailed(
            "azure.tpm.pcrs", e.reason, field=e.field, expected=e.expected, got=e.got
        ) from e
    if digest != quote.pcr_digest:
        raise VerificationFailed(
            "azure.tpm.pcr_digest",
            "the PCR values are not the ones the quote covers",
            field="pcrDigest",
            expected=quote.pcr_digest,
            got=digest,
        )


def _hardware(
    evidence: AzureEvidence,
    hcl: HclReport,
    certs: Sequence[x509.Certificate],
    collateral: Collateral,
    roots: TrustRoots,
    at: datetime,
    options: AzureOptions,
) -> VerifiedEvidence:
    if evidence.tee == "sev-snp":
        from donjon.attestation.snp import SnpOptions

        snp = options.snp if options.snp is not None else SnpOptions()
        if not isinstance(snp, SnpOptions):
            raise TypeError(f"AzureOptions.snp must be SnpOptions, not {type(snp).__name__}")
        if snp.report_data is not None:
            raise TypeError("AzureOptions.snp.report_data must be unset: the runtime claims decide it")
        assert evidence.vcek is not None
        # As bytes: the dispatcher parses them once per distinct VCEK (a chip sends the same one).
        return verify_evidence(
            EvidenceKind.SNP_REPORT,
            hcl.hw_report,
            certs=[evidence.vcek, *certs],
            collateral=collateral,
            roots=roots,
            at=at,
            options=snp,
        )
    tdx = dict(options.tdx or {})
    if tdx.get("report_data") is not None:
        raise TypeError("AzureOptions.tdx['report_data'] must be unset: the runtime claims decide it")
    assert evidence.td_quote is not None
    verified = verify_evidence(
        EvidenceKind.TDX_QUOTE,
        evidence.td_quote,
        certs=certs,
        collateral=collateral,
        roots=roots,
        at=at,
        options=tdx,
    )
    # The paravisor's TD report and the quote the TD quoting enclave made of it name the same REPORTDATA.
    stored = hcl.hw_report[_TD_REPORT_DATA]
    if stored != verified.claims.report_data:
        raise VerificationFailed(
            "azure.td_report",
            "the HCL report's TD report and the TD quote differ in REPORTDATA",
            expected=verified.claims.report_data,
            got=stored,
        )
    return verified


def verify_azure_vtpm(
    kind: EvidenceKind,
    evidence: bytes,
    *,
    certs: Sequence[x509.Certificate] = (),
    collateral: Collateral | None = None,
    roots: TrustRoots,
    at: datetime,
    options: object | None = None,
) -> VerifiedEvidence:
    """Verify Azure vTPM evidence (``azure-snp-vtpm`` or ``azure-tdx-vtpm``) at ``at``; see the module doc."""
    require_aware(at)
    if options is None:
        options = AzureOptions()
    if not isinstance(options, AzureOptions):
        raise TypeError(f"Azure vTPM options must be AzureOptions, not {type(options).__name__}")
    tee = "sev-snp" if kind is EvidenceKind.AZURE_SNP_VTPM else "tdx"
    parsed = parse_azure_evidence(evidence, tee)
    hcl = parse_hcl_report(parsed.hcl_report)
    want = REPORT_TYPE_SNP if tee == "sev-snp" else REPORT_TYPE_TDX
    if hcl.report_type != want:
        raise VerificationFailed(
            "azure.report_type", "the HCL report wraps another TEE's report", expected=tee, got=hcl.tee
        )
    runtime = parse_runtime_claims(hcl.runtime_claims)
    quote = tpm.parse_quote(parsed.quote)
    hardware = _hardware(parsed, hcl, certs, collateral or Collateral(), roots, at, options)
    check_runtime_claims_binding(hcl, hardware.claims.report_data)
    check_tpm_quote(parsed, runtime, quote, options.qualifying_data)
    claims = _claims(hardware.claims, parsed, runtime, quote)
    return VerifiedEvidence._create(claims, hashlib.sha256(bytes(evidence)).digest(), at)


def _claims(hw: Claims, evidence: AzureEvidence, runtime: RuntimeClaims, quote: tpm.TpmQuote) -> Claims:
    spki = runtime.ak_public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pcrs = {index: value for (_alg, index), value in zip(quote.selected, evidence.pcrs, strict=True)}
    vtpm: dict[str, Any] = {
        "evidence_version": evidence.version,
        "pcr_bank": "sha256",
        "pcrs": {str(i): v for i, v in pcrs.items()},
        "ak_spki_sha256": hashlib.sha256(spki).digest(),
        "hardware_report_data": hw.report_data,
        "vm_configuration": dict(runtime.vm_configuration),
        "clock": quote.clock,
        "reset_count": quote.reset_count,
        "restart_count": quote.restart_count,
        "firmware_version": f"{quote.firmware_version:016x}",
    }
    if runtime.user_data is not None:
        vtpm["user_data"] = runtime.user_data
    return dataclasses.replace(hw, report_data=quote.extra_data, raw={**hw.raw, "vtpm": vtpm})
