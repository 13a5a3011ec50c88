"""KDS and PCS clients against a local server replaying recorded vendor answers."""

from __future__ import annotations

import os
import stat
import urllib.parse
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from donjon.attestation.errors import CollateralError, MalformedEvidence
from donjon.collateral import (
    CollateralCache,
    CollateralStore,
    CollateralUnavailable,
    FetchConfig,
    FetchFailed,
    HttpFetcher,
    KdsClient,
    NotFetchable,
    PcsClient,
    ResponseTooLarge,
    VcekRequest,
    VcekTcb,
)
from donjon.collateral.validity import DocKind

T_2023_07 = datetime(2023, 7, 1, 1, 0, tzinfo=UTC)
T_2026 = datetime(2026, 1, 1, tzinfo=UTC)
AMD_ARC = "1.3.6.1.4.1.3704.1"
# AMD's older VCEKs have serial number 0, which cryptography warns about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def fetcher(sleeps: Sleeps) -> HttpFetcher:
    with HttpFetcher(FetchConfig(timeout=2.0, attempts=3, backoff=0.01, trust_env=False), sleep=sleeps) as f:
        yield f  # type: ignore[misc]


@pytest.fixture
def store(tmp_path: Path, fetcher: HttpFetcher) -> CollateralStore:
    return CollateralStore(CollateralCache(tmp_path / "cache"), fetcher, clock=lambda: T_2023_07)


def _ext(cert: x509.Certificate, suffix: str) -> bytes:
    value = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(f"{AMD_ARC}.{suffix}")).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


def _spl(cert: x509.Certificate, n: int) -> int:
    raw = _ext(cert, f"3.{n}")  # DER INTEGER
    return int.from_bytes(raw[2:], "big")


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _serve_vcek(replay: Any, request: VcekRequest, der: bytes) -> str:
    return replay.route(request.path + "?" + urllib.parse.urlencode(request.params), replay.Answer(body=der))


# -- AMD KDS ---------------------------------------------------------------------------------------


def test_vcek_request_from_a_v2_report_matches_the_vcek_kds_issued(vectors: Path) -> None:
    """The chip ID and SPLs taken from the report are the ones in the VCEK KDS issued for it."""
    report = (vectors / "snp/gosevguest/attestation.bin").read_bytes()
    vcek = x509.load_der_x509_certificate((vectors / "snp/gosevguest/vcek_milan.der").read_bytes())
    req = VcekRequest.from_report(report, product="Milan")
    assert req.path == f"/vcek/v1/Milan/{_ext(vcek, '4').hex()}"
    assert req.params == {
        "blSPL": f"{_spl(vcek, 1):02d}",
        "teeSPL": f"{_spl(vcek, 2):02d}",
        "snpSPL": f"{_spl(vcek, 3):02d}",
        "ucodeSPL": f"{_spl(vcek, 8):02d}",
    }
    assert req.params["ucodeSPL"] == "68" and req.params["blSPL"] == "02"  # MANIFEST: bl=2 snp=5 ucode=0x44


def test_v2_report_needs_the_product_line(vectors: Path) -> None:
    report = (vectors / "snp/gosevguest/attestation.bin").read_bytes()
    with pytest.raises(MalformedEvidence) as e:
        VcekRequest.from_report(report)
    assert e.value.check == "kds.report.product"


def test_v3_report_names_its_product_line(vectors: Path) -> None:
    report = (vectors / "snp/trustee/e2e-evidence.report.bin").read_bytes()
    vcek = x509.load_der_x509_certificate((vectors / "snp/trustee/e2e-evidence.vcek.der").read_bytes())
    req = VcekRequest.from_report(report)
    assert req.product == "Genoa"
    assert req.hwid == _ext(vcek, "4")
    assert req.tcb == VcekTcb(
        bootloader=_spl(vcek, 1), tee=_spl(vcek, 2), snp=_spl(vcek, 3), microcode=_spl(vcek, 8)
    )


