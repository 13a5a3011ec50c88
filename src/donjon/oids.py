"""Every object identifier Donjon uses, in one place.

Donjon's own arc is ``2.25.318088161835230134714159210687413414018`` (a UUID arc,
ITU-T X.667 / RFC 4122 section 4: ``2.25.<UUID as integer>``; the UUID is
``ef4d8d34-911c-4335-a953-0db3d660e882``). A UUID arc needs no registration but
its second arc is far above 2**31, and Go's ``crypto/x509`` refuses a whole
certificate holding such an OID (it parses arcs into ``int``). So this arc is
for **CSR-internal use only**: evidence types, the workload digest and the nonce
that a Keep sends to its Steward. Nothing under it may appear in an issued
certificate; the claims extension of issued certificates lives under an arc the
operator configures (their IANA Private Enterprise Number), checked by
:func:`require_certificate_safe`.

Layout of the arc (``DONJON_ARC`` below):

- ``.1`` evidence statement types (``AttestationStatement.type``)

  - ``.1.0`` no evidence: the ``nil`` backend (``stmt``: OCTET STRING, empty); a
    Steward issues for it only when its policy sets ``allow_unattested``;
  - ``.1.1`` AMD SEV-SNP attestation report (``stmt``: OCTET STRING, the raw report);
  - ``.1.2`` Intel TDX quote (OCTET STRING);
  - ``.1.3`` Intel SGX DCAP quote (OCTET STRING);
  - ``.1.4`` Arm CCA token (OCTET STRING, CBOR);
  - ``.1.5`` Azure SEV-SNP behind the paravisor's vTPM (OCTET STRING: the evidence JSON,
    docs/attestation.md "Azure vTPM evidence");
  - ``.1.6`` Azure TDX behind the paravisor's vTPM (OCTET STRING: the evidence JSON);
- ``.2`` PKCS#10 attributes of a Keep's CSR

  - ``.2.1`` workload digest (single value: OCTET STRING, 32 bytes);
  - ``.2.2`` Steward nonce (single value: OCTET STRING);
  - ``.2.3`` package evidence: the signed package the Keep runs (single value:
    ``PackageEvidence``, :mod:`donjon.oci.admission`), for policies that admit by signer.
"""

from __future__ import annotations

from cryptography.x509 import ObjectIdentifier

__all__ = [
    "CSR_ATTR_NONCE",
    "CSR_ATTR_PACKAGE",
    "CSR_ATTR_WORKLOAD_DIGEST",
    "DONJON_ARC",
    "ENARX_SGX_EVIDENCE",
    "ENARX_SNP_EVIDENCE",
    "EVIDENCE_AZURE_SNP_VTPM",
    "EVIDENCE_AZURE_TDX_VTPM",
    "EVIDENCE_CCA",
    "EVIDENCE_KIND_BY_OID",
    "EVIDENCE_NONE",
    "EVIDENCE_OID_BY_KIND",
    "EVIDENCE_SGX",
    "EVIDENCE_SNP",
    "EVIDENCE_TDX",
    "ID_AA_ATTESTATION",
    "PKCS9_EXTENSION_REQUEST",
    "arcs",
    "require_certificate_safe",
]

#: ``2.25.<UUID>``: Donjon's arc, CSR-internal only (see the module docstring).
DONJON_ARC = "2.25.318088161835230134714159210687413414018"

EVIDENCE_NONE = ObjectIdentifier(DONJON_ARC + ".1.0")
EVIDENCE_SNP = ObjectIdentifier(DONJON_ARC + ".1.1")
EVIDENCE_TDX = ObjectIdentifier(DONJON_ARC + ".1.2")
EVIDENCE_SGX = ObjectIdentifier(DONJON_ARC + ".1.3")
EVIDENCE_CCA = ObjectIdentifier(DONJON_ARC + ".1.4")
EVIDENCE_AZURE_SNP_VTPM = ObjectIdentifier(DONJON_ARC + ".1.5")
EVIDENCE_AZURE_TDX_VTPM = ObjectIdentifier(DONJON_ARC + ".1.6")

CSR_ATTR_WORKLOAD_DIGEST = ObjectIdentifier(DONJON_ARC + ".2.1")
CSR_ATTR_NONCE = ObjectIdentifier(DONJON_ARC + ".2.2")
CSR_ATTR_PACKAGE = ObjectIdentifier(DONJON_ARC + ".2.3")

#: Evidence kind (``donjon.attestation.verify.EvidenceKind`` values, and ``"none"``) <-> statement type.
EVIDENCE_OID_BY_KIND: dict[str, ObjectIdentifier] = {
    "snp-report": EVIDENCE_SNP,
    "tdx-quote": EVIDENCE_TDX,
    "sgx-quote": EVIDENCE_SGX,
    "cca-token": EVIDENCE_CCA,
    "azure-snp-vtpm": EVIDENCE_AZURE_SNP_VTPM,
    "azure-tdx-vtpm": EVIDENCE_AZURE_TDX_VTPM,
    "none": EVIDENCE_NONE,
}
EVIDENCE_KIND_BY_OID: dict[ObjectIdentifier, str] = {v: k for k, v in EVIDENCE_OID_BY_KIND.items()}

#: draft-ietf-lamps-csr-attestation (rev. 27+): ``id-aa-attestation`` (formerly ``id-aa-evidence``).
ID_AA_ATTESTATION = ObjectIdentifier("1.2.840.113549.1.9.16.2.59")
#: PKCS#9 extensionRequest (RFC 2985 section 5.4.2), how Enarx Keeps carried evidence.
PKCS9_EXTENSION_REQUEST = ObjectIdentifier("1.2.840.113549.1.9.14")
#: Enarx's private arc (PEN 58270): SGX and SNP evidence extensions of legacy Keep CSRs.
ENARX_SGX_EVIDENCE = ObjectIdentifier("1.3.6.1.4.1.58270.1.2")
ENARX_SNP_EVIDENCE = ObjectIdentifier("1.3.6.1.4.1.58270.1.3")

_MAX_ARC = 2**31 - 1


def arcs(oid: ObjectIdentifier | str) -> tuple[int, ...]:
    """The arcs of an OID as integers (``"1.2.3"`` -> ``(1, 2, 3)``)."""
    text = oid.dotted_string if isinstance(oid, ObjectIdentifier) else oid
    try:
        parts = tuple(int(p) for p in text.split("."))
    except ValueError as e:
        raise ValueError(f"not a dotted OID: {text!r}") from e
    if len(parts) < 2 or any(p < 0 for p in parts):
        raise ValueError(f"not a dotted OID: {text!r}")
    return parts


def require_certificate_safe(oid: ObjectIdentifier | str) -> ObjectIdentifier:
    """Return ``oid`` if every arc is below 2**31, else raise ``ValueError``.

    Go's ``crypto/x509`` (and so most of the cloud-native world) rejects a whole
    certificate that holds a larger arc; issued certificates must never do so.
    """
    parts = arcs(oid)
    if parts[0] > 2 or (parts[0] < 2 and parts[1] > 39):
        raise ValueError(f"OID {oid} has an invalid first or second arc")
    big = [p for p in parts if p > _MAX_ARC]
    if big:
        raise ValueError(
            f"OID {'.'.join(map(str, parts))} has arc {big[0]} >= 2**31; not allowed in certificates"
        )
    return ObjectIdentifier(".".join(map(str, parts)))
