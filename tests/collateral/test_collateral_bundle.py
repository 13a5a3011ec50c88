"""Offline bundles: import recorded collateral by content, then serve it with no network at all."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from donjon.attestation.errors import CollateralError
from donjon.collateral import (
    CacheEntry,
    CollateralCache,
    CollateralStore,
    CollateralUnavailable,
    KdsClient,
    PcsClient,
    VcekRequest,
)
from donjon.collateral import bundle as bundle_mod
from donjon.collateral.bundle import import_bundle
from donjon.collateral.kds import crl_key
from donjon.collateral.pcs import tcb_info_key
from donjon.collateral.validity import DocKind

pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)

T_2023_07 = datetime(2023, 7, 1, 1, 0, tzinfo=UTC)
T_2026 = datetime(2026, 1, 1, tzinfo=UTC)
NOWHERE = "http://127.0.0.1:9"  # never contacted: the stores below have no fetcher

# Bundle content: vector file -> an uninformative name (files are recognised by content).
FILES = {
    "snp/gosevguest/vcek_milan.der": "f01",
    "roots/amd/gosevguest_ask_ark_milan.pem": "f02",
    "snp/gosevguest/milan_cert_chain_vlek.pem": "f03",
    "snp/trustee/test-vlek.der": "f04",
    "tdx/gotdxguest/pckcrl.der": "f05",
    "tdx/gotdxguest/pck_crl_issuer_chain.pem": "f06",
    "tdx/gotdxguest/tcbinfo_fmspc_50806f000000.json": "f07",
    "tdx/gotdxguest/tcbinfo_issuer_chain.pem": "f08",
    "tdx/gotdxguest/qe_identity_tdx.json": "sub/f09",
    "tdx/gotdxguest/rootcrl.der": "sub/f10",
    "snp/gosevguest/attestation.bin": "f11",  # evidence, not collateral
}


@pytest.fixture
def bundle_dir(vectors: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    for src, name in FILES.items():
        dest = out / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vectors / src, dest)
    return out


def _offline(cache_dir: Path) -> tuple[KdsClient, PcsClient]:
    store = CollateralStore(CollateralCache(cache_dir))
    assert store.offline
    return KdsClient(store, base_url=NOWHERE), PcsClient(store, base_url=NOWHERE, root_crl_url=NOWHERE)


def _check_served(vectors: Path, cache_dir: Path) -> None:
    kds, pcs = _offline(cache_dir)
    req = VcekRequest.from_report((vectors / "snp/gosevguest/attestation.bin").read_bytes(), product="Milan")
    vcek = kds.vcek(req, at=T_2026)
    assert (
        vcek.public_bytes(serialization.Encoding.DER)
        == (vectors / "snp/gosevguest/vcek_milan.der").read_bytes()
    )
    ask, ark = kds.cert_chain("Milan", at=T_2026)
    assert [ask, ark] == x509.load_pem_x509_certificates(
        (vectors / "roots/amd/gosevguest_ask_ark_milan.pem").read_bytes()
    )
    assert kds.cert_chain("Milan", key_type="vlek", at=T_2026)[1] == ark
    crl = pcs.pck_crl("platform", at=T_2023_07)
    assert crl.body == (vectors / "tdx/gotdxguest/pckcrl.der").read_bytes()
    assert list(crl.issuer_chain) == x509.load_pem_x509_certificates(
        (vectors / "tdx/gotdxguest/pck_crl_issuer_chain.pem").read_bytes()
    )
    tcb = pcs.tcb_info("50806f000000", tee="tdx", at=T_2023_07)
    assert tcb.body == (vectors / "tdx/gotdxguest/tcbinfo_fmspc_50806f000000.json").read_bytes()
    assert tcb.issuer_chain[0].subject.rfc4514_string().endswith("CN=Intel SGX TCB Signing")
    assert tcb.source.startswith("bundle:") and tcb.source.endswith("f07")
    qe = pcs.qe_identity(tee="tdx", at=T_2023_07)
    assert qe.json(DocKind.QE_IDENTITY)["enclaveIdentity"]["id"] == "TD_QE"
    assert pcs.root_ca_crl(at=T_2023_07).issuer.rfc4514_string().endswith("CN=Intel SGX Root CA")


def test_directory_bundle_serves_every_client_offline(
    vectors: Path, bundle_dir: Path, tmp_path: Path
) -> None:
    report = import_bundle(bundle_dir, CollateralCache(tmp_path / "cache"), now=T_2023_07)
    skipped = dict(report.skipped)
    assert "cloud provider" in skipped["f04"]  # the VLEK
    assert "not recognised" in skipped["f11"]  # the report
    _check_served(vectors, tmp_path / "cache")
    # Nothing else is there: the Milan CRL was not in the bundle.
    kds, _ = _offline(tmp_path / "cache")
    with pytest.raises(CollateralUnavailable):
        kds.crl("Milan", at=T_2026)


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_archive_bundle_imports_the_same(vectors: Path, bundle_dir: Path, tmp_path: Path, fmt: str) -> None:
    archive = tmp_path / f"bundle.{fmt}"
    if fmt == "zip":
        with zipfile.ZipFile(archive, "w") as zf:
            for f in sorted(bundle_dir.rglob("*")):
                if f.is_file():
                    zf.write(f, f.relative_to(bundle_dir).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tf:
            tf.add(bundle_dir, arcname="bundle")
    from_dir = import_bundle(bundle_dir, CollateralCache(tmp_path / "a"), now=T_2023_07)
    from_archive = import_bundle(archive, CollateralCache(tmp_path / "b"), now=T_2023_07)
    assert sorted(k for k, _ in from_archive.imported) == sorted(k for k, _ in from_dir.imported)
    _check_served(vectors, tmp_path / "b")


def test_quote_collateral_json_serves_the_pcs_documents(vectors: Path, tmp_path: Path) -> None:
    """A dcap-qvl QuoteCollateralV3 file becomes the PCS documents, with the signed text kept exactly."""
    bundle = tmp_path / "b"
    bundle.mkdir()
    shutil.copyfile(vectors / "tdx/dcapqvl/tdx_quote_collateral.json", bundle / "collateral.json")
    report = import_bundle(bundle, CollateralCache(tmp_path / "c"), now=T_2023_07)
    assert sorted(k for k, _ in report.imported) == sorted(
        [
            "intel-pcs/sgx/certification/v4/pckcrl?ca=platform",
            "intel-pcs/root-ca-crl",
            tcb_info_key("b0c06f000000", "tdx"),
            "intel-pcs/tdx/certification/v4/qe/identity",
        ]
    )
    _, pcs = _offline(tmp_path / "c")
    at = datetime(2025, 7, 19, 10, 0, 34, tzinfo=UTC)
    split = vectors / "tdx/dcapqvl"
    tcb = pcs.tcb_info("b0c06f000000", tee="tdx", at=at)
    assert tcb.json(DocKind.TCB_INFO) == json.loads((split / "tdx_quote.coll.tcbinfo.json").read_bytes())
    inner = json.loads((vectors / "tdx/dcapqvl/tdx_quote_collateral.json").read_bytes())["tcb_info"]
    assert inner.encode() in tcb.body
    qe = pcs.qe_identity(tee="tdx", at=at)
    assert qe.json(DocKind.QE_IDENTITY) == json.loads(
        (split / "tdx_quote.coll.qe_identity.json").read_bytes()
    )
    assert pcs.pck_crl("platform", at=at).body == (split / "tdx_quote.coll.pck_crl.der").read_bytes()
    assert (
        pcs.root_ca_crl(at=at).public_bytes(serialization.Encoding.DER)
        == (split / "tdx_quote.coll.root_ca_crl.der").read_bytes()
    )


def test_intel_document_without_its_chain_is_skipped(vectors: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    shutil.copyfile(vectors / "tdx/gotdxguest/tcbinfo_fmspc_50806f000000.json", bundle / "tcb.json")
    shutil.copyfile(vectors / "tdx/gotdxguest/pckcrl.der", bundle / "crl.der")
    report = import_bundle(bundle, CollateralCache(tmp_path / "c"), now=T_2023_07)
    assert report.imported == ()
    assert {name for name, _ in report.skipped} == {"tcb.json", "crl.der"}


def test_bundle_never_replaces_a_longer_valid_copy(vectors: Path, bundle_dir: Path, tmp_path: Path) -> None:
    cache = CollateralCache(tmp_path / "cache")
    key = tcb_info_key("50806f000000", "tdx")
    newer = CacheEntry(
        key=key,
        body=b"{}",
        fetched_at=T_2023_07,
        valid_until=datetime(2024, 1, 1, tzinfo=UTC),
        source="network",
    )
    cache.store(newer)
    report = import_bundle(bundle_dir, cache, now=T_2023_07)
    assert key not in dict(report.imported)
    assert "valid longer" in dict(report.skipped)["f07"]
    assert cache.load(key) == newer


def test_ark_crl_is_filed_by_its_distribution_point(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "both.crl").write_bytes(_ark_crl("ARK-Turin", None))
    (bundle / "vlek.crl").write_bytes(_ark_crl("ARK-Genoa", "https://kds.example/vlek/v1/Genoa/crl"))
    report = import_bundle(bundle, CollateralCache(tmp_path / "c"), now=T_2026)
    assert sorted(k for k, _ in report.imported) == sorted(
        [crl_key("Turin", "vcek"), crl_key("Turin", "vlek"), crl_key("Genoa", "vlek")]
    )


def test_bundle_limits(bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_mod, "MAX_BUNDLE_FILES", 3)
    with pytest.raises(CollateralError) as e:
        import_bundle(bundle_dir, CollateralCache(tmp_path / "c"), now=T_2026)
    assert e.value.check == "bundle.size"


def test_not_a_bundle(tmp_path: Path) -> None:
    (tmp_path / "x.bin").write_bytes(b"not an archive")
    with pytest.raises(CollateralError) as e:
        import_bundle(tmp_path / "x.bin", CollateralCache(tmp_path / "c"))
    assert e.value.check == "bundle.path"
    with pytest.raises(CollateralError):
        import_bundle(tmp_path / "missing", CollateralCache(tmp_path / "c"))


def test_truncated_archive_is_a_clear_error(bundle_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(bundle_dir, arcname="bundle")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(CollateralError) as e:
        import_bundle(archive, CollateralCache(tmp_path / "c"))
    assert e.value.check in ("bundle.read", "bundle.path")


def test_symlinks_in_a_directory_bundle_are_not_followed(vectors: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "link.der").symlink_to(vectors / "snp/gosevguest/vcek_milan.der")
    report = import_bundle(bundle, CollateralCache(tmp_path / "c"), now=T_2026)
    assert report.imported == () and report.skipped == ()


def _ark_crl(issuer_cn: str, idp_url: str | None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer_cn)]))
        .last_update(T_2026 - timedelta(days=1))
        .next_update(T_2026 + timedelta(days=30))
    )
    if idp_url is not None:
        builder = builder.add_extension(
            x509.IssuingDistributionPoint(
                full_name=[x509.UniformResourceIdentifier(idp_url)],
                relative_name=None,
                only_contains_user_certs=False,
                only_contains_ca_certs=False,
                only_some_reasons=None,
                indirect_crl=False,
                only_contains_attribute_certs=False,
            ),
            critical=True,
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