def test_turin_request_uses_the_8_byte_hwid_and_fmc(vectors: Path) -> None:
    vcek = x509.load_der_x509_certificate((vectors / "snp/virtee_sev/vcek_turin.der").read_bytes())
    hwid = _ext(vcek, "4")
    assert len(hwid) == 8
    tcb = VcekTcb(
        bootloader=_spl(vcek, 1), tee=_spl(vcek, 2), snp=_spl(vcek, 3), microcode=_spl(vcek, 8), fmc=0
    )
    req = VcekRequest("Turin", hwid, tcb)
    assert req.path == f"/vcek/v1/Turin/{hwid.hex()}"
    assert list(req.params) == ["fmcSPL", "blSPL", "teeSPL", "snpSPL", "ucodeSPL"]
    assert VcekRequest("Turin", hwid + bytes(56), tcb) == req  # a report's zero-padded CHIP_ID
    with pytest.raises(ValueError):
        VcekRequest("Turin", hwid, VcekTcb(bootloader=1, tee=0, snp=0, microcode=9))  # no fmc
    with pytest.raises(ValueError):
        VcekRequest("Turin", hwid + b"\x01" + bytes(55), tcb)


def test_vcek_is_fetched_once_then_served_from_the_cache(
    vectors: Path, replay: Any, store: CollateralStore, tmp_path: Path
) -> None:
    report = (vectors / "snp/gosevguest/attestation.bin").read_bytes()
    der = (vectors / "snp/gosevguest/vcek_milan.der").read_bytes()
    req = VcekRequest.from_report(report, product="Milan")
    route = _serve_vcek(replay, req, der)
    kds = KdsClient(store, base_url=replay.url)
    assert _der(kds.vcek(req, at=T_2026)) == der
    assert _der(kds.vcek(req, at=T_2026)) == der
    assert replay.hits[route] == 1
    # A new client over the same directory (another process, later) still hits the cache.
    again = KdsClient(
        CollateralStore(CollateralCache(tmp_path / "cache"), store.fetcher), base_url=replay.url
    )
    assert _der(again.vcek(req, at=T_2026)) == der
    assert replay.total_hits() == 1


def test_cert_chain_and_crl_urls(vectors: Path, replay: Any, store: CollateralStore) -> None:
    vcek_chain = (vectors / "roots/amd/gosevguest_ask_ark_milan.pem").read_bytes()
    vlek_chain = (vectors / "snp/gosevguest/milan_cert_chain_vlek.pem").read_bytes()
    replay.route("/vcek/v1/Milan/cert_chain", replay.Answer(body=vcek_chain))
    replay.route("/vlek/v1/Milan/cert_chain", replay.Answer(body=vlek_chain))
    kds = KdsClient(store, base_url=replay.url)
    ask, ark = kds.cert_chain("Milan", at=T_2026)
    assert ask.subject.rfc4514_string().startswith("CN=SEV-Milan")
    assert ark.subject.rfc4514_string().startswith("CN=ARK-Milan")
    asvk, ark2 = kds.cert_chain("Milan", key_type="vlek", at=T_2026)
    assert asvk.subject.rfc4514_string().startswith("CN=SEV-VLEK-Milan") and ark2 == ark
    assert replay.total_hits() == 2


def test_kds_crl_is_fetched_from_the_product_path(replay: Any, store: CollateralStore) -> None:
    crl_der = _make_crl("ARK-Genoa", next_update=datetime(2030, 1, 1, tzinfo=UTC))
    route = replay.route("/vcek/v1/Genoa/crl", replay.Answer(body=crl_der))
    crl = KdsClient(store, base_url=replay.url).crl("Genoa", at=T_2026)
    assert crl.next_update_utc == datetime(2030, 1, 1, tzinfo=UTC)
    assert replay.hits[route] == 1


def test_vlek_cannot_be_fetched(vectors: Path, replay: Any, store: CollateralStore) -> None:
    kds = KdsClient(store, base_url=replay.url)
    with pytest.raises(NotFetchable) as e:
        kds.vlek("Milan")
    assert "cloud provider" in e.value.reason and "with the evidence" in e.value.reason
    with pytest.raises(NotFetchable) as e:
        VcekRequest.from_report((vectors / "snp/trustee/test-vlek-report.bin").read_bytes())
    assert e.value.check == "kds.vlek"
    with pytest.raises(NotFetchable):
        VcekRequest("Milan", bytes(64), VcekTcb(bootloader=1, tee=0, snp=1, microcode=1))
    assert replay.total_hits() == 0


def test_expired_document_is_refetched(vectors: Path, replay: Any, store: CollateralStore) -> None:
    crl = (vectors / "tdx/gotdxguest/pckcrl.der").read_bytes()  # nextUpdate 2023-07-08T07:27:52Z
    chain = (vectors / "tdx/gotdxguest/pck_crl_issuer_chain.pem").read_bytes()
    route = replay.route(
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
        replay.Answer(body=crl, headers={"SGX-PCK-CRL-Issuer-Chain": urllib.parse.quote(chain)}),
    )
    pcs = PcsClient(store, base_url=replay.url)
    doc = pcs.pck_crl("platform", at=T_2023_07)
    assert doc.valid_until == datetime(2023, 7, 8, 7, 27, 52, tzinfo=UTC)
    pcs.pck_crl("platform", at=datetime(2023, 7, 8, 7, 27, 51, tzinfo=UTC))
    assert replay.hits[route] == 1
    pcs.pck_crl("platform", at=datetime(2023, 7, 9, tzinfo=UTC))
    assert replay.hits[route] == 2


