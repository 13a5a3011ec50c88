"""Offline bundles: provision an air-gapped Steward's collateral cache from files.

A bundle is a directory or an archive (tar, tar.gz/bz2/xz, zip) of collateral
files, recognised by content (:mod:`donjon.collateral.recognize`). Each
document is filed under the cache key the online clients would use for it, so
an offline :class:`~donjon.collateral.store.CollateralStore` serves it:

* AMD VCEK certificates: by product line, hwID and TCB (their AMD extensions);
* AMD ASK/ASVK + ARK: the product's ``cert_chain`` (VCEK or VLEK);
* CRLs: by issuer (an ARK: the product's KDS CRL; Intel SGX PCK Platform /
  Processor CA: the PCK CRL; Intel SGX Root CA: the Root CA CRL);
* Intel TCB info and QE identity JSON: by TEE and FMSPC / enclave id.

Intel documents need their issuer chain (the PCS answer's header online): the
bundle must contain the signer's certificate and the Intel SGX Root CA, and
import picks the ones that issued the document's signer. Nothing is verified
here (the attestation library verifies at use); a document whose chain is not
in the bundle, a VLEK, or anything unrecognised is reported as skipped.

Archives are read in memory with limits on the number of members and bytes;
nothing is extracted to disk, so member names cannot escape anywhere.
"""

from __future__ import annotations

import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from donjon.attestation.errors import CollateralError
from donjon.collateral.cache import CacheEntry, CollateralCache
from donjon.collateral.kds import PRODUCTS, VcekRequest, VcekTcb, cert_chain_key, crl_key
from donjon.collateral.pcs import pck_crl_key, qe_identity_key, root_ca_crl_key, tcb_info_key
from donjon.collateral.recognize import MAX_DOCUMENT_BYTES, Recognized, recognize
from donjon.collateral.store import build_entry, utc_now
from donjon.collateral.validity import DocKind, parse_pcs_date

__all__ = ["MAX_BUNDLE_BYTES", "MAX_BUNDLE_FILES", "ImportReport", "import_bundle", "read_bundle"]

#: Limits on what a bundle may hold.
MAX_BUNDLE_FILES = 2000
MAX_BUNDLE_BYTES = 64 << 20

# AMD pub. 57230 "VCEK Certificate Extensions".
_AMD_ARC = "1.3.6.1.4.1.3704.1"
_OID_PRODUCT_NAME = x509.ObjectIdentifier(f"{_AMD_ARC}.2")
_OID_HWID = x509.ObjectIdentifier(f"{_AMD_ARC}.4")
_OID_CSP_ID = x509.ObjectIdentifier(f"{_AMD_ARC}.5")
_OID_SPL = {
    name: x509.ObjectIdentifier(f"{_AMD_ARC}.3.{n}")
    for name, n in (("bootloader", 1), ("tee", 2), ("snp", 3), ("microcode", 8), ("fmc", 9))
}

_INTEL_ROOT_CN = "Intel SGX Root CA"
_INTEL_TCB_SIGNING_CN = "Intel SGX TCB Signing"
_INTEL_PCK_CAS = {"Intel SGX PCK Platform CA": "platform", "Intel SGX PCK Processor CA": "processor"}


@dataclass(frozen=True)
class ImportReport:
    """What an import did: ``imported`` (cache key, file) and ``skipped`` (file, reason)."""

    imported: tuple[tuple[str, str], ...]
    skipped: tuple[tuple[str, str], ...]


