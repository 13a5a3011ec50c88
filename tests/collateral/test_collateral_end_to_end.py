"""Collateral fetched through the clients is what the attestation library needs to verify real evidence."""

from __future__ import annotations

import shutil
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from donjon.attestation.verify import Collateral, TrustRoots, verify_evidence
from donjon.collateral import (
    CollateralCache,
    CollateralStore,
    FetchConfig,
    HttpFetcher,
    KdsClient,
    PcsClient,
    VcekRequest,
)
from donjon.collateral.bundle import import_bundle

pytestmark = pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CollateralStore]:
    with HttpFetcher(FetchConfig(timeout=2.0, trust_env=False)) as f:
        yield CollateralStore(CollateralCache(tmp_path / "cache"), f)


def test_snp_report_verifies_with_fetched_vcek_and_chain(
    vectors: Path, replay: Any, store: CollateralStore
) -> None:
    report = (vectors / "snp/trustee/test-report.bin").read_bytes()
    request = VcekRequest.from_report(report, product="Milan")
    replay.route(
        "/vcek/v1/Milan/"
        + request.hwid.hex()
        + "?"
        + "&".join(f"{k}={v}" for k, v in request.params.items()),
        replay.Answer(body=(vectors / "snp/trustee/test-vcek.der").read_bytes()),
    )
    replay.route(
        "/vcek/v1/Milan/cert_chain",
        replay.Answer(body=(vectors / "roots/amd/gosevguest_ask_ark_milan.pem").read_bytes()),
    )
    kds = KdsClient(store, base_url=replay.url)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    vcek = kds.vcek(request, at=at)
    chain = kds.cert_chain("Milan", at=at)
    verified = verify_evidence(
        "snp-report",
        report,
        certs=[vcek],
        collateral=Collateral(certificates=tuple(chain)),
        roots=TrustRoots(certificates=tuple(chain)),
        at=at,
    )
    assert verified.claims.measurement.hex().startswith("a1f3930413247bb3")  # MANIFEST
    assert replay.total_hits() == 2


def test_tdx_quote_verifies_with_fetched_pcs_collateral(
    vectors: Path, replay: Any, store: CollateralStore
) -> None:
    base = vectors / "tdx/dcapqvl"

    def answer(doc: str, header: str | None = None, chain: str | None = None) -> Any:
        headers = {header: urllib.parse.quote((base / chain).read_text())} if header and chain else {}
        return replay.Answer(body=(base / doc).read_bytes(), headers=headers)

    replay.route(
        "/sgx/certification/v4/pckcrl?ca=platform&encoding=der",
        answer(
            "tdx_quote.coll.pck_crl.der",
            "SGX-PCK-CRL-Issuer-Chain",
            "tdx_quote.coll.pck_crl_issuer_chain.pem",
        ),
    )
    replay.route(
        "/tdx/certification/v4/tcb?fmspc=b0c06f000000",
        answer(
            "tdx_quote.coll.tcbinfo.json", "TCB-Info-Issuer-Chain", "tdx_quote.coll.tcb_info_issuer_chain.pem"
        ),
    )
    replay.route(
        "/tdx/certification/v4/qe/identity",
        answer(
            "tdx_quote.coll.qe_identity.json",
            "SGX-Enclave-Identity-Issuer-Chain",
            "tdx_quote.coll.qe_identity_issuer_chain.pem",
        ),
    )
    replay.route("/IntelSGXRootCA.der", answer("tdx_quote.coll.root_ca_crl.der"))
    at = datetime(2025, 7, 19, 10, 0, 34, tzinfo=UTC)  # VERIFY_TIMES.tsv
    pcs = PcsClient(store, base_url=replay.url, root_crl_url=replay.url + "/IntelSGXRootCA.der")
    pck_crl = pcs.pck_crl("platform", at=at)
    tcb = pcs.tcb_info("B0C06F000000", tee="tdx", at=at)
    qe = pcs.qe_identity(tee="tdx", at=at)
    collateral = Collateral(
        certificates=(*pck_crl.issuer_chain, *tcb.issuer_chain),
        crls=(pck_crl.crl(), pcs.root_ca_crl(at=at)),
        tcb_info=(tcb.body,),
        qe_identity=(qe.body,),
    )
    verified = verify_evidence(
        "tdx-quote", (base / "tdx_quote").read_bytes(), collateral=collateral, roots=TrustRoots(), at=at
    )
    assert verified.claims.tcb_status.value == "UpToDate"  # VERIFY_TIMES.tsv: PASS UpToDate
    assert replay.total_hits() == 4


def test_tdx_quote_verifies_offline_from_a_quote_collateral_bundle(vectors: Path, tmp_path: Path) -> None:
    """The TCB info and QE identity rebuilt from a QuoteCollateralV3 file still carry valid signatures."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    shutil.copyfile(vectors / "tdx/dcapqvl/tdx_quote_collateral.json", bundle / "c.json")
    cache = CollateralCache(tmp_path / "offline")
    import_bundle(bundle, cache)
    pcs = PcsClient(CollateralStore(cache, offline=True), base_url="http://127.0.0.1:9", root_crl_url="-")
    at = datetime(2025, 7, 19, 10, 0, 34, tzinfo=UTC)
    pck_crl = pcs.pck_crl("platform", at=at)
    tcb = pcs.tcb_info("b0c06f000000", tee="tdx", at=at)
    collateral = Collateral(
        certificates=(*pck_crl.issuer_chain, *tcb.issuer_chain),
        crls=(pck_crl.crl(), pcs.root_ca_crl(at=at)),
        tcb_info=(tcb.body,),
        qe_identity=(pcs.qe_identity(tee="tdx", at=at).body,),
    )
    quote = (vectors / "tdx/dcapqvl/tdx_quote").read_bytes()
    verified = verify_evidence("tdx-quote", quote, collateral=collateral, roots=TrustRoots(), at=at)
    assert verified.claims.tcb_status.value == "UpToDate"
