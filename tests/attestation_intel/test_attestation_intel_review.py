"""Hostile inputs found in review: every one must end as an AttestationError, never a foreign exception."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from donjon.attestation import CollateralError, TeeType, VerificationFailed
from donjon.attestation.detect import recognise_collateral
from donjon.attestation.tcbinfo import match_tcb_level, parse_tcb_info, split_signed_document
from donjon.attestation.verify import Collateral, TrustRoots, verify_evidence

_MARK = b"ZQZQZQZQ"
# Two ways a name can fail to decode: a UTF8String holding invalid UTF-8 (ValueError), and a
# commonName typed BIT STRING (TypeError from cryptography).
_CORRUPTIONS = {
    "bad-utf8": (_MARK, b"\xff\xfe" * 4),
    "bit-string": (b"\x0c\x08" + _MARK, b"\x03\x08\x00" + _MARK[1:]),
}


def _unreadable_name() -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _MARK.decode())])


@pytest.fixture(scope="module", params=sorted(_CORRUPTIONS))
def unreadable_cert(request: pytest.FixtureRequest) -> x509.Certificate:
    # A certificate that parses but whose subject is a UTF8String holding invalid UTF-8:
    # cryptography only fails (ValueError) when the name is first read.
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime(2020, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_unreadable_name())
        .issuer_name(_unreadable_name())
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=20 * 365))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER).replace(*_CORRUPTIONS[request.param])
    out = x509.load_der_x509_certificate(der)
    with pytest.raises((ValueError, TypeError)):
        _ = out.subject
    return out


@pytest.fixture(scope="module", params=sorted(_CORRUPTIONS))
def unreadable_crl(request: pytest.FixtureRequest) -> x509.CertificateRevocationList:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime(2020, 1, 1, tzinfo=UTC)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(_unreadable_name())
        .last_update(now)
        .next_update(now + timedelta(days=20 * 365))
        .sign(key, hashes.SHA256())
    )
    der = crl.public_bytes(serialization.Encoding.DER).replace(*_CORRUPTIONS[request.param])
    out = x509.load_der_x509_crl(der)
    with pytest.raises((ValueError, TypeError)):
        _ = out.issuer
    return out


def _files(vectors: Path, prefix: str) -> Collateral:
    out = Collateral()
    for path in sorted(vectors.glob(prefix + ".coll.*")):
        out = out + recognise_collateral(path.read_bytes())
    return out


TDX = "tdx/dcapqvl/tdx_quote"
TDX_AT = datetime(2025, 7, 19, 10, 0, 34, tzinfo=UTC)  # VERIFY_TIMES: tdx-dcapqvl PASS UpToDate


@pytest.mark.parametrize("where", ["certs", "collateral", "extra_trusted"])
def test_unreadable_certificate_beside_a_real_quote_is_ignored(
    vectors: Path, unreadable_cert: x509.Certificate, where: str
) -> None:
    # A Keep may send any certificates with its quote; one whose names do not decode used to
    # raise ValueError out of the dispatcher. It can be nobody's signer: the quote verifies.
    collateral = _files(vectors, TDX)
    roots = TrustRoots()
    certs: tuple[x509.Certificate, ...] = ()
    if where == "certs":
        certs = (unreadable_cert,)
    elif where == "collateral":
        collateral = collateral + Collateral(certificates=(unreadable_cert,))
    else:
        roots = TrustRoots(extra_trusted=(unreadable_cert,))
    quote = (vectors / TDX).read_bytes()
    claims = verify_evidence("tdx-quote", quote, certs=certs, collateral=collateral, roots=roots, at=TDX_AT)
    assert claims.claims.tee is TeeType.TDX and claims.claims.simulated is False


def test_unreadable_crl_beside_a_real_quote_is_ignored(
    vectors: Path, unreadable_crl: x509.CertificateRevocationList
) -> None:
    collateral = Collateral(crls=(unreadable_crl,)) + _files(vectors, TDX)
    quote = (vectors / TDX).read_bytes()
    claims = verify_evidence("tdx-quote", quote, collateral=collateral, roots=TrustRoots(), at=TDX_AT)
    assert claims.claims.tee is TeeType.TDX


def _deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_deeply_nested_tcb_info_is_a_collateral_error() -> None:
    # 256 KiB is allowed before parsing: enough nesting to exhaust Python's recursion limit.
    doc = b'{"tcbInfo":{"x":' + _deep(50_000) + b'},"signature":"' + b"ab" * 64 + b'"}'
    with pytest.raises(CollateralError) as e:
        split_signed_document(doc, "tcbInfo")
    assert e.value.check == "tcb_info.format"
    with pytest.raises(CollateralError) as e:
        parse_tcb_info(b'{"x":' + _deep(50_000) + b"}")
    assert e.value.check == "tcb_info.format"


def test_tdx_module_version_0_needs_the_tcb_infos_tdx_module(vectors: Path) -> None:
    # With TEE_TCB_SVN[1] == 0 the module is judged by tcbInfo.tdxModule (QVL TdxModuleCheck);
    # a TCB Info without it used to skip the MRSIGNERSEAM check silently.
    doc = json.loads((vectors / (TDX + ".coll.tcbinfo.json")).read_bytes())["tcbInfo"]
    info = parse_tcb_info(json.dumps(doc, separators=(",", ":")).encode())
    assert info.tdx_module is not None
    level = info.levels[0]
    assert level.tdx_svns is not None
    svn = bytes([level.tdx_svns[0], 0, *level.tdx_svns[2:]])
    module = info.tdx_module
    seam = {"mrsignerseam": module.mrsigner, "seam_attributes": module.attributes}
    assert match_tcb_level(info, level.sgx_svns, level.pce_svn, tee_tcb_svn=svn, **seam).module_status is None
    with pytest.raises(VerificationFailed) as e:
        match_tcb_level(info, level.sgx_svns, level.pce_svn, tee_tcb_svn=svn, mrsignerseam=b"\x01" * 48,
                        seam_attributes=module.attributes)  # fmt: skip
    assert e.value.check == "dcap.tdx_module.mismatch"
    without = dataclasses.replace(info, tdx_module=None)
    with pytest.raises(VerificationFailed) as e:
        match_tcb_level(without, level.sgx_svns, level.pce_svn, tee_tcb_svn=svn, **seam)
    assert e.value.check == "dcap.tdx_module.missing"


def test_crl_with_an_invalid_version_is_a_collateral_error(vectors: Path) -> None:
    # cryptography raises InvalidVersion (not a ValueError) for a CRL whose version is not v2.
    from donjon.attestation.pki import load_crl

    der = (vectors / (TDX + ".coll.root_ca_crl.der")).read_bytes()
    assert der[7:10] == b"\x02\x01\x01"  # TBSCertList.version v2
    with pytest.raises(CollateralError) as e:
        load_crl(der[:7] + b"\x02\x01\x00" + der[10:])
    assert e.value.check == "crl.parse"


def test_intel_claims_say_whether_crls_were_checked(intel_bundles: dict[str, Any]) -> None:
    from donjon.attestation.dcap_verify import verify_dcap_quote

    def run(name: str) -> Any:
        b = intel_bundles[name]
        return verify_dcap_quote(b.quote, collateral=b.collateral, at=b.at, **b.options).claims

    assert run("tdx-dcapqvl").raw["crl_checked"] is True
    assert run("tdx-gotdx-v5").raw["crl_checked"] is False  # allow_missing_crls


@pytest.mark.parametrize(
    ("quote", "at", "tee"),
    [
        (TDX, TDX_AT, TeeType.TDX),
        ("sgx/dcapqvl/sgx_quote", datetime(2025, 7, 19, 10, 1, 17, tzinfo=UTC), TeeType.SGX),
    ],
)
def test_dispatcher_picks_the_tcb_info_and_qe_identity_for_the_quote(
    vectors: Path, quote: str, at: datetime, tee: TeeType
) -> None:
    # A Steward's collateral directory holds documents for several TEEs and platforms; the
    # dispatcher used to hand the verifier the first TCB Info / QE Identity, whatever it was for.
    others = Collateral(
        tcb_info=(
            (vectors / "tdx/gotdxguest/tcbinfo_fmspc_90c06f000000.json").read_bytes(),  # another FMSPC
            (vectors / "sgx/dcapqvl/sgx_quote.coll.tcbinfo.json").read_bytes(),
            (vectors / (TDX + ".coll.tcbinfo.json")).read_bytes(),
        ),
        qe_identity=(
            (vectors / "sgx/dcapqvl/sgx_quote.coll.qe_identity.json").read_bytes(),
            (vectors / (TDX + ".coll.qe_identity.json")).read_bytes(),
        ),
    )
    for order in (others, Collateral(tcb_info=others.tcb_info[::-1], qe_identity=others.qe_identity[::-1])):
        collateral = order + _files(vectors, quote)
        claims = verify_evidence(
            "tdx-quote" if tee is TeeType.TDX else "sgx-quote",
            (vectors / quote).read_bytes(),
            collateral=collateral,
            roots=TrustRoots(),
            at=at,
        ).claims
        assert claims.tee is tee and claims.raw["qe_status"] is not None