def read_bundle(path: str | os.PathLike[str]) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` for each regular file of a directory or archive, within the limits.

    Raises :class:`CollateralError` for a path that is neither, or for a bundle
    over the limits.
    """
    p = Path(path)
    budget = _Budget()
    if p.is_dir():
        for file in sorted(p.rglob("*")):
            if file.is_symlink() or not file.is_file():
                continue
            budget.count(str(file), file.stat().st_size)
            with file.open("rb") as f:
                yield str(file.relative_to(p)), f.read(MAX_DOCUMENT_BYTES + 1)
        return
    if not p.is_file():
        raise CollateralError("bundle.path", f"{p} is neither a directory nor an archive file")
    try:
        if zipfile.is_zipfile(p):
            yield from _read_zip(p, budget)
        else:
            yield from _read_tar(p, budget)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise CollateralError("bundle.read", f"cannot read bundle archive {p}: {e}") from e


def _read_zip(p: Path, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    with zipfile.ZipFile(p) as zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            budget.count(info.filename, info.file_size)
            with zf.open(info) as member:
                yield info.filename, member.read(MAX_DOCUMENT_BYTES + 1)


def _read_tar(p: Path, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    try:
        tf = tarfile.open(p, mode="r:*")  # noqa: SIM115 (closed by the with below)
    except tarfile.ReadError as e:
        raise CollateralError("bundle.path", f"{p} is not a directory, tar or zip archive: {e}") from e
    with tf:
        for info in tf:
            if not info.isreg():
                continue
            budget.count(info.name, info.size)
            member = tf.extractfile(info)
            if member is not None:
                with member:
                    yield info.name, member.read(MAX_DOCUMENT_BYTES + 1)


class _Budget:
    def __init__(self) -> None:
        self.files = 0
        self.bytes = 0

    def count(self, name: str, size: int) -> None:
        self.files += 1
        self.bytes += min(size, MAX_DOCUMENT_BYTES + 1)
        if self.files > MAX_BUNDLE_FILES or self.bytes > MAX_BUNDLE_BYTES:
            raise CollateralError(
                "bundle.size",
                f"bundle exceeds {MAX_BUNDLE_FILES} files or {MAX_BUNDLE_BYTES} bytes (at {name})",
            )


def import_bundle(
    path: str | os.PathLike[str], cache: CollateralCache, *, now: datetime | None = None
) -> ImportReport:
    """Import every recognised document under ``path`` into ``cache``.

    An entry already in the cache that stays valid longer than the bundle's
    copy is kept (a bundle never replaces newer collateral with older).
    """
    now = now or utc_now()
    skipped: list[tuple[str, str]] = []
    docs: list[Recognized] = []
    for name, data in read_bundle(path):
        found = recognize(data, name)
        if not found:
            skipped.append((name, "not recognised as collateral (or too large)"))
        docs.extend(found)
    pool = _unique([c for d in docs for c in d.certificates])
    planned: list[tuple[str, bytes, DocKind, str | None, str]] = []  # key, body, kind, chain, file
    for doc in docs:
        if doc.kind is DocKind.CERTIFICATES:
            for cert in doc.certificates:
                _plan_amd_cert(cert, doc.name, planned, skipped)
        elif doc.kind is DocKind.CRL:
            _plan_crl(doc, pool, planned, skipped)
        else:
            _plan_intel_json(doc, pool, planned, skipped)
    _plan_amd_chains(docs, planned)
    imported: list[tuple[str, str]] = []
    for key, body, kind, chain_pem, name in planned:
        try:
            entry = build_entry(
                key=key, body=body, kind=kind, chain_pem=chain_pem, source=f"bundle:{name}", fetched_at=now
            )
        except CollateralError as e:
            skipped.append((name, e.reason))
            continue
        existing = cache.load(key)
        if existing is not None and _outlasts(existing, entry):
            skipped.append((name, f"the cache already holds a copy valid longer ({key})"))
            continue
        cache.store(entry)
        imported.append((key, name))
    return ImportReport(imported=tuple(imported), skipped=tuple(skipped))


def _outlasts(existing: CacheEntry, new: CacheEntry) -> bool:
    if existing.valid_until is None:
        return False
    return new.valid_until is None or existing.valid_until > new.valid_until


def _unique(certs: list[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    out = []
    for cert in certs:
        der = cert.public_bytes(serialization.Encoding.DER)
        if der not in seen:
            seen.add(der)
            out.append(cert)
    return out


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _der_int(raw: bytes) -> int | None:
    # The SPL extensions are DER INTEGERs (02 len value).
    if len(raw) < 3 or raw[0] != 0x02 or raw[1] != len(raw) - 2:
        return None
    return int.from_bytes(raw[2:], "big", signed=True)


def _amd_ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        value = cert.extensions.get_extension_for_oid(oid).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    return value.value if isinstance(value, x509.UnrecognizedExtension) else None


def _plan_amd_cert(
    cert: x509.Certificate,
    name: str,
    planned: list[tuple[str, bytes, DocKind, str | None, str]],
    skipped: list[tuple[str, str]],
) -> None:
    """File a VCEK under its KDS request; note a VLEK as skipped; ignore other certificates here."""
    if _amd_ext(cert, _OID_CSP_ID) is not None:
        skipped.append(
            (name, "a VLEK is issued to the cloud provider and travels with the evidence; not cached")
        )
        return
    hwid_raw = _amd_ext(cert, _OID_HWID)
    product_raw = _amd_ext(cert, _OID_PRODUCT_NAME)
    if hwid_raw is None or product_raw is None:
        return
    # productName is a DER IA5String ("Milan-B0", "Genoa", "Turin"); hwID the
    # raw chip ID (some issuers wrap it in an OCTET STRING).
    product = product_raw[2:].decode("ascii", "replace").split("-", 1)[0]
    hwid = hwid_raw[2:] if len(hwid_raw) == 66 and hwid_raw[:2] == b"\x04\x40" else hwid_raw
    spl = {k: _der_int(_amd_ext(cert, oid) or b"") for k, oid in _OID_SPL.items()}
    if product not in PRODUCTS or any(spl[k] is None for k in ("bootloader", "tee", "snp", "microcode")):
        skipped.append((name, "AMD VCEK with an unknown product line or missing TCB extensions"))
        return
    try:
        request = VcekRequest(
            product,
            hwid,
            VcekTcb(
                bootloader=spl["bootloader"] or 0,
                tee=spl["tee"] or 0,
                snp=spl["snp"] or 0,
                microcode=spl["microcode"] or 0,
                fmc=spl["fmc"] if product == "Turin" else None,
            ),
        )
    except (ValueError, CollateralError) as e:
        skipped.append((name, f"AMD VCEK does not name a fetchable chip: {e}"))
        return
    planned.append(
        (request.key, cert.public_bytes(serialization.Encoding.DER), DocKind.CERTIFICATES, None, name)
    )


def _plan_amd_chains(
    docs: list[Recognized], planned: list[tuple[str, bytes, DocKind, str | None, str]]
) -> None:
    """ASK + ARK (and ASVK + ARK) of each product, by their AMD names, as KDS's cert_chain answer."""
    by_cn: dict[str, tuple[x509.Certificate, str]] = {}
    for doc in docs:
        for cert in doc.certificates:
            by_cn.setdefault(_cn(cert.subject), (cert, doc.name))
    for product in PRODUCTS:
        ark = by_cn.get(f"ARK-{product}")
        if ark is None:
            continue
        for key_type, signer_cn in (("vcek", f"SEV-{product}"), ("vlek", f"SEV-VLEK-{product}")):
            signer = by_cn.get(signer_cn)
            if signer is not None and signer[0].issuer == ark[0].subject:
                planned.append(
                    (
                        cert_chain_key(product, key_type),
                        _pem(signer[0], ark[0]),
                        DocKind.CERTIFICATES,
                        None,
                        signer[1],
                    )
                )


def _issuers(cert_or_crl_issuer: x509.Name, pool: list[x509.Certificate]) -> list[x509.Certificate]:
    return [c for c in pool if c.subject == cert_or_crl_issuer]


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    # Chain building, not trust: pick which same-named candidate actually issued cert.
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _intel_chain(signer_candidates: list[x509.Certificate], pool: list[x509.Certificate]) -> str | None:
    """PEM ``signer + Intel SGX Root CA`` for the first candidate whose root is in the pool."""
    for signer in signer_candidates:
        for root in _issuers(signer.issuer, pool):
            if (
                _cn(root.subject) == _INTEL_ROOT_CN
                and root.issuer == root.subject
                and _issued_by(signer, root)
            ):
                return _pem(signer, root).decode()
    return None


def _plan_crl(
    doc: Recognized,
    pool: list[x509.Certificate],
    planned: list[tuple[str, bytes, DocKind, str | None, str]],
    skipped: list[tuple[str, str]],
) -> None:
    assert doc.crl is not None
    issuer = _cn(doc.crl.issuer)
    if issuer.startswith("ARK-") and issuer[4:] in PRODUCTS:
        product = issuer[4:]
        # RFC 5280 5.2.5: a CRL with an issuing distribution point covers only
        # that partition; without one it is the ARK's complete CRL.
        key_types = ["vcek", "vlek"]
        try:
            idp = doc.crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
            urls = [n.value for n in (idp.full_name or []) if isinstance(n, x509.UniformResourceIdentifier)]
            key_types = [k for k in key_types if any(f"/{k}/" in u for u in urls)] or key_types
        except x509.ExtensionNotFound:
            pass
        for key_type in key_types:
            planned.append((crl_key(product, key_type), doc.body, DocKind.CRL, None, doc.name))
        return
    if issuer == _INTEL_ROOT_CN:
        planned.append((root_ca_crl_key(), doc.body, DocKind.CRL, None, doc.name))
        return
    ca = _INTEL_PCK_CAS.get(issuer)
    if ca is None:
        skipped.append((doc.name, f"CRL from an issuer Donjon does not fetch ({issuer or 'no CN'})"))
        return
    chain = _intel_chain([c for c in _issuers(doc.crl.issuer, pool) if _crl_signed_by(doc.crl, c)], pool)
    if chain is None:
        skipped.append(
            (doc.name, f"the bundle lacks the issuer chain of this CRL ({issuer} and Intel SGX Root CA)")
        )
        return
    planned.append((pck_crl_key(ca), doc.body, DocKind.CRL, chain, doc.name))


def _crl_signed_by(crl: x509.CertificateRevocationList, cert: x509.Certificate) -> bool:
    try:
        return crl.is_signature_valid(cert.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def _plan_intel_json(
    doc: Recognized,
    pool: list[x509.Certificate],
    planned: list[tuple[str, bytes, DocKind, str | None, str]],
    skipped: list[tuple[str, str]],
) -> None:
    inner = doc.json["tcbInfo" if doc.kind is DocKind.TCB_INFO else "enclaveIdentity"]
    ident = str(inner.get("id", "SGX" if doc.kind is DocKind.TCB_INFO else ""))
    try:
        if doc.kind is DocKind.TCB_INFO:
            tee = {"SGX": "sgx", "TDX": "tdx"}.get(ident)
            if tee is None:
                raise ValueError(f"TCB info id {ident!r} is neither SGX nor TDX")
            key = tcb_info_key(str(inner.get("fmspc", "")), tee)
        else:
            tee = {"QE": "sgx", "TD_QE": "tdx"}.get(ident)
            if tee is None:
                raise ValueError(f"enclave identity {ident!r} is not a QE or TD_QE identity")
            key = qe_identity_key(tee)
        issued = parse_pcs_date(inner.get("issueDate"), "issueDate")
    except (ValueError, CollateralError) as e:
        skipped.append((doc.name, str(e)))
        return
    # The TCB Signing certificate valid when the document was issued (Intel
    # re-issued it with the same key; either verifies, the dated one fits).
    signers = [c for c in pool if _cn(c.subject) == _INTEL_TCB_SIGNING_CN]
    signers.sort(
        key=lambda c: (
            not (c.not_valid_before_utc <= issued <= c.not_valid_after_utc),
            -c.not_valid_after_utc.timestamp(),
        )
    )
    chain = _intel_chain(signers, pool)
    if chain is None:
        skipped.append((doc.name, "the bundle lacks the Intel SGX TCB Signing certificate and Root CA"))
        return
    planned.append((key, doc.body, doc.kind, chain, doc.name))