def test_offline_serves_the_cache_and_names_what_is_missing(
    vectors: Path, replay: Any, store: CollateralStore, tmp_path: Path
) -> None:
    der = (vectors / "snp/gosevguest/vcek_milan.der").read_bytes()
    req = VcekRequest.from_report((vectors / "snp/gosevguest/attestation.bin").read_bytes(), product="Milan")
    _serve_vcek(replay, req, der)
    KdsClient(store, base_url=replay.url).vcek(req, at=T_2026)
    offline = KdsClient(
        CollateralStore(CollateralCache(tmp_path / "cache"), offline=True), base_url=replay.url
    )
    assert _der(offline.vcek(req, at=T_2026)) == der
    with pytest.raises(CollateralUnavailable) as e:
        offline.cert_chain("Milan", at=T_2026)
    assert e.value.check == "collateral.offline.missing" and "Milan VCEK certificate chain" in e.value.reason
    with pytest.raises(CollateralUnavailable) as e:
        offline.vcek(req, at=datetime(2030, 1, 1, tzinfo=UTC))  # past the VCEK's notAfter (2029-09-24)
    assert e.value.check == "collateral.offline.expired"
    empty = KdsClient(CollateralStore(CollateralCache(tmp_path / "empty")), base_url=replay.url)  # no fetcher
    with pytest.raises(CollateralUnavailable):
        empty.vcek(req, at=T_2026)
    assert replay.total_hits() == 1


# -- limits and failures ---------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False])
def test_oversized_answer_is_refused_and_not_cached(
    replay: Any, tmp_path: Path, sleeps: Sleeps, declared: bool
) -> None:
    big = replay.Answer(body=b"\x30" * 5000, content_length=declared)
    replay.route("/vcek/v1/Milan/cert_chain", big)
    with HttpFetcher(FetchConfig(max_bytes=4096, trust_env=False), sleep=sleeps) as f:
        store = CollateralStore(CollateralCache(tmp_path / "c"), f)
        with pytest.raises(ResponseTooLarge) as e:
            KdsClient(store, base_url=replay.url).cert_chain("Milan", at=T_2026)
    assert e.value.check == "collateral.too_large"
    assert list(store.cache.entries()) == []
    assert replay.total_hits() == 1  # too large is not transient: no retry


def test_server_error_is_retried_a_bounded_number_of_times(
    replay: Any, store: CollateralStore, sleeps: Sleeps
) -> None:
    route = replay.route("/vcek/v1/Milan/cert_chain", replay.Answer(status=500))
    with pytest.raises(FetchFailed) as e:
        KdsClient(store, base_url=replay.url).cert_chain("Milan", at=T_2026)
    assert e.value.status == 500 and e.value.attempts == 3
    assert replay.hits[route] == 3
    assert sleeps == [0.01, 0.02]  # exponential backoff between the three attempts
    assert "/vcek/v1/Milan/cert_chain" in str(e.value)


def test_transient_error_then_success(vectors: Path, replay: Any, store: CollateralStore) -> None:
    chain = (vectors / "roots/amd/gosevguest_ask_ark_milan.pem").read_bytes()
    route = replay.route(
        "/vcek/v1/Milan/cert_chain",
        replay.Answer(status=503),
        replay.Answer(status=429),
        replay.Answer(body=chain),
    )
    assert len(KdsClient(store, base_url=replay.url).cert_chain("Milan", at=T_2026)) == 2
    assert replay.hits[route] == 3


def test_not_found_is_not_retried(replay: Any, store: CollateralStore) -> None:
    req = VcekRequest("Milan", b"\x01" * 64, VcekTcb(bootloader=1, tee=0, snp=1, microcode=1))
    with pytest.raises(FetchFailed) as e:
        KdsClient(store, base_url=replay.url).vcek(req, at=T_2026)
    assert e.value.check == "collateral.not_found" and e.value.status == 404
    assert replay.total_hits() == 1


def test_timeout_is_bounded(replay: Any, tmp_path: Path, sleeps: Sleeps) -> None:
    route = replay.route("/vcek/v1/Milan/cert_chain", replay.Answer(body=b"x", delay=1.0))
    with HttpFetcher(FetchConfig(timeout=0.2, attempts=2, backoff=0.0, trust_env=False), sleep=sleeps) as f:
        store = CollateralStore(CollateralCache(tmp_path / "c"), f)
        with pytest.raises(FetchFailed) as e:
            KdsClient(store, base_url=replay.url).cert_chain("Milan", at=T_2026)
    assert e.value.check == "collateral.timeout" and e.value.attempts == 2
    assert replay.hits[route] == 2


def test_unparseable_answer_is_refused_and_not_cached(replay: Any, store: CollateralStore) -> None:
    replay.route("/vcek/v1/Milan/cert_chain", replay.Answer(body=b"<html>maintenance</html>"))
    with pytest.raises(CollateralError) as e:
        KdsClient(store, base_url=replay.url).cert_chain("Milan", at=T_2026)
    assert e.value.check == "collateral.parse"
    assert list(store.cache.entries()) == []


def test_closed_fetcher_is_a_clear_error(sleeps: Sleeps) -> None:
    f = HttpFetcher(FetchConfig(trust_env=False), sleep=sleeps)
    f.close()
    f.close()
    with pytest.raises(RuntimeError, match="closed"):
        f.get("http://127.0.0.1:1/")


# -- the cache itself ------------------------------------------------------------------------------


def test_cache_directory_is_private(tmp_path: Path) -> None:
    CollateralCache(tmp_path / "new")
    assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    CollateralCache(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_corrupt_cache_entry_is_a_miss(vectors: Path, replay: Any, store: CollateralStore) -> None:
    chain = (vectors / "roots/amd/gosevguest_ask_ark_milan.pem").read_bytes()
    route = replay.route("/vcek/v1/Milan/cert_chain", replay.Answer(body=chain))
    kds = KdsClient(store, base_url=replay.url)
    kds.cert_chain("Milan", at=T_2026)
    (entry_file,) = [p for p in store.cache.directory.iterdir()]
    assert not any(p.name.startswith(".tmp-") for p in store.cache.directory.iterdir())
    entry_file.write_bytes(b"{not json")
    kds.cert_chain("Milan", at=T_2026)
    assert replay.hits[route] == 2


# -- Intel PCS -------------------------------------------------------------------------------------


def _chain_header(path: Path) -> str:
    return urllib.parse.quote(path.read_text())


def test_pck_crl_with_its_issuer_chain(vectors: Path, replay: Any, store: CollateralStore) -> None:
    base = vectors / "tdx/gotdxguest"
    replay.route(
        "/sgx/certification/v4/pckcrl?ca=processor&encoding=der",
        replay.Answer(
            body=(base / "pckcrl.der").read_bytes(),
            headers={"SGX-PCK-CRL-Issuer-Chain": _chain_header(base / "pck_crl_issuer_chain.pem")},
        ),
    )
    doc = PcsClient(store, base_url=replay.url).pck_crl("processor", at=T_2023_07)
    expected = x509.load_pem_x509_certificates((base / "pck_crl_issuer_chain.pem").read_bytes())
    assert list(doc.issuer_chain) == expected
    assert doc.crl().issuer == expected[0].subject
    assert doc.body == (base / "pckcrl.der").read_bytes()


@pytest.mark.parametrize("header", ["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"])
def test_tdx_tcb_info_by_fmspc(vectors: Path, replay: Any, store: CollateralStore, header: str) -> None:
    base = vectors / "tdx/gotdxguest"
    body = (base / "tcbinfo_fmspc_50806f000000.json").read_bytes()
    route = replay.route(
        "/tdx/certification/v4/tcb?fmspc=50806f000000",
        replay.Answer(body=body, headers={header: _chain_header(base / "tcbinfo_issuer_chain.pem")}),
    )
    pcs = PcsClient(store, base_url=replay.url)
    doc = pcs.tcb_info("50806F000000", tee="tdx", at=T_2023_07)
    assert doc.body == body  # byte for byte: the signature covers the raw JSON text
    assert doc.json(DocKind.TCB_INFO)["tcbInfo"]["fmspc"] == "50806f000000"
    assert doc.valid_until == datetime(2023, 7, 18, 8, 42, 58, tzinfo=UTC)
    assert len(doc.issuer_chain) == 2
    pcs.tcb_info("50806f000000", tee="tdx", at=T_2023_07)
    assert replay.hits[route] == 1
    with pytest.raises(ValueError):
        pcs.tcb_info("50806f", tee="tdx")


def test_tdx_qe_identity(vectors: Path, replay: Any, store: CollateralStore) -> None:
    base = vectors / "tdx/gotdxguest"
    body = (base / "qe_identity_tdx.json").read_bytes()
    replay.route(
        "/tdx/certification/v4/qe/identity",
        replay.Answer(
            body=body,
            headers={
                "SGX-Enclave-Identity-Issuer-Chain": _chain_header(base / "qe_identity_issuer_chain.pem")
            },
        ),
    )
    doc = PcsClient(store, base_url=replay.url).qe_identity(tee="tdx", at=T_2023_07)
    assert doc.json(DocKind.QE_IDENTITY)["enclaveIdentity"]["id"] == "TD_QE"
    assert doc.valid_until == datetime(2023, 7, 8, 7, 24, 59, tzinfo=UTC)


def test_sgx_tcb_info_with_update_track(vectors: Path, replay: Any, store: CollateralStore) -> None:
    base = vectors / "sgx/dcapqvl"
    body = (base / "sgx_quote.coll.tcbinfo.json").read_bytes()
    fmspc = PcsDocumentJson.fmspc(body)
    route = replay.route(
        f"/sgx/certification/v4/tcb?fmspc={fmspc}&update=early",
        replay.Answer(
            body=body,
            headers={
                "TCB-Info-Issuer-Chain": _chain_header(base / "sgx_quote.coll.tcb_info_issuer_chain.pem")
            },
        ),
    )
    PcsClient(store, base_url=replay.url).tcb_info(fmspc, update="early", at=datetime(2025, 7, 1, tzinfo=UTC))
    assert replay.hits[route] == 1


class PcsDocumentJson:
    @staticmethod
    def fmspc(body: bytes) -> str:
        import json

        return str(json.loads(body)["tcbInfo"]["fmspc"]).lower()


def test_missing_issuer_chain_is_refused(vectors: Path, replay: Any, store: CollateralStore) -> None:
    body = (vectors / "tdx/gotdxguest/qe_identity_tdx.json").read_bytes()
    replay.route("/tdx/certification/v4/qe/identity", replay.Answer(body=body))
    with pytest.raises(CollateralError) as e:
        PcsClient(store, base_url=replay.url).qe_identity(tee="tdx", at=T_2023_07)
    assert e.value.check == "collateral.issuer_chain"
    assert list(store.cache.entries()) == []


def test_root_ca_crl_from_its_distribution_point(vectors: Path, replay: Any, store: CollateralStore) -> None:
    der = (vectors / "tdx/gotdxguest/rootcrl.der").read_bytes()
    route = replay.route("/IntelSGXRootCA.der", replay.Answer(body=der))
    pcs = PcsClient(store, base_url=replay.url, root_crl_url=replay.url + "/IntelSGXRootCA.der")
    crl = pcs.root_ca_crl(at=T_2023_07)
    assert crl.issuer.rfc4514_string().endswith("CN=Intel SGX Root CA")
    assert replay.hits[route] == 1


# -- helpers ---------------------------------------------------------------------------------------


def _make_crl(issuer_cn: str, *, next_update: datetime) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, issuer_cn)])
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(name)
        .last_update(datetime(2024, 1, 1, tzinfo=UTC))
        .next_update(next_update)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_validity_is_capped_by_the_issuer_chain(vectors: Path, replay: Any, store: CollateralStore) -> None:
    """TCB info valid to 2026-03 whose TCB Signing certificate ends 2025-05-21 is current only until then."""
    base = vectors / "tdx/gotdxguest"
    chain_path = base / "tcbinfo_issuer_chain.pem"
    route = replay.route(
        "/tdx/certification/v4/tcb?fmspc=90c06f000000",
        replay.Answer(
            body=(base / "tcbinfo_fmspc_90c06f000000.json").read_bytes(),
            headers={"TCB-Info-Issuer-Chain": _chain_header(chain_path)},
        ),
    )
    signer_end = x509.load_pem_x509_certificates(chain_path.read_bytes())[0].not_valid_after_utc
    pcs = PcsClient(store, base_url=replay.url)
    doc = pcs.tcb_info("90c06f000000", tee="tdx", at=datetime(2025, 1, 1, tzinfo=UTC))
    assert doc.valid_until == signer_end
    pcs.tcb_info("90c06f000000", tee="tdx", at=signer_end + timedelta(seconds=1))
    assert replay.hits[route] == 2
